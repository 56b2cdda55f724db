"""Bearer tokens and API clients: real EdDSA JWTs made by PyJWT, and every way a token can be bad
refused with its own reason (issue 18: expired, not yet valid, wrong audience, wrong algorithm -
`none`, HS256 keyed with the public key -, tampered, revoked client)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.common.errors import ConfigError
from agent.common.passwords import hash_password
from gateway.clients import ApiClients
from gateway.errors import TokenRefused
from gateway.tokens import Tokens, load_or_make_key
from tests.gateway.conftest import jwt_claims


def clients(revoked: bool = False) -> ApiClients:
    def entry(name: str, roles: list[str], secret: str, gone: bool) -> dict[str, object]:
        return {"name": name, "roles": roles, "secret_hash": hash_password(secret), "revoked": gone}

    return ApiClients.parse(
        {
            "format": 1,
            "clients": [
                entry("webapp", ["read", "submit"], "s3cret", False),
                entry("old", ["admin"], "old-secret", revoked),
            ],
        }
    )


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    return Tokens(
        load_or_make_key(tmp_path / "token.key"), issuer="gw-1", audience="edge-gateway", ttl_s=3600
    )


def refused(tokens: Tokens, token: str, known: ApiClients | None = None) -> str:
    with pytest.raises(TokenRefused) as exc:
        tokens.check(token, known or clients())
    assert exc.value.status == 401
    return exc.value.code


def test_a_client_exchanges_its_secret_for_a_token_that_names_it(tokens: Tokens) -> None:
    known = clients()
    client = known.authenticate("webapp", "s3cret")
    token, expires = tokens.issue(client)
    claims = tokens.check(token, known)
    assert claims.client.name == "webapp" and claims.client.may("read") and not claims.client.may("admin")
    assert time.time() + 3590 <= expires <= time.time() + 3600
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "EdDSA"


@pytest.mark.parametrize(
    ("name", "secret", "code"),
    [
        ("webapp", "wrong", "invalid_client"),
        ("nobody", "s3cret", "invalid_client"),
        ("old", "old-secret", "revoked_client"),
    ],
)
def test_wrong_credentials_and_revoked_clients_get_no_token(name: str, secret: str, code: str) -> None:
    with pytest.raises(TokenRefused) as exc:
        clients(revoked=True).authenticate(name, secret)
    assert exc.value.code == code


def test_expired_and_not_yet_valid_tokens(tokens: Tokens) -> None:
    client = clients().authenticate("webapp", "s3cret")
    now = time.time()  # not the module's import time: the suite may reach this test minutes later
    old, _ = tokens.issue(client, now=now - 3600 - 60)
    assert refused(tokens, old) == "token_expired"
    future, _ = tokens.issue(client, now=now + 600)
    assert refused(tokens, future) == "token_not_yet_valid"
    within_leeway, _ = tokens.issue(client, now=now + 10)
    assert tokens.check(within_leeway, clients()).client.name == "webapp"


def test_another_audience_or_issuer(tmp_path: Path, tokens: Tokens) -> None:
    client = clients().authenticate("webapp", "s3cret")
    key = load_or_make_key(tmp_path / "token.key")  # the same key: only the claim differs
    other = Tokens(key, issuer="gw-1", audience="another-service", ttl_s=60)
    assert refused(tokens, other.issue(client)[0]) == "wrong_audience"
    impostor = Tokens(key, issuer="gw-2", audience="edge-gateway", ttl_s=60)
    assert refused(tokens, impostor.issue(client)[0]) == "wrong_issuer"


def test_alg_none_and_hs256_keyed_with_the_public_key_are_refused(tmp_path: Path, tokens: Tokens) -> None:
    none_token = jwt.encode(jwt_claims(), None, algorithm="none")
    assert refused(tokens, none_token) == "wrong_algorithm"
    public_pem = (
        load_or_make_key(tmp_path / "token.key")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(jwt_claims()).encode()).rstrip(b"=")
    sig = base64.urlsafe_b64encode(
        hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
    ).rstrip(b"=")
    assert refused(tokens, (header + b"." + body + b"." + sig).decode()) == "wrong_algorithm"


def test_a_token_of_another_key_and_tampered_tokens(tokens: Tokens) -> None:
    foreign = jwt.encode(jwt_claims(), Ed25519PrivateKey.generate(), algorithm="EdDSA")
    assert refused(tokens, foreign) == "bad_signature"
    token, _ = tokens.issue(clients().authenticate("webapp", "s3cret"))
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["sub"] = "old"  # promote itself to admin
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert refused(tokens, f"{head}.{forged}.{sig}") == "bad_signature"
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert refused(tokens, f"{head}.{body}.{flipped}") == "bad_signature"
    assert refused(tokens, "not.a.jwt") == "malformed_token"
    assert refused(tokens, "") == "malformed_token"


def test_missing_claims_unknown_and_revoked_clients(tmp_path: Path, tokens: Tokens) -> None:
    key = load_or_make_key(tmp_path / "token.key")
    without_jti = {k: v for k, v in jwt_claims().items() if k != "jti"}
    assert refused(tokens, jwt.encode(without_jti, key, algorithm="EdDSA")) == "malformed_token"
    stranger = {**jwt_claims(), "sub": "nobody"}
    assert refused(tokens, jwt.encode(stranger, key, algorithm="EdDSA")) == "unknown_client"
    token, _ = tokens.issue(clients().authenticate("old", "old-secret"))
    assert tokens.check(token, clients()).client.name == "old"
    assert refused(tokens, token, clients(revoked=True)) == "revoked_client"  # revoked after issue


def test_the_token_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "token.key"
    first = load_or_make_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_or_make_key(path)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert first.public_key().public_bytes(*raw) == again.public_key().public_bytes(*raw)
    path.write_text("not a key")
    with pytest.raises(ConfigError) as exc:
        load_or_make_key(path)
    assert exc.value.key == "auth.token_key"


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"format": 2, "clients": []}, "not an api-clients.json of format 1"),
        ({"format": 1, "clients": [{"roles": ["read"]}]}, "clients[0]: needs a name"),
        ({"format": 1, "clients": [{"name": "a", "roles": ["root"], "secret_hash": "x"}]}, "roles must be"),
        ({"format": 1, "clients": [{"name": "a", "roles": ["read"], "secret_hash": "plain"}]}, "secret_hash"),
    ],
)
def test_a_bad_clients_file_is_refused_naming_the_setting(doc: object, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        ApiClients.parse(doc)
    assert exc.value.key == "auth.api_clients" and problem in str(exc.value)


def test_a_remembered_token_still_expires_and_still_follows_revocation(tokens: Tokens) -> None:
    token, expires = tokens.issue(clients().authenticate("old", "old-secret"))
    assert tokens.check(token, clients()).client.name == "old"  # verified, remembered
    assert tokens.check(token, clients(), now=expires + 29).client.name == "old"  # within the leeway
    with pytest.raises(TokenRefused) as late:
        tokens.check(token, clients(), now=expires + 31)
    assert late.value.code == "token_expired"
    fresh, _ = tokens.issue(clients().authenticate("old", "old-secret"))
    tokens.check(fresh, clients())
    with pytest.raises(TokenRefused) as gone:
        tokens.check(fresh, clients(revoked=True))
    assert gone.value.code == "revoked_client"
