"""Every error the embedded broker raises, under the project's one base class, `EdgeError`.

`edge-broker` prints `edge-broker: error: <message>` and exits with `exit_code`: 2 for a
configuration the operator must fix (a key, a file, a value), 1 for what went wrong while
running (a port in use, an unreadable data directory).

`ConfigError` is the settings loader's (`agent.common.errors`, shared with the agent and the
tools), and so are the store's errors, the journal engine's: `StoreError`, `CorruptStore` (the
engine's `StoreCorrupt`), `StoreLocked`. Everything derives from the project's one base,
`EdgeError`; catch that, not `BrokerError`, to see every failure of a start.
"""

from __future__ import annotations

from agent.common.errors import ConfigError, EdgeError, StoreError, StoreLocked
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
    """Base of the broker's own failures; `exit_code` is the CLI's exit status."""

    exit_code = 1


# --- configuration (exit 2) -------------------------------------------------------------


class CredentialsError(BrokerError):
    """A password or ACL file from provisioning cannot be read; the message names file and line."""

    exit_code = 2


# --- running (exit 1) -------------------------------------------------------------------


class StartError(BrokerError):
    """The broker could not start: a port in use, a TLS file that does not load, a plugin that failed."""


class PacketTooLarge(BrokerError):
    """A client sent a packet over `limits.max_packet_size`; its connection is closed."""
