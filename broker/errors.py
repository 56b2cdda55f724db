"""Every error the embedded broker raises, under one base class.

`edge-broker` prints `edge-broker: error: <message>` and exits with `exit_code`: 2 for a
configuration the operator must fix (a key, a file, a value), 1 for what went wrong while
running (a port in use, an unreadable data directory).

The store's errors are the journal engine's (`agent.common.errors`, shared with the agent):
`StoreError`, `CorruptStore` (the engine's `StoreCorrupt`), `StoreLocked`. Everything derives
from the project's one base, `EdgeError`.
"""

from __future__ import annotations

from agent.common.errors import EdgeError, StoreError, StoreLocked
from agent.common.errors import StoreCorrupt as CorruptStore

__all__ = [
    "BrokerError",
    "ConfigError",
    "CorruptStore",
    "CredentialsError",
    "EdgeError",
    "PacketTooLarge",
    "StartError",
    "StoreError",
    "StoreLocked",
]


class BrokerError(EdgeError):
    """Base of every broker failure; `exit_code` is the CLI's exit status."""

    exit_code = 1

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


# --- configuration (exit 2) -------------------------------------------------------------


class ConfigError(BrokerError):
    """The configuration is invalid; the message names the key (`listeners.tls.certfile`)."""

    exit_code = 2

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class CredentialsError(BrokerError):
    """A password or ACL file from provisioning cannot be read; the message names file and line."""

    exit_code = 2


# --- running (exit 1) -------------------------------------------------------------------


class StartError(BrokerError):
    """The broker could not start: a port in use, a TLS file that does not load, a plugin that failed."""


class PacketTooLarge(BrokerError):
    """A client sent a packet over `limits.max_packet_size`; its connection is closed."""
