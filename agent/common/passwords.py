"""Secrets people and machines log in with, and their `$7$` hashes: one implementation for the
broker's logins (provisioning writes them, the embedded broker and Mosquitto check them) and the
gateway's API clients.

`$7$<iterations>$<base64 salt>$<base64 hash>` is PBKDF2-HMAC-SHA512 with a 12-byte salt and a
64-byte hash, exactly what Mosquitto's `mosquitto_passwd` writes. The default iteration count is
Mosquitto's (101): every secret made here is a random token of 192 bits or more, which no amount
of stretching makes harder to guess, while each stretch costs CPU at every login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

SCHEME = "7"
DEFAULT_ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
TOKEN_BYTES = 24


def new_token(nbytes: int = TOKEN_BYTES) -> str:
    """A random secret: `nbytes` as URL-safe base64 (no `:` or `$`, safe in every file format)."""
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class PasswordHash:
    """One `$7$` entry: PBKDF2-HMAC-SHA512 with `iterations` over `salt`, giving `digest`."""

    iterations: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Raises `ValueError` naming what is wrong."""
        parts = text.split("$")
        if len(parts) != 5 or parts[0] != "" or parts[1] != SCHEME:
            raise ValueError("not a $7$ (PBKDF2-SHA512) hash")
        try:
            iterations = int(parts[2])
            salt = base64.b64decode(parts[3], validate=True)
            digest = base64.b64decode(parts[4], validate=True)
        except (ValueError, binascii.Error) as exc:
            raise ValueError(f"malformed $7$ hash: {exc}") from None
        if iterations < 1 or not salt or len(digest) != HASH_BYTES:
            raise ValueError("malformed $7$ hash: bad iterations, salt or digest length")
        return cls(iterations, salt, digest)

    def verify(self, password: str) -> bool:
        """Constant-time comparison of the hash of `password` with this one."""
        computed = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), self.salt, self.iterations)
        return hmac.compare_digest(computed, self.digest)

    def __str__(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"${SCHEME}${self.iterations}${salt}${digest}"


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """A `$7$` hash string that Mosquitto, the embedded broker and the gateway all accept."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return str(PasswordHash(iterations, salt, digest))


#: Verifying a secret for an unknown name costs as much as for a known one (no enumeration by timing).
DUMMY = PasswordHash(DEFAULT_ITERATIONS, b"\0" * SALT_BYTES, b"\0" * HASH_BYTES)
