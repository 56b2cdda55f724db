"""Fixtures of the agent suite: a real fleet from `edge-provision`, a real broker, a real agent.

    def test_x(site: Site) -> None:                 # embedded broker (and Mosquitto where parametrised)
        with site.agent() as agent:                 # node-1, in this process, from its bundle
            device = site.client("sensor-1")        # TLS + password, as the bundle says
            topic, payload, task = site.task("sensor-1", "stats", {"signal": [1.0, 2.0]})
            ...

The agent is configured exactly as `edge-provision bundle` wrote it, plus `EDGE_*` variables (the
broker's port, MQTT version, a data directory per test, test kernels): the same variables drive
`python -m agent run` in the subprocess tests.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.node.app import Agent
from agent.node.config import Config, load_config
from agent.protocol import Result, Signer, Topics, TrustStore, load_signer, make_task, open_agent_message
from broker import EmbeddedBroker, load_settings
from tests.support.agents import running_agent
from tests.support.brokers import RunningBroker
from tests.support.fleet import Fleet, edge_provision, provision
from tests.support.mqtt import TestClient
from tests.support.services import run_mosquitto

IDENTITIES = [
    ["agent", "node-1", "--pool", "cams"],
    ["agent", "node-2", "--pool", "cams"],
    ["device", "sensor-1"],
    ["device", "mcu-1", "--alg", "hmac-sha256"],
    ["device", "sensor-2", "--targets", "node-2"],
    ["operator", "op-1"],
    ["dashboard", "dash-1"],
    ["device", "old-device"],
]
REVOKED = ["old-device"]
PROTOCOL_FOR = {"embedded": "3.1.1", "mosquitto": "5"}
BROKERS = ["embedded", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]
TOPICS = Topics()
TIMEOUT = 30.0


@dataclass
class Site:
    """A fleet, its broker and the files of its members."""

    fleet: Fleet
    broker: RunningBroker
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)  # extra EDGE_* for every agent of the test
    _clients: list[TestClient] = field(default_factory=list)
    _trust: TrustStore | None = None

    @property
    def kind(self) -> str:
        return self.broker.kind

    def bundle(self, node: str = "node-1") -> Path:
        out = self.tmp / f"bundle-{node}"
        if not out.exists():
            edge_provision("--fleet", self.fleet.root, "bundle", node, "--out", out)
        return out / "agent.toml"

    def agent_env(self, node: str = "node-1", **overrides: Any) -> dict[str, str]:
        env = {
            "EDGE_MQTT_PORT": str(self.broker.tls_port),
            "EDGE_MQTT_PROTOCOL": PROTOCOL_FOR[self.kind],
            "EDGE_MQTT_RECONNECT_MIN_S": "0.2",
            "EDGE_MQTT_RECONNECT_MAX_S": "1",
            "EDGE_AGENT_DATA_DIR": str(self.tmp / f"data-{node}"),
            "EDGE_WORKERS_COUNT": "2",
            "EDGE_TESTING_TEST_KERNELS": "true",
            "EDGE_METRICS_PORT": "0",  # /metrics on a free port: tests and sessions run side by side
            **self.env,
        }
        env.update({f"EDGE_{k.upper()}": str(v) for k, v in overrides.items()})
        return env

    def config(self, node: str = "node-1", **overrides: Any) -> Config:
        """node's config: its bundle plus the test's variables, e.g. `workers_count=1`."""
        return load_config(self.bundle(node), environ=self.agent_env(node, **overrides))

    @contextlib.contextmanager
    def agent(self, node: str = "node-1", **overrides: Any) -> Iterator[Agent]:
        """An agent running in this process until the block ends (clean stop)."""
        with running_agent(Agent(self.config(node, **overrides)), TIMEOUT) as agent:
            yield agent

    def client(self, name: str, client_id: str | None = None, **options: Any) -> TestClient:
        """`name` connected over mutual TLS with its password, as its bundle would."""
        client = TestClient(
            self.broker.tls_port,
            client_id or f"{name}-test-{len(self._clients)}",
            username=name,
            password=self.fleet.password(name),
            tls=self.fleet.tls(name),
            **options,
        )
        self._clients.append(client)
        client.connect()
        return client

    def signer(self, name: str) -> Signer:
        [path] = sorted((self.fleet.root / "identities" / name).glob("signing-*.key"))
        return load_signer(path, kid=name)

    def task(
        self, issuer: str, kernel: str, params: dict[str, Any], **options: Any
    ) -> tuple[str, bytes, Any]:
        options.setdefault("target", "node-1")
        target = options.pop("target")
        return make_task(self.signer(issuer), target, kernel, params, **options)

    def trust(self) -> TrustStore:
        """What a dashboard trusts: every agent's key."""
        out = self.tmp / "bundle-dash-1"
        if not out.exists():
            edge_provision("--fleet", self.fleet.root, "bundle", "dash-1", "--out", out)
        return TrustStore.load(out / "trust.toml")

    def watch(self, *filters: str) -> TestClient:
        """A dashboard subscribed to `filters` (QoS 1)."""
        client = self.client("dash-1")
        for topic_filter in filters:
            client.subscribe(topic_filter, 1)
        return client

    def open(self, message: Any) -> Any:
        """Verify with the agent's key (a dashboard's trust store) and decode."""
        if self._trust is None:
            self._trust = self.trust()
        return open_agent_message(message.payload, message.topic, self._trust)

    def submit(
        self, device: TestClient, issuer: str, kernel: str, params: dict[str, Any], **options: Any
    ) -> Any:
        """Sign and publish a task (QoS 1); returns the Task."""
        topic, payload, task = self.task(issuer, kernel, params, **options)
        device.publish(topic, payload)
        return task

    def results(self, watcher: TestClient, count: int, timeout: float = TIMEOUT) -> list[Result]:
        """The next `count` results on `watcher` (other topics skipped), verified."""
        got: list[Result] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"expected {count} results, got {[(r.id, r.status) for r in got]}"
            message = watcher.expect(1, left)[0]
            if "/results/" in message.topic:
                got.append(self.open(message))
        return got

    def close(self) -> None:
        for client in self._clients:
            client.close()


