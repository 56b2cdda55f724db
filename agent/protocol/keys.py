"""Signing and verifying keys for the two algorithms of PROTOCOL 3.

Key files: an Ed25519 private key is PKCS#8 PEM (what `openssl genpkey -algorithm ed25519`
writes); an HMAC secret is one line `hmac-sha256:<base64 of the secret>`. Both are written
0600 by provisioning and never printed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.protocol import sodium

_sodium_verify = sodium.verify_detached

Alg = Literal["ed25519", "hmac-sha256"]
ALGORITHMS: tuple[Alg, ...] = ("ed25519", "hmac-sha256")
HMAC_PREFIX = "hmac-sha256:"
HMAC_SECRET_BYTES = 32


class Verifier(Protocol):
    @property
    def alg(self) -> Alg: ...

    def verify(self, signature: bytes, data: bytes) -> bool: ...


class Signer(Protocol):
    @property
    def alg(self) -> Alg: ...
    @property
    def kid(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class Ed25519Verifier:
    """Verifies with libsodium when PyNaCl is installed (see `sodium`), else with `cryptography`."""

    public_key: Ed25519PublicKey
    alg: Alg = "ed25519"
    raw: bytes = field(default=b"", repr=False)  # the 32 raw bytes of `public_key`

    @classmethod
    def from_raw(cls, raw: bytes) -> Ed25519Verifier:
        return cls(Ed25519PublicKey.from_public_bytes(raw), raw=bytes(raw))

    def verify(self, signature: bytes, data: bytes) -> bool:
        if _sodium_verify is not None and self.raw and len(data) <= sodium.MAX_BODY:
            return _sodium_verify(signature, data, self.raw)
        try:
            self.public_key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class HmacVerifier:
    secret: bytes = field(repr=False)
    alg: Alg = "hmac-sha256"

    def verify(self, signature: bytes, data: bytes) -> bool:
        expected = hmac.new(self.secret, data, hashlib.sha256).digest()
        return hmac.compare_digest(expected, signature)


@dataclass(frozen=True)
class Ed25519Signer:
    kid: str
    private_key: Ed25519PrivateKey = field(repr=False)
    alg: Alg = "ed25519"

    _fast_sign: sodium.SignDetached | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def generate(cls, kid: str) -> Ed25519Signer:
        return cls(kid, Ed25519PrivateKey.generate())

    def __post_init__(self) -> None:
        if sodium.seed_signer is not None:  # libsodium, as for verification (same signatures)
            seed = self.private_key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            object.__setattr__(self, "_fast_sign", sodium.seed_signer(seed))

    def sign(self, data: bytes) -> bytes:
        if self._fast_sign is not None and len(data) <= sodium.MAX_BODY:
            return self._fast_sign(data)
        return self.private_key.sign(data)

    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier.from_raw(self.public_raw())


@dataclass(frozen=True)
class HmacSigner:
    kid: str
    secret: bytes = field(repr=False)
    alg: Alg = "hmac-sha256"

    @classmethod
    def generate(cls, kid: str) -> HmacSigner:
        return cls(kid, os.urandom(HMAC_SECRET_BYTES))

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self.secret, data, hashlib.sha256).digest()

    def private_pem(self) -> bytes:
        return (HMAC_PREFIX + base64.b64encode(self.secret).decode() + "\n").encode()

    def verifier(self) -> HmacVerifier:
        return HmacVerifier(self.secret)


def generate_signer(kid: str, alg: Alg = "ed25519") -> Ed25519Signer | HmacSigner:
    if alg == "ed25519":
        return Ed25519Signer.generate(kid)
    if alg == "hmac-sha256":
        return HmacSigner.generate(kid)
    raise ValueError(f"unknown algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


def signer_from_bytes(kid: str, data: bytes) -> Ed25519Signer | HmacSigner:
    """Parse a key file's content (PEM Ed25519 or `hmac-sha256:` line)."""
    text = data.strip()
    if text.startswith(HMAC_PREFIX.encode()):
        try:
            secret = base64.b64decode(text[len(HMAC_PREFIX) :], validate=True)
        except ValueError as exc:
            raise ValueError(f"HMAC key for {kid!r} is not valid base64") from exc
        if len(secret) < 16:
            raise ValueError(f"HMAC key for {kid!r} is shorter than 16 bytes")
        return HmacSigner(kid, secret)
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: an encrypted key
        raise ValueError(f"key for {kid!r} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"key for {kid!r} is a {type(key).__name__}, not an Ed25519 private key")
    return Ed25519Signer(kid, key)


def load_signer(path: str | os.PathLike[str], kid: str) -> Ed25519Signer | HmacSigner:
    """Load the signing key of `kid` from a key file written by provisioning."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read signing key {p}: {exc.strerror}") from exc
    try:
        return signer_from_bytes(kid, data)
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from exc
