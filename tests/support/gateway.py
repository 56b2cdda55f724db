"""A real fleet for edge-gateway tests: `edge-provision` (agents, a gateway, API clients), a real
broker, a real agent, and `python -m gateway` as a process, spoken to over HTTP on 127.0.0.1. Shared
by tests/gateway (the API) and tests/dashboard (the page in a browser).

    with gateway_site("embedded", tmp_path) as gw, gw.site.agent(), gateway_process(gw):
        token = gw.token("webapp")
        status, body, headers = gw.call("POST", "/api/v1/compute?wait=10", {...}, token=token)
"""

from __future__ import annotations

import contextlib
import json
import os
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
TIMEOUT = 30.0


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


def add_clients(root: Path) -> dict[str, str]:
    """CLIENTS as API clients of the fleet at `root` ("gone" revoked): name -> secret."""
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
def gateway_site(kind: str, tmp: Path) -> Iterator[GatewaySite]:
    """A fleet of IDENTITIES and API clients CLIENTS in `tmp`, and `kind`'s broker ("embedded" or
    "mosquitto") until the block ends; the gateway not started yet (`gateway_process`)."""
    fleet = provision(tmp, IDENTITIES)
    secrets = add_clients(fleet.root)
    with restartable_broker(kind, fleet) as running:
        site = Site(fleet, running, tmp)
        try:
            yield GatewaySite(site, secrets)
        finally:
            site.close()
