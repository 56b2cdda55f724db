"""A real fleet for the gateway: `edge-provision` (agents, a gateway, API clients), a real broker,
a real agent, and `python -m gateway` as a process, spoken to over HTTP on 127.0.0.1.

    def test_x(gw: GatewaySite) -> None:
        token = gw.token("webapp")
        status, body = gw.call("POST", "/api/v1/compute?wait=10", {"algorithm": "stats", ...}, token=token)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import PROTOCOL_FOR, Site, restartable_broker
from tests.support.fleet import edge_provision, provision
from tests.support.services import free_port

IDENTITIES = [
    ["agent", "node-1", "--pool", "cams"],
    ["agent", "node-2"],
    ["gateway", "gw-1"],
    ["operator", "op-1"],
    ["dashboard", "dash-1"],
    ["device", "sensor-1"],
]
CLIENTS = {"webapp": "read,submit", "viewer": "read", "ops": "admin", "gone": "submit"}
BROKERS = ["embedded", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]
TIMEOUT = 30.0
SECRET = re.compile(r"secret \(shown once, stored only hashed\): (\S+)")


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


@dataclass
class GatewaySite:
    site: Site
    secrets: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None  # HTTPS with this client context

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body or text, headers)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None and raw is None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            request.add_header(k, v)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self.tls) as response:
                status, payload, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, payload, got = exc.code, exc.read(), dict(exc.headers)
        text = payload.decode()
        try:
            return status, json.loads(text), got
        except ValueError:
            return status, text, got

    def token(self, client: str) -> str:
        status, body, _ = self.call(
            "POST", "/api/v1/token", {"client_id": client, "client_secret": self.secrets[client]}
        )
        assert status == 200, body
        return str(body["access_token"])

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""


def _add_clients(root: Path) -> dict[str, str]:
    from provisioning.cli import main

    secrets = {}
    for name, roles in CLIENTS.items():
        out = Path(root.parent / f"{name}.secret")
        assert (
            main(
                ["--fleet", str(root), "add", "api-client", name, "--roles", roles, "--secret-file", str(out)]
            )
            == 0
        )
        secrets[name] = out.read_text().strip()
    assert main(["--fleet", str(root), "revoke", "gone"]) == 0
    return secrets


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


@contextlib.contextmanager
def gateway_process(gw: GatewaySite, **env: str) -> Iterator[GatewaySite]:
    site = gw.site
    bundle = site.tmp / "bundle-gw-1"
    if not bundle.exists():
        edge_provision("--fleet", site.fleet.root, "bundle", "gw-1", "--out", bundle)
    gw.port = gw.port or free_port()
    gw.log = site.tmp / "gateway.log"
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EDGE_")},
        "EDGE_GATEWAY_MQTT_PORT": str(site.broker.tls_port),
        "EDGE_GATEWAY_MQTT_PROTOCOL": PROTOCOL_FOR[site.kind],
        "EDGE_GATEWAY_MQTT_RECONNECT_MIN_S": "0.2",
        "EDGE_GATEWAY_MQTT_RECONNECT_MAX_S": "1",
        "EDGE_GATEWAY_HTTP_PORT": str(gw.port),
        "EDGE_GATEWAY_TASKS_DEFAULT_TARGET": "node-1",
        "PYTHONUNBUFFERED": "1",
        **gw.env,
        **env,
    }
    with gw.log.open("ab") as out:
        gw.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(bundle / "gateway.toml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full,
        )
    try:
        _wait_healthy(gw)
        yield gw
    finally:
        if gw.proc.poll() is None:
            gw.proc.terminate()
            try:
                gw.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                gw.proc.kill()
                gw.proc.wait()


def _wait_healthy(gw: GatewaySite) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert gw.proc is not None and gw.proc.poll() is None, "the gateway exited:\n" + gw.output()
        try:
            status, _, _ = gw.call("GET", "/health")
        except OSError:
            status = 0
        if status == 200:
            return
        time.sleep(0.1)
    raise AssertionError("the gateway did not become healthy:\n" + gw.output())


@contextlib.contextmanager
def _gateway_site(kind: str, tmp: Path) -> Iterator[GatewaySite]:
    fleet = provision(tmp, IDENTITIES)
    secrets = _add_clients(fleet.root)
    with restartable_broker(kind, fleet) as running:
        site = Site(fleet, running, tmp)
        try:
            yield GatewaySite(site, secrets)
        finally:
            site.close()


@pytest.fixture
def gw_site(tmp_path: Path) -> Iterator[GatewaySite]:
    """The embedded broker; the gateway not started yet (`gateway_process`)."""
    with _gateway_site("embedded", tmp_path) as gw:
        yield gw


@pytest.fixture(params=BROKERS)
def any_gw_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewaySite]:
    with _gateway_site(request.param, tmp_path) as gw:
        yield gw
