"""The fleet on a real 3-node NATS cluster (JetStream + MQTT), from `edge-provision`'s files.

    def test_x(cluster_site: ClusterSite) -> None:
        with cluster_site.agent(first=1):            # node-1's agent, on NATS node 1 first
            device = cluster_site.client("sensor-1", node=2)
            dashboard = cluster_site.client("dash-1", node=3)

Every member is configured from its bundle (which lists the three endpoints and MQTT 3.1.1), plus
`EDGE_*` variables: the agent's data directory, test kernels, and `EDGE_MQTT_SERVERS` in an order
that starts on the node a test wants. Nodes are killed, stopped and started through
`cluster_site.cluster` (tests/support/nats.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.common.sections import MqttSection
from agent.node.app import Agent
from agent.node.config import Config, load_config
from agent.protocol import Signer, Topics, TrustStore, load_signer, make_task, open_agent_message
from agent.tools.connection import ConnectSettings, ToolClient
from tests.support.agents import running_agent
from tests.support.fleet import edge_provision
from tests.support.mqtt import ConnectRefused, TestClient
from tests.support.nats import NatsCluster, nats_cluster
from tests.support.services import LOCALHOST, terminate

IDENTITIES = [
    ["agent", "node-1"],
    ["device", "sensor-1"],
    ["device", "mcu-1", "--alg", "hmac-sha256"],
    ["operator", "op-1"],
    ["dashboard", "dash-1"],
]
KIND_FILE = {
    "agent": "agent.toml",
    "device": "device.toml",
    "operator": "operator.toml",
    "dashboard": "dashboard.toml",
}
TOPICS = Topics()
TIMEOUT = 60.0  # generous: two shared cores, and a node's JetStream catching up after a restart


@dataclass
class ClusterSite:
    root: Path  # the fleet directory
    cluster: NatsCluster
    tmp: Path
    _clients: list[TestClient] = field(default_factory=list)
    _trust: TrustStore | None = None

    def bundle(self, name: str) -> Path:
        """`name`'s configuration file, bundled after the cluster's files (so it lists the nodes)."""
        kind = next(c[0] for c in IDENTITIES if c[1] == name)
        out = self.tmp / f"bundle-{name}"
        if not out.exists():
            edge_provision("--fleet", self.root, "bundle", name, "--out", out)
        return out / KIND_FILE[kind]

    def servers(self, first: int) -> str:
        """Every endpoint, starting with node `first`."""
        order = [*range(first, 4), *range(1, first)]
        return ",".join(self.cluster.node(i).endpoint for i in order)

    def agent_env(self, node: str = "node-1", first: int = 1, **overrides: Any) -> dict[str, str]:
        env = {
            "EDGE_MQTT_SERVERS": self.servers(first),
            "EDGE_MQTT_RECONNECT_MIN_S": "0.2",
            "EDGE_MQTT_RECONNECT_MAX_S": "2",
            "EDGE_AGENT_DATA_DIR": str(self.tmp / f"data-{node}"),
            "EDGE_WORKERS_COUNT": "2",
            "EDGE_TESTING_TEST_KERNELS": "true",
            "EDGE_METRICS_PORT": "0",
        }
        env.update({f"EDGE_{k.upper()}": str(v) for k, v in overrides.items()})
        return env

    def config(self, node: str = "node-1", first: int = 1, **overrides: Any) -> Config:
        return load_config(self.bundle(node), environ=self.agent_env(node, first, **overrides))

    @contextlib.contextmanager
    def agent(self, node: str = "node-1", first: int = 1, **overrides: Any) -> Iterator[Agent]:
        """An agent in this process, connected first to NATS node `first`."""
        with running_agent(Agent(self.config(node, first, **overrides)), TIMEOUT) as agent:
            yield agent

    @contextlib.contextmanager
    def agent_process(
        self, node: str = "node-1", first: int = 1, **overrides: Any
    ) -> Iterator[subprocess.Popen[bytes]]:
        """`python -m agent run` from the bundle, its output in tmp/agent-NODE.log; SIGTERM at the end."""
        env = {**os.environ, **self.agent_env(node, first, **overrides), "PYTHONUNBUFFERED": "1"}
        with (self.tmp / f"agent-{node}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(self.bundle(node))],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            yield proc
        finally:
            terminate(proc, timeout=TIMEOUT)

    def agent_log(self, node: str = "node-1") -> str:
        return (self.tmp / f"agent-{node}.log").read_text(errors="replace")

    def mqtt_section(self, name: str, first: int) -> MqttSection:
        """`name`'s `[mqtt]` as its bundle says, with the servers starting at node `first`."""
        out = self.bundle(name).parent
        return MqttSection(
            tls=True,
            ca_file=out / "ca.crt",
            cert_file=out / "tls.crt",
            key_file=out / "tls.key",
            username=name,
            password_file=out / "broker.password",
            protocol="3.1.1",
            servers=tuple(self.servers(first).split(",")),
            reconnect_min_s=0.2,
            reconnect_max_s=2.0,
        )

    def tool_client(
        self, name: str, first: int, client_id: str, on_puback: Callable[[int], None] | None = None
    ) -> ToolClient:
        """A client of the tools (edge-submit's), failing over across the nodes from `first`."""
        m = self.mqtt_section(name, first)
        settings = ConnectSettings(
            host=LOCALHOST,
            port=1,
            client_id=client_id,
            username=name,
            password=m.password(),
            tls=m.tls_context(),
            servers=tuple(m.endpoints()),
        )
        client = ToolClient(settings, on_puback)
        client.connect()
        return client

    def client(self, name: str, node: int, client_id: str | None = None, **options: Any) -> TestClient:
        """`name` on NATS node `node` over mutual TLS with its password (no failover). After a
        restart a node answers MQTT only once JetStream has elected its streams' leaders: retried
        (a fresh paho client each time: one client's second `loop_start` leaks a socket pair)."""
        m = self.mqtt_section(name, node)
        deadline = time.monotonic() + TIMEOUT
        while True:
            client = TestClient(
                self.cluster.node(node).tls_port,
                client_id or f"{name}-test-{len(self._clients)}",
                username=name,
                password=m.password(),
                tls=m.tls_context(),
                **options,
            )
            try:
                client.connect(TIMEOUT)
            except (ConnectRefused, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
            self._clients.append(client)
            return client

    def signer(self, name: str) -> Signer:
        [path] = sorted((self.root / "identities" / name).glob("signing-*.key"))
        return load_signer(path, kid=name)

    def task(
        self, issuer: str, kernel: str, params: dict[str, Any], **options: Any
    ) -> tuple[str, bytes, Any]:
        target = options.pop("target", "node-1")
        return make_task(self.signer(issuer), target, kernel, params, **options)

    def open(self, topic: str, payload: bytes) -> Any:
        """Verify with the agent's key (a dashboard's trust store) and decode."""
        if self._trust is None:
            self._trust = TrustStore.load(self.bundle("dash-1").parent / "trust.toml")
        return open_agent_message(payload, topic, self._trust)

    def close(self) -> None:
        for client in self._clients:
            client.close()


def wait_until(condition: Any, timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Poll `condition()` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def cluster_site(tmp_path: Path) -> Iterator[ClusterSite]:
    root = tmp_path / "fleet"
    edge_provision("init", root, "--name", "cluster")
    for command in IDENTITIES:
        edge_provision("--fleet", root, "add", *command)
    with nats_cluster(root, tmp_path / "nats") as cluster:
        site = ClusterSite(root, cluster, tmp_path)
        try:
            yield site
        finally:
            site.close()
