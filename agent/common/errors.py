"""The one error base of the project, and the errors of the durable stores built on it.

    EdgeError              base of every error the project raises on its own behalf
      ConfigError          a setting is missing or wrong; `key` names it (exit status 2)
      InvalidTime          a duration or a point in time that cannot be parsed (exit status 2)
      StoreError           a state directory cannot be opened or written
        StoreCorrupt       a state file is damaged in a way a crash cannot explain
        StoreLocked        another process owns the state directory
        StoreWriteFailed   a write or sync of the journal failed (nothing in it was acknowledged)

The agent (`agent.node.errors`), the tools (`agent.tools.errors`), the broker (`broker.errors`) and
provisioning derive their own trees from `EdgeError`, and use `ConfigError` (raised by the one
settings loader, `agent.common.settings`) and these store errors as they are: both stores run on
one journal engine.
`exit_code` is the status a command-line tool exits with when it stops on the error.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error of the project; `exit_code` is a CLI's exit status for it."""

    exit_code = 1

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(EdgeError):
    """A setting is missing or wrong. `key` names it (`mqtt.port`, `listeners.tls.certfile`, or
    `config` for the file itself); the message is `key: problem`."""

    exit_code = 2

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class InvalidTime(EdgeError):
    """A duration or a point in time that cannot be parsed (common/timespec.py)."""

    exit_code = 2


class StoreError(EdgeError):
    """The state directory cannot be opened or written."""


class StoreCorrupt(StoreError):
    """A state file is damaged beyond what a crash can leave; the message names the file, the
    offset, and what to do."""


class StoreLocked(StoreError):
    """Another process holds the state directory's lock."""


class StoreWriteFailed(StoreError):
    """Appending to the journal or syncing it failed (a full disk, a file size limit, an I/O
    error). What the failed write held was not acknowledged; `broken` is True when the journal
    could not be put back to its last good record and refuses every further append."""

    def __init__(self, message: str, *, broken: bool = False) -> None:
        super().__init__(message)
        self.broken = broken
