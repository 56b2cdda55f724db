"""The signed envelope of PROTOCOL 3: `{v, alg, kid, body, sig}`.

`seal` signs body bytes; `open_envelope` is check 1 (form and size) and `verify_envelope`
checks 2 and 3 (key, role, signature). The signature covers exactly the `body` bytes, so
the receiver verifies what it got and decodes the body only afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .codec import DEFAULT_LIMITS, Limits, packb
from .errors import AuthenticationError
from .keys import ALGORITHMS, Signer
from .truststore import TrustedKey, TrustStore

ENVELOPE_VERSION = 1
_FIELDS = frozenset({"v", "alg", "kid", "body", "sig"})
_SIG_LENGTH = {"ed25519": 64, "hmac-sha256": 32}


@dataclass(frozen=True)
class Envelope:
    alg: str
    kid: str
    body: bytes
    sig: bytes
    v: int = ENVELOPE_VERSION


def seal(body: bytes | dict[str, Any], signer: Signer) -> bytes:
    """Sign `body` (a map, or its MessagePack bytes) and return the envelope's bytes."""
    body_bytes = body if isinstance(body, bytes) else packb(body)
    return msgpack.packb(  # type: ignore[no-any-return]
        {
            "v": ENVELOPE_VERSION,
            "alg": signer.alg,
            "kid": signer.kid,
            "body": body_bytes,
            "sig": signer.sign(body_bytes),
        },
        use_bin_type=True,
    )


def _malformed(message: str, kid: str | None = None) -> AuthenticationError:
    return AuthenticationError(message, code="malformed", kid=kid)


def open_envelope(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Check 1: the payload is an envelope of the right form and within the size limit."""
    if len(payload) > limits.max_payload:
        raise AuthenticationError(
            f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload}", code="too_large"
        )
    try:
        # Small fixed limits: an envelope is one flat map of five fields.
        raw = msgpack.unpackb(payload, raw=False, max_array_len=0, max_map_len=16, max_ext_len=0)
    except Exception as exc:  # any decoding failure is check 1
        raise _malformed(f"not a MessagePack envelope: {exc}") from None
    if not isinstance(raw, dict):
        raise _malformed("the envelope must be a map")
    kid = raw.get("kid")
    kid = kid if isinstance(kid, str) else None
    if set(raw) != _FIELDS:
        missing = sorted(_FIELDS - set(raw))
        extra = sorted(str(k) for k in set(raw) - _FIELDS)
        raise _malformed(f"envelope fields: missing {missing}, unexpected {extra}", kid)
    v, alg, body, sig = raw["v"], raw["alg"], raw["body"], raw["sig"]
    if type(v) is not int or v != ENVELOPE_VERSION:
        raise _malformed(f"envelope version {v!r} is not supported (expected {ENVELOPE_VERSION})", kid)
    if alg not in ALGORITHMS:
        raise _malformed(f"unknown algorithm {alg!r}", kid)
    if kid is None or not kid:
        raise _malformed("kid must be a non-empty string")
    if not isinstance(body, bytes) or not isinstance(sig, bytes):
        raise _malformed("body and sig must be MessagePack bin", kid)
    return Envelope(alg=alg, kid=kid, body=body, sig=sig, v=v)


def verify_envelope(env: Envelope, trust: TrustStore, role: str, now: float) -> TrustedKey:
    """Checks 2 and 3: the key may sign for `role` now, and the signature verifies."""
    candidates = trust.resolve(env.kid, role, now)
    if len(env.sig) != _SIG_LENGTH[env.alg]:
        raise AuthenticationError(
            f"{env.alg} signature must be {_SIG_LENGTH[env.alg]} bytes", code="bad_signature", kid=env.kid
        )
    matching = [k for k in candidates if k.alg == env.alg]
    if not matching:
        raise AuthenticationError(
            f"key {env.kid!r} is {candidates[0].alg}, the envelope claims {env.alg}",
            code="bad_signature",
            kid=env.kid,
        )
    for key in matching:
        if key.verifier.verify(env.sig, env.body):
            return key
    raise AuthenticationError(f"signature by {env.kid!r} does not verify", code="bad_signature", kid=env.kid)
