"""Broker passwords: generation and Mosquitto's `$7$` hash (PBKDF2-HMAC-SHA512).

A line of a Mosquitto 2.0 password file is `user:$7$<iterations>$<base64 salt>$<base64 hash>`,
salt 12 bytes, hash 64 bytes, standard base64 with padding: exactly what `mosquitto_passwd`
writes. The iteration count is Mosquitto's default (101): the passwords are 192-bit random
tokens, so stretching adds nothing but CPU time at every broker login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets

from .errors import FleetCorrupt

SCHEME = "$7$"
ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
PASSWORD_BYTES = 24


def new_password() -> str:
    """A random broker password: 24 bytes as URL-safe base64 (32 characters, no `:`)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """`$7$<iterations>$<salt>$<hash>` of `password`."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"{SCHEME}{iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def split_hash(encoded: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, hash) of a `$7$` string; `FleetCorrupt` when it is not one."""
    if not encoded.startswith(SCHEME):
        raise FleetCorrupt(f"password hash does not start with {SCHEME}")
    parts = encoded[len(SCHEME) :].split("$")
    if len(parts) != 3 or not parts[0].isdigit():
        raise FleetCorrupt("password hash is not $7$<iterations>$<salt>$<hash>")
    try:
        salt = base64.b64decode(parts[1], validate=True)
        digest = base64.b64decode(parts[2], validate=True)
    except binascii.Error:
        raise FleetCorrupt("password hash has invalid base64") from None
    return int(parts[0]), salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches the `$7$` hash (constant-time comparison)."""
    iterations, salt, digest = split_hash(encoded)
    candidate = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(digest))
    return hmac.compare_digest(candidate, digest)


def passwd_line(username: str, encoded: str) -> str:
    split_hash(encoded)  # never write a line Mosquitto would reject
    return f"{username}:{encoded}\n"
