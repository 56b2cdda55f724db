"""Real keys and a trust store for protocol tests, and a way to sign any body, valid or not."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from agent.protocol import (
    Ed25519Signer,
    HmacSigner,
    TrustedKey,
    TrustStore,
    generate_signer,
    packb,
    seal,
)

NODE = "node-1"
POOL = "cams"
NOW = 1_800_000_000.0  # a fixed "now": every test states its clock


def key_entry(signer: Ed25519Signer | HmacSigner, roles: set[str], **kw: Any) -> TrustedKey:
    material = signer.public_raw() if isinstance(signer, Ed25519Signer) else signer.secret
    return TrustedKey(signer.kid, signer.alg, material, frozenset(roles), **kw)


@dataclass
class Keyring:
    device: Ed25519Signer | HmacSigner = field(default_factory=lambda: generate_signer("dev-ed"))
    mcu: Ed25519Signer | HmacSigner = field(default_factory=lambda: generate_signer("mcu-1", "hmac-sha256"))
    operator: Ed25519Signer | HmacSigner = field(default_factory=lambda: generate_signer("op-1"))
    agent: Ed25519Signer | HmacSigner = field(default_factory=lambda: generate_signer(NODE))
    revoked: Ed25519Signer | HmacSigner = field(default_factory=lambda: generate_signer("dev-revoked"))
    stranger: Ed25519Signer | HmacSigner = field(default_factory=lambda: generate_signer("dev-ed"))

    def trust(self) -> TrustStore:
        return TrustStore(
            [
                key_entry(self.device, {"task"}),
                key_entry(self.mcu, {"task"}),
                key_entry(self.operator, {"task", "control"}),
                key_entry(self.agent, {"agent"}),
                key_entry(self.revoked, {"task"}, revoked=True),
            ]
        )


def task_body(**overrides: Any) -> dict[str, Any]:
    """A valid task body for NODE at NOW; overrides replace fields, None values delete them."""
    body: dict[str, Any] = {
        "id": "t-" + os.urandom(6).hex(),
        "kernel": "stats",
        "params": {"signal": [1.0, 2.0, 3.0]},
        "target": NODE,
        "issued_at": NOW - 1.0,
        "expires_at": NOW + 300.0,
        "nonce": os.urandom(16),
    }
    for name, value in overrides.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def sign(body: dict[str, Any] | bytes, signer: Ed25519Signer | HmacSigner) -> bytes:
    return seal(body if isinstance(body, bytes) else packb(body), signer)


def wall_clock() -> float:
    return time.time()
