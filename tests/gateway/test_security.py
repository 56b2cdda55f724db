"""edge-gateway's doors over real HTTP: every bad token refused with 401 and its reason, roles,
rate limits with Retry-After, TLS 1.3 with HSTS, the audit log, revocation on SIGHUP, and the
OpenAPI document validated against the OpenAPI 3.1 schema."""

from __future__ import annotations

import base64
import json
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openapi_spec_validator import validate

from provisioning.cli import main
from tests.gateway.conftest import https_env, jwt_claims, server_cert_args
from tests.support.gateway import GatewaySite, gateway_process

COMPUTE = {"algorithm": "stats", "parameters": {"signal": [1, 2, 3]}}


def test_every_bad_token_is_refused_with_401_and_its_reason(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gateway_process(gw):
        good = gw.token("webapp")
        head, body, sig = good.split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=="))
        admin = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "ops"}).encode()).rstrip(b"=").decode()
        token_key = gw.site.tmp / "bundle-gw-1" / "data" / "token.key"
        key = serialization.load_pem_private_key(token_key.read_bytes(), None)
        cases = {
            "missing_token": None,
            "malformed_token": "abc",
            "bad_signature": f"{head}.{admin}.{sig}",
            "token_expired": jwt.encode(
                jwt_claims(exp=int(time.time()) - 120, iat=0, nbf=0), key, algorithm="EdDSA"
            ),
            "token_not_yet_valid": jwt.encode(jwt_claims(nbf=int(time.time()) + 600), key, algorithm="EdDSA"),
            "wrong_audience": jwt.encode(jwt_claims(aud="grafana"), key, algorithm="EdDSA"),
            "wrong_algorithm": jwt.encode(jwt_claims(), None, algorithm="none"),
            "unknown_client": jwt.encode(jwt_claims(sub="mallory"), key, algorithm="EdDSA"),
            "revoked_client": jwt.encode(jwt_claims(sub="gone"), key, algorithm="EdDSA"),
        }
        cases["another key"] = jwt.encode(jwt_claims(), Ed25519PrivateKey.generate(), algorithm="EdDSA")
        for code, token in cases.items():
            status, answer, headers = gw.call("GET", "/api/v1/tasks", token=token)
            expected = "bad_signature" if code == "another key" else code
            assert (status, answer["error"]["code"]) == (401, expected), code
            assert headers["WWW-Authenticate"].startswith("Bearer")
        assert gw.call("GET", "/api/v1/tasks", token=good)[0] == 200
        # credentials
        bad = gw.call("POST", "/api/v1/token", {"client_id": "webapp", "client_secret": "guess"})
        assert bad[0] == 401 and bad[1]["error"]["code"] == "invalid_client"
        gone = gw.call("POST", "/api/v1/token", {"client_id": "gone", "client_secret": gw.secrets["gone"]})
        assert gone[0] == 401 and gone[1]["error"]["code"] == "revoked_client"
        basic = base64.b64encode(f"webapp:{gw.secrets['webapp']}".encode()).decode()
        status, answer, _ = gw.call(
            "POST", "/api/v1/token", raw=b"", headers={"Authorization": f"Basic {basic}"}
        )
        assert status == 200 and answer["token_type"] == "Bearer" and answer["roles"] == ["read", "submit"]


