"""The agent process's own errors (the protocol library has its own, in `agent.protocol.errors`).

    EdgeError            (agent.common.errors: the project's one base)
      ConfigError        a setting is missing or wrong; `key` names it (exit status 2; the settings
                         loader's, shared with the tools and the broker)
      AgentError
        WorkerError      the worker pool cannot start a worker
        ReloadError      a reload found a broken trust store or configuration (nothing changed)
        ResultTooLarge   a result's envelope would exceed the maximum payload (`result_too_large`)
        LinkError        no broker endpoint took `edge-agent subscribe`'s session
      StoreError         the state directory cannot be used (the journal engine's, shared with the broker)
        StoreCorrupt     a state file is damaged in a way a crash cannot explain
        StoreLocked      another agent owns this data directory
        StoreWriteFailed a journal write or sync failed: nothing more is acknowledged

Task-level failures are not exceptions of the agent: they are `Outcome`s carrying the protocol's
failure codes (`kernel_error`, `timeout`, `worker_crashed`, `out_of_memory`, `result_too_large`),
see `workers.py`; `ResultTooLarge` is how the result's builder tells its caller to end the task so.
"""

from __future__ import annotations

from ..common.errors import ConfigError, EdgeError, StoreCorrupt, StoreError, StoreLocked, StoreWriteFailed

__all__ = [
    "AgentError",
    "ConfigError",
    "EdgeError",
    "LinkError",
    "ReloadError",
    "ResultTooLarge",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "StoreWriteFailed",
    "WorkerError",
]


class AgentError(EdgeError):
    """Base of every error the agent process raises on its own behalf."""


class WorkerError(AgentError):
    """A worker process could not be started."""


class ReloadError(AgentError):
    """A reload (SIGHUP, sys.reload) was refused; the agent keeps its current keys and settings."""


class LinkError(AgentError):
    """No broker endpoint accepted a connection that had to be made once (`edge-agent subscribe`);
    the running agent's link never raises it: it reconnects."""


class ResultTooLarge(AgentError):
    """A result would not fit in the maximum payload (PROTOCOL 6): the task ends `abandoned` with
    code `result_too_large`, never retried, and nothing of that size is stored or published."""

    code = "result_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the result would take {size:,} bytes, more than the maximum payload of {limit:,} bytes "
            "(security.max_payload)"
        )
        self.size = size
        self.limit = limit
