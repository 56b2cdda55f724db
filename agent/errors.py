"""The agent process's own errors (the protocol library has its own, in `agent.protocol.errors`).

    AgentError
      ConfigError        a setting is missing or wrong; `key` names it (exit status 2)
      StoreError         the state directory cannot be used
        StoreCorrupt     a state file is damaged in a way a crash cannot explain
        StoreLocked      another agent owns this data directory
      WorkerError        the worker pool cannot start a worker
      ReloadError        a reload found a broken trust store or configuration (nothing changed)
      ResultTooLarge     a result's envelope would exceed the maximum payload (`result_too_large`)

Task-level failures are not exceptions of the agent: they are `Outcome`s carrying the protocol's
failure codes (`kernel_error`, `timeout`, `worker_crashed`, `out_of_memory`, `result_too_large`),
see `workers.py`; `ResultTooLarge` is how the result's builder tells its caller to end the task so.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent process raises on its own behalf."""


class ConfigError(AgentError):
    """A configuration value is missing or invalid; the message starts with the key's name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class StoreError(AgentError):
    """The state directory cannot be opened or written."""


class StoreCorrupt(StoreError):
    """A state file is damaged beyond what a crash can leave; the message names the file."""


class StoreLocked(StoreError):
    """Another process holds the data directory's lock."""


class WorkerError(AgentError):
    """A worker process could not be started."""


class ReloadError(AgentError):
    """A reload (SIGHUP, sys.reload) was refused; the agent keeps its current keys and settings."""


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