def test_rate_limit_per_client_with_retry_after(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gateway_process(gw, EDGE_GATEWAY_LIMITS_RATE_PER_S="2", EDGE_GATEWAY_LIMITS_BURST="3"):
        web, viewer = gw.token("webapp"), gw.token("viewer")
        statuses = [gw.call("GET", "/api/v1/tasks", token=web) for _ in range(6)]
        codes = [s[0] for s in statuses]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
        limited = next(s for s in statuses if s[0] == 429)
        assert limited[1]["error"]["code"] == "rate_limited" and int(limited[2]["Retry-After"]) >= 1
        assert gw.call("GET", "/api/v1/tasks", token=viewer)[0] == 200  # another client's bucket
        time.sleep(1.2)
        assert gw.call("GET", "/api/v1/tasks", token=web)[0] == 200
        # token requests under made-up names share one bucket (the table cannot grow), with Retry-After
        guesses = [
            gw.call("POST", "/api/v1/token", {"client_id": f"guess-{n}", "client_secret": "x"})
            for n in range(6)
        ]
        assert [g[0] for g in guesses][:3] == [401, 401, 401]
        refused = next(g for g in guesses if g[0] == 429)
        assert refused[1]["error"]["code"] == "rate_limited" and int(refused[2]["Retry-After"]) >= 1
        assert gw.call("GET", "/api/v1/tasks", token=viewer)[0] == 200


def test_revoking_a_client_takes_effect_at_sighup_for_its_live_tokens(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gateway_process(gw) as running:
        token = gw.token("webapp")
        assert gw.call("GET", "/api/v1/tasks", token=token)[0] == 200
        assert main(["--fleet", str(gw.site.fleet.root), "revoke", "webapp"]) == 0
        bundle = gw.site.tmp / "bundle-gw-1"
        assert (
            main(["--fleet", str(gw.site.fleet.root), "bundle", "gw-1", "--out", str(bundle), "--force"]) == 0
        )
        assert running.proc is not None
        running.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while gw.call("GET", "/api/v1/tasks", token=token)[0] == 200:
            assert time.monotonic() < deadline, "the revocation never took effect"
            time.sleep(0.1)
        status, answer, _ = gw.call("GET", "/api/v1/tasks", token=token)
        assert (status, answer["error"]["code"]) == (401, "revoked_client")


def test_https_with_a_certificate_from_the_fleet_ca_tls_13_and_hsts(
    gw_site: GatewaySite, tmp_path: Path
) -> None:
    """`edge-provision server-cert`: the fleet CA's tooling; clients verify with the bundle's ca.crt."""
    gw = gw_site
    env = https_env(gw, tmp_path)
    assert (tmp_path / "server.key").stat().st_mode & 0o777 == 0o600
    with gateway_process(gw, **env):
        status, _, headers = gw.call("GET", "/health")
        assert status == 200 and headers["Strict-Transport-Security"] == "max-age=31536000"
        old = ssl.create_default_context(cafile=str(gw.site.fleet.root / "ca" / "ca.crt"))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(urllib.error.URLError) as refused:
            urllib.request.urlopen(f"{gw.base}/health", timeout=5, context=old)
        assert isinstance(refused.value.reason, ssl.SSLError)
        stranger = ssl.create_default_context()  # the system's CAs: the fleet CA is not among them
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{gw.base}/health", timeout=5, context=stranger)
    assert main(server_cert_args(gw, tmp_path)) == 2  # the files exist: --force to replace them


def test_mutating_requests_are_audited_with_their_client(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gw.site.agent(), gateway_process(gw):
        token, viewer = gw.token("webapp"), gw.token("viewer")
        status, body, _ = gw.call("POST", "/api/v1/compute?wait=20", COMPUTE, token=token)
        assert status == 200
        assert gw.call("POST", "/api/v1/compute", COMPUTE, token=viewer)[0] == 403
        lines = [
            json.loads(line.split("gateway.audit: ", 1)[1])
            for line in gw.output().splitlines()
            if "gateway.audit: " in line
        ]
        compute = [e for e in lines if e["path"] == "/api/v1/compute"]
        assert {"client": "webapp", "status": 200, "task_id": body["task_id"]}.items() <= compute[0].items()
        assert {"client": "viewer", "status": 403}.items() <= compute[1].items()


def test_the_openapi_document_is_valid_and_covers_every_route(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gateway_process(gw):
        status, doc, _ = gw.call("GET", "/api/v1/openapi.json")
    assert status == 200
    validate(doc)
    assert set(doc["paths"]) >= {
        "/api/v1/compute",
        "/api/v1/task/{task_id}",
        "/api/v1/tasks",
        "/api/v1/nodes",
        "/api/v1/metrics",
        "/health",
        "/metrics",
        "/api/v1/token",
        "/api/v1/session",
        "/api/v1/events",
        "/api/v1/kernels",
        "/",
        "/static/{path}",
    }
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "session"}


def test_a_client_too_slow_to_send_its_body_is_cut_off_with_408(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gateway_process(gw, EDGE_GATEWAY_HTTP_READ_TIMEOUT_S="1"):
        token = gw.token("webapp")
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            head = (
                "POST /api/v1/compute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n"
            )
            sock.sendall(head.encode() + b'{"algorithm": ')  # then nothing more
            started = time.monotonic()
            answer = sock.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408") and "request_timeout" in answer, answer
        assert 0.9 <= time.monotonic() - started < 5
        assert gw.call("GET", "/health")[0] == 200