@contextlib.contextmanager
def restartable_broker(kind: str, fleet: Fleet) -> Iterator[RunningBroker]:
    """Either broker from the fleet's files; `restart()` stops it and starts it again on the same
    ports and data directory (what a reboot of the broker machine does)."""
    with contextlib.ExitStack() as stack:
        if kind == "embedded":
            settings = load_settings(None, environ={}, overrides={"fleet_files": str(fleet.amqtt_files)})
            threads = [EmbeddedBroker(settings).start_in_thread()]
            stack.callback(lambda: threads[-1].stop())

            def restart() -> None:
                threads[-1].stop()
                threads.append(EmbeddedBroker(settings).start_in_thread())
                running.embedded = threads[-1]

            running = RunningBroker(
                kind, threads[0].port, fleet.amqtt_files / "data", restart, threads[0].tls_port, threads[0]
            )
        else:
            conf = (fleet.mosquitto_files / "mosquitto.conf").read_text()
            ports = [fleet.tcp_port, fleet.tls_port]
            procs = [run_mosquitto(conf, fleet.mosquitto_files, ports)]
            procs[0].__enter__()
            stack.callback(lambda: procs[-1].__exit__(None, None, None))

            def restart() -> None:
                procs[-1].__exit__(None, None, None)
                procs.append(run_mosquitto(conf, fleet.mosquitto_files, ports))
                procs[-1].__enter__()

            running = RunningBroker(
                kind, fleet.tcp_port, fleet.mosquitto_files / "data", restart, fleet.tls_port
            )
        yield running


@contextlib.contextmanager
def _site(kind: str, tmp: Path) -> Iterator[Site]:
    fleet = provision(tmp, IDENTITIES, revoked=REVOKED)
    with restartable_broker(kind, fleet) as running:
        site = Site(fleet, running, tmp)
        try:
            yield site
        finally:
            site.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The embedded broker."""
    with _site("embedded", tmp_path) as s:
        yield s


@pytest.fixture(params=BROKERS)
def any_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """The embedded broker, then the same test on a real Mosquitto."""
    with _site(request.param, tmp_path) as s:
        yield s


# --- the agent as a process (kill -9, signals) --------------------------------------------------------


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> bool:
        """`text` appeared in the output within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


@contextlib.contextmanager
def agent_process(
    site: Site, node: str = "node-1", *, file_size_limit: int | None = None, **overrides: Any
) -> Iterator[AgentProcess]:
    """`python -m agent run --config <bundle>` with the site's variables; killed if still running.

    `file_size_limit`: RLIMIT_FSIZE of the agent, a disk that fills up (no file of the agent may
    pass it; a write past it fails with EFBIG, as one on a full disk fails with ENOSPC)."""
    env = {**os.environ, **site.agent_env(node, **overrides), "PYTHONUNBUFFERED": "1"}
    log = site.tmp / f"agent-{node}.log"

    def limit_files() -> None:
        if file_size_limit is not None:
            resource.setrlimit(
                resource.RLIMIT_FSIZE, (file_size_limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
            )

    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(site.bundle(node))],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=limit_files if file_size_limit is not None else None,
        )
    try:
        yield AgentProcess(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
