"""Every error `edge-provision` reports, under one base class.

The CLI prints `edge-provision: error: <message>` and exits with `exit_code`: 2 when what the
user typed is wrong (a name, a target, a time, an identity that does not exist), 1 when the
fleet directory or the machine is (not a fleet, already initialised, locked, unreadable).
"""

from __future__ import annotations

from agent.common.errors import EdgeError
from agent.common.errors import InvalidTime as InvalidTime  # raised by agent.common.timespec


class ProvisioningError(EdgeError):
    """Base of every provisioning failure; `exit_code` is the CLI's exit status."""

    exit_code = 1


# --- the user's input (exit 2) ----------------------------------------------------------


class InputError(ProvisioningError):
    """Something on the command line is invalid; nothing was written."""

    exit_code = 2


class InvalidName(InputError):
    """An identity, pool or prefix name that PROTOCOL 1 does not allow."""


class InvalidTarget(InputError):
    """A device `--targets` entry that is not a node id, `all` or `pool:P`."""


class DuplicateIdentity(InputError):
    """The name is already in the registry (use `--force` to replace it)."""


class UnknownIdentity(InputError):
    """No identity of that name in the registry."""


class RevokedIdentity(InputError):
    """The identity is revoked: it cannot be bundled or rotated."""


# --- the fleet directory or the machine (exit 1) -------------------------------------------


class FleetError(ProvisioningError):
    """The fleet directory is missing, foreign, already initialised, locked or damaged."""


class NotAFleet(FleetError):
    """No fleet.toml, or one of another format."""


class FleetExists(FleetError):
    """`init` on a directory that already holds files."""


class FleetLocked(FleetError):
    """Another `edge-provision` holds the fleet's lock."""


class FleetCorrupt(FleetError):
    """A file of the fleet cannot be read or does not match the registry."""
