"""The gateway suite's fixtures over tests/support/gateway.py's real fleet (`edge-provision`, a real
broker, a real agent, `python -m gateway` as a process), and its helpers: OpenAPI conformance, JWT
claims, HTTPS.

    def test_x(gw_site: GatewaySite) -> None:
        with gw_site.site.agent(), gateway_process(gw_site) as gw:
            token = gw.token("webapp")
            status, body, _ = gw.call("POST", "/api/v1/compute?wait=10", {...}, token=token)
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GatewaySite, gateway_site

BROKERS = ["embedded", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]


def conforms(schema: str, value: Any) -> None:
    """`value` matches components/schemas/`schema` of the gateway's OpenAPI document."""
    from jsonschema import Draft202012Validator

    from gateway.openapi import document

    root = {"$ref": f"#/components/schemas/{schema}", "components": document()["components"]}
    Draft202012Validator(root).validate(value)


def jwt_claims(**changes: object) -> dict[str, object]:
    """The claims of a token gw-1 would issue to webapp for a minute from now, with `changes`."""
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "gw-1",
        "aud": "edge-gateway",
        "sub": "webapp",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "j",
    }
    claims.update(changes)
    return claims


def server_cert_args(gw: GatewaySite, out: Path) -> list[str]:
    """`edge-provision server-cert` for the gateway's HTTPS (the fleet CA; also 127.0.0.1)."""
    return ["--fleet", str(gw.site.fleet.root), "server-cert", "--host", "gw.example", "--out", str(out)]


def https_env(gw: GatewaySite, out: Path) -> dict[str, str]:
    """A server certificate in `out`, the client context that trusts it in `gw.tls`, and the
    variables that make `gateway_process` serve HTTPS with it."""
    from provisioning.cli import main

    assert main(server_cert_args(gw, out)) == 0
    gw.tls = ssl.create_default_context(cafile=str(gw.site.fleet.root / "ca" / "ca.crt"))
    return {
        "EDGE_GATEWAY_HTTP_TLS_CERT": str(out / "server.crt"),
        "EDGE_GATEWAY_HTTP_TLS_KEY": str(out / "server.key"),
    }


@pytest.fixture
def gw_site(tmp_path: Path) -> Iterator[GatewaySite]:
    """The embedded broker; the gateway not started yet (`gateway_process`)."""
    with gateway_site("embedded", tmp_path) as gw:
        yield gw


@pytest.fixture(params=BROKERS)
def any_gw_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewaySite]:
    with gateway_site(request.param, tmp_path) as gw:
        yield gw
