"""The agent process's own errors (the protocol library has its own, in `agent.protocol.errors`).

    EdgeError            (agent.common.errors: the project's one base)
      AgentError
        ConfigError      a setting is missing or wrong; `key` names it (exit status 2)
        WorkerError      the worker pool cannot start a worker
        ReloadError      a reload found a broken trust store or configuration (nothing changed)
      StoreError         the state directory cannot be used (the journal engine's, shared with the broker)
        StoreCorrupt     a state file is damaged in a way a crash cannot explain
        StoreLocked      another agent owns this data directory
        StoreWriteFailed a journal write or sync failed: nothing more is acknowledged

Task-level failures are not exceptions of the agent: they are `Outcome`s carrying the protocol's
failure codes (`kernel_error`, `timeout`, `worker_crashed`, `out_of_memory`), see `workers.py`.
"""

from __future__ import annotations

from .common.errors import EdgeError, StoreCorrupt, StoreError, StoreLocked, StoreWriteFailed

__all__ = [
    "AgentError",
    "ConfigError",
    "EdgeError",
    "ReloadError",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "StoreWriteFailed",
    "WorkerError",
]


class AgentError(EdgeError):
    """Base of every error the agent process raises on its own behalf."""


class ConfigError(AgentError):
    """A configuration value is missing or invalid; the message starts with the key's name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class WorkerError(AgentError):
    """A worker process could not be started."""


class ReloadError(AgentError):
    """A reload (SIGHUP, sys.reload) was refused; the agent keeps its current keys and settings."""
