"""The signed envelope of PROTOCOL 3: `{v, alg, kid, body, sig}`.

`seal` signs body bytes; `open_envelope` is check 1 (form and size) and `verify_envelope`
checks 2 and 3 (key, role, signature). The signature covers exactly the `body` bytes, so
the receiver verifies what it got and decodes the body only afterwards.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack

from .codec import DEFAULT_LIMITS, Limits, packb
from .errors import AuthenticationError
from .keys import Signer
from .truststore import MAX_KID_LENGTH, TrustedKey, TrustStore

ENVELOPE_VERSION = 1
_FIELDS = frozenset({"v", "alg", "kid", "body", "sig"})
_SIG_LENGTH = {"ed25519": 64, "hmac-sha256": 32}


class Envelope(NamedTuple):
    """An envelope that passed check 1 (a NamedTuple: one is built per message, cheaply)."""

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
        # Small fixed limits: an envelope is one flat map of five fields, no lists, no ext.
        raw = msgpack.unpackb(payload, raw=False, max_array_len=0, max_map_len=8, max_ext_len=0)
    except Exception as exc:  # any decoding failure is check 1
        raise _malformed(f"not a MessagePack envelope: {exc}") from None
    if type(raw) is dict and len(raw) == len(_FIELDS):  # the common case in one test
        v, alg, kid, body, sig = raw.get("v"), raw.get("alg"), raw.get("kid"), raw.get("body"), raw.get("sig")
        if (
            type(v) is int
            and v == ENVELOPE_VERSION
            and type(alg) is str
            and alg in _SIG_LENGTH
            and type(kid) is str
            and kid
            and type(body) is bytes
            and type(sig) is bytes
        ):
            # An over-long kid is of the right form but in no trust store: check 2 says unknown_key.
            return Envelope(alg, kid, body, sig, v)
    raise _form_error(raw)


def _form_error(raw: object) -> AuthenticationError:
    """Why a decoded payload is not an envelope, the first problem found, with the kid if readable."""
    if type(raw) is not dict:
        return _malformed("the envelope must be a map")
    kid = raw.get("kid")
    shown = kid if type(kid) is str and 0 < len(kid) <= MAX_KID_LENGTH else None
    if raw.keys() != _FIELDS:
        missing = sorted(_FIELDS - raw.keys())
        extra = sorted(repr(k) for k in raw.keys() - _FIELDS)
        return _malformed(f"envelope fields: missing {missing}, unexpected {extra}", shown)
    v, alg = raw["v"], raw["alg"]
    if type(v) is not int or v != ENVELOPE_VERSION:
        return _malformed(f"envelope version {v!r} is not supported (expected {ENVELOPE_VERSION})", shown)
    if type(alg) is not str or alg not in _SIG_LENGTH:
        return _malformed(f"unknown algorithm {alg!r}", shown)
    if type(kid) is not str or not kid:
        return _malformed("kid must be a non-empty string")
    return _malformed("body and sig must be MessagePack bin", shown)


def verify_envelope(env: Envelope, trust: TrustStore, role: str, now: float) -> TrustedKey:
    """Checks 2 and 3: the key may sign for `role` now, and the signature verifies.

    When no usable entry verifies but a retired entry of the same kid does (a key rotated
    out at its `not_after`, a revoked one, one for another role), the error says that
    (`revoked_key`, `wrong_role`) rather than `bad_signature`, so operators see why.
    """
    candidates = trust.resolve(env.kid, role, now)  # check 2
    if len(env.sig) != _SIG_LENGTH[env.alg]:
        raise AuthenticationError(
            f"{env.alg} signature must be {_SIG_LENGTH[env.alg]} bytes", code="bad_signature", kid=env.kid
        )
    for key in candidates:
        if key.alg == env.alg and key.verifier.verify(env.sig, env.body):
            return key
    for key in trust.entries(env.kid):
        if key not in candidates and key.alg == env.alg and key.verifier.verify(env.sig, env.body):
            usable_now = not key.revoked and key.valid_at(now)
            raise AuthenticationError(
                f"signed by an entry of {env.kid!r} that is "
                + ("not for the role " + repr(role) if usable_now else "revoked or past its validity"),
                code="wrong_role" if usable_now else "revoked_key",
                kid=env.kid,
            )
    algs = sorted({k.alg for k in candidates})
    raise AuthenticationError(
        f"signature by {env.kid!r} ({env.alg}) does not verify with its key ({', '.join(algs)})",
        code="bad_signature",
        kid=env.kid,
    )
