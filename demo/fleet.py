"""The demo's throwaway fleet under `.demo/` (or `$EDGE_DEMO_DIR`), made fresh on every run.

    demo = make_fleet(Path(".demo"))   # removes the previous demo directory first
    demo.bundle("demo-node") / "agent.toml"

Fresh every time, because a demo must start from a known state: new keys, an empty agent store,
an empty broker, free ports. A directory is removed only if it carries our marker file, so
pointing `EDGE_DEMO_DIR` at something else by mistake deletes nothing. Provisioning runs
`edge-provision` in this process (its output goes to `logs/provision.log`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from provisioning.cli import main as edge_provision

from .errors import DemoError

MARKER = ".edge-demo"
NODE, DEVICE, OPERATOR, DASHBOARD = "demo-node", "demo-sensor", "demo-operator", "demo-dashboard"
GATEWAY, API_CLIENT = "demo-gateway", "demo-app"
#: The dashboard's sign-in (role admin: the page shows submit, cancel, drain and resume).
DASHBOARD_CLIENT = "demo-admin"
MCU = "demo-mcu"  # an HMAC device, for firmware_examples/micropython (the demo itself does not run it)
BUNDLE_FILES = {
    NODE: "agent.toml",
    DEVICE: "device.toml",
    MCU: "device.toml",
    OPERATOR: "operator.toml",
    DASHBOARD: "dashboard.toml",
    GATEWAY: "gateway.toml",
}


@dataclass(frozen=True)
class DemoFleet:
    root: Path
    tcp_port: int
    tls_port: int

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def broker_files(self) -> Path:
        return self.root / "broker"

    @property
    def pid_file(self) -> Path:
        return self.root / "pids"

    @property
    def api_secret(self) -> Path:
        """The demo API client's secret (0600), for the gateway's POST /api/v1/token."""
        return self.root / f"{API_CLIENT}.secret"

    @property
    def dashboard_secret(self) -> Path:
        """The secret (0600) the dashboard page signs in with, as DASHBOARD_CLIENT."""
        return self.root / f"{DASHBOARD_CLIENT}.secret"

    def config(self, name: str) -> Path:
        """The bundle file of `name` (agent.toml, device.toml, ...)."""
        return self.root / name / BUNDLE_FILES[name]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clear(root: Path) -> None:
    """Remove a previous demo directory; refuse one we did not make."""
    if not root.exists():
        return
    if not (root / MARKER).exists() and any(root.iterdir()):
        raise DemoError(
            f"{root} exists and was not made by `make run`; remove it yourself or set EDGE_DEMO_DIR "
            "to another directory"
        )
    shutil.rmtree(root)


def _provision(log: Path, *args: str | Path) -> None:
    with (
        log.open("a", encoding="utf-8") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
    ):
        print(f"$ edge-provision {' '.join(map(str, args))}", flush=True)
        code = edge_provision([str(a) for a in args])
    if code != 0:
        raise DemoError(f"edge-provision {' '.join(map(str, args[:4]))} ... failed (exit {code}); see {log}")


def make_fleet(root: Path) -> DemoFleet:
    """A new fleet in `root`: an agent, two devices that may task it (Ed25519; HMAC for MicroPython),
    an operator, a dashboard, a gateway and two API clients of it (one for curl, an admin for the
    dashboard page), their bundles, and the embedded broker's files (mutual TLS and plain TCP on
    free 127.0.0.1 ports)."""
    clear(root)
    (root / "logs").mkdir(parents=True)
    (root / MARKER).write_text("made by `make run` (demo); removed by the next run\n")
    demo = DemoFleet(root, free_port(), free_port())
    log = demo.logs / "provision.log"
    fleet = root / "fleet"
    ports = ("--tcp-port", str(demo.tcp_port), "--tls-port", str(demo.tls_port))
    _provision(log, "init", fleet, "--name", "demo", *ports)
    _provision(log, "--fleet", fleet, "add", "agent", NODE)
    _provision(log, "--fleet", fleet, "add", "device", DEVICE, "--targets", NODE)
    _provision(log, "--fleet", fleet, "add", "device", MCU, "--alg", "hmac-sha256", "--targets", NODE)
    _provision(log, "--fleet", fleet, "add", "operator", OPERATOR)
    _provision(log, "--fleet", fleet, "add", "dashboard", DASHBOARD)
    _provision(log, "--fleet", fleet, "add", "gateway", GATEWAY)
    for client, roles, secret in (
        (API_CLIENT, "read,submit", demo.api_secret),
        (DASHBOARD_CLIENT, "admin", demo.dashboard_secret),
    ):
        _provision(
            log, "--fleet", fleet, "add", "api-client", client, "--roles", roles, "--secret-file", secret
        )
    for name in BUNDLE_FILES:
        _provision(log, "--fleet", fleet, "bundle", name, "--out", root / name)
    _provision(log, "--fleet", fleet, "broker-files", "--format", "amqtt", "--out", demo.broker_files)
    return demo
