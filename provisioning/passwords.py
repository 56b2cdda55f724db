"""Broker passwords as provisioning writes them: new tokens, their `$7$` hashes (the one
implementation in `agent.common.passwords`) and Mosquitto's password-file lines.
"""

from __future__ import annotations

from agent.common.passwords import HASH_BYTES, SALT_BYTES, PasswordHash, new_token
from agent.common.passwords import hash_password as hash_password

from .errors import FleetCorrupt

__all__ = [
    "HASH_BYTES",
    "SALT_BYTES",
    "hash_password",
    "new_password",
    "passwd_line",
    "split_hash",
    "verify_password",
]


def new_password() -> str:
    """A random broker password: 24 bytes as URL-safe base64 (32 characters, no `:`)."""
    return new_token()


def split_hash(encoded: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, hash) of a `$7$` string; `FleetCorrupt` when it is not one."""
    try:
        parsed = PasswordHash.parse(encoded)
    except ValueError as exc:
        raise FleetCorrupt(f"password hash: {exc}") from None
    return parsed.iterations, parsed.salt, parsed.digest


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches the `$7$` hash (constant-time comparison)."""
    split_hash(encoded)
    return PasswordHash.parse(encoded).verify(password)


def passwd_line(username: str, encoded: str) -> str:
    split_hash(encoded)  # never write a line Mosquitto would reject
    return f"{username}:{encoded}\n"
