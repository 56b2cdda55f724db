"""Bearer tokens: short-lived JWTs signed with the gateway's own Ed25519 key (EdDSA, RFC 8037).

    tokens = Tokens(key, issuer="gw-1", audience="edge-gateway", ttl_s=3600)
    token, expires_at = tokens.issue(client)           # POST /api/v1/token
    claims = tokens.check(token, clients)              # every other route; TokenRefused otherwise

Only EdDSA is accepted (`algorithms=["EdDSA"]`): a token with `alg: none`, or HS256 keyed with our
public key (the classic confusion attack), is refused before its signature is looked at. A token
must carry `iss`, `aud`, `sub`, `iat`, `nbf`, `exp` and `jti`; 30 s of clock leeway. A token of a
client revoked since it was issued is refused (`revoked_client`): the clients file is checked on
every request, so revocation takes effect at the next SIGHUP, not when the token expires.

The key lives in a file of its own (`auth.token_key`, made 0600 at first start), not the signing
key of tasks: leaking a token key lets someone forge tokens for this gateway, not tasks for agents.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.common.errors import ConfigError
from agent.common.fileio import PRIVATE, write_atomic

from .clients import ApiClient, ApiClients
from .errors import TokenRefused

ALGORITHM = "EdDSA"
LEEWAY_S = 30.0
CACHE_SIZE = 10_000  # verified tokens remembered
_REQUIRED = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]
#: PyJWT's exceptions and the refusal each becomes (the most specific first).
_REASONS: list[tuple[type[jwt.PyJWTError], str, str]] = [
    (
        jwt.ExpiredSignatureError,
        "token_expired",
        "the token has expired: ask POST /api/v1/token for a new one",
    ),
    (jwt.ImmatureSignatureError, "token_not_yet_valid", "the token is not valid yet (check the clocks)"),
    (jwt.InvalidAudienceError, "wrong_audience", "the token is for another service"),
    (jwt.InvalidIssuerError, "wrong_issuer", "the token was issued by another gateway"),
    (jwt.InvalidAlgorithmError, "wrong_algorithm", "only EdDSA tokens of this gateway are accepted"),
    (jwt.MissingRequiredClaimError, "malformed_token", "the token lacks a required claim"),
    (jwt.InvalidSignatureError, "bad_signature", "the token's signature does not verify"),
    (jwt.DecodeError, "malformed_token", "the token is not a JWT"),
]


def load_or_make_key(path: Path) -> Ed25519PrivateKey:
    """The token key at `path`, made (0600) when absent."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, pem, PRIVATE)
        return key
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError("auth.token_key", f"cannot load {path}: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError("auth.token_key", f"{path} is not an Ed25519 private key")
    return loaded


@dataclass(frozen=True)
class Claims:
    client: ApiClient
    token_id: str
    expires_at: float


class Tokens:
    def __init__(self, key: Ed25519PrivateKey, *, issuer: str, audience: str, ttl_s: float) -> None:
        self._key = key
        self._public = key.public_key()
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self._verified: dict[str, tuple[str, float, str]] = {}  # token -> (sub, exp, jti); one thread

    def issue(self, client: ApiClient, now: float | None = None) -> tuple[str, float]:
        """(token, expires_at) for `client`, with its roles (informational: `check` reads the
        roles from the clients file, so a role taken away applies to tokens already issued)."""
        issued = int(time.time() if now is None else now)
        expires = issued + int(self.ttl_s)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.name,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "jti": uuid.uuid4().hex,
            "roles": sorted(client.roles),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), float(expires)

    def check(self, token: str, clients: ApiClients, now: float | None = None) -> Claims:
        """The token's client, checked against the clients file on every call (revocation); the
        signature and claims are checked once per token and remembered until it expires (an
        EdDSA verification and PyJWT's parsing cost ~140 us, a tenth of a request)."""
        at = time.time() if now is None else now
        known = self._verified.get(token)
        if known is not None and known[1] + LEEWAY_S < at:
            del self._verified[token]
            raise _refusal(jwt.ExpiredSignatureError())
        if known is None:
            known = self._verify(token)
            if len(self._verified) >= CACHE_SIZE:
                self._verified.clear()  # a flood of distinct valid tokens: start over, stay bounded
            self._verified[token] = known
        subject, expires, token_id = known
        client = clients.by_name.get(subject)
        if client is None:
            raise TokenRefused("unknown_client", f"API client {subject!r} is not known to this gateway")
        if client.revoked:
            raise TokenRefused("revoked_client", f"API client {client.name!r} is revoked")
        return Claims(client, token_id, expires)

    def _verify(self, token: str) -> tuple[str, float, str]:
        """(subject, expires at, token id) of a token whose signature and claims are good now."""
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": _REQUIRED},
            )
        except jwt.PyJWTError as exc:
            raise _refusal(exc) from None
        return str(claims["sub"]), float(claims["exp"]), str(claims["jti"])


def _refusal(exc: jwt.PyJWTError) -> TokenRefused:
    for kind, code, message in _REASONS:
        if isinstance(exc, kind):
            return TokenRefused(code, message)
    return TokenRefused("invalid_token", f"the token is refused: {exc}")
