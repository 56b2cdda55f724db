"""A fleet moves from Mosquitto to a NATS cluster without losing a queued task, in the order
deploy/cluster/README.md gives: the cluster from `broker-files --format nats`, new bundles,
`edge-agent subscribe` with the agent's new bundle (its session on the cluster, so tasks sent there
wait for it), the devices move, the agent drains what Mosquitto holds for it, the agent moves.

NATS keeps no QoS 1 message for a topic without a subscription (its MQTT queue is an
interest-based stream): without `edge-agent subscribe` the tasks sent to the cluster before the
agent's first connection there are acknowledged and dropped (the second test shows it)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.node.app import Agent
from agent.node.config import load_config
from agent.protocol import TrustStore, load_signer, make_task, open_agent_message
from tests.cluster.conftest import TIMEOUT
from tests.support.agents import running_agent
from tests.support.fleet import Fleet, edge_provision, fleet_broker, provision
from tests.support.mqtt import TestClient
from tests.support.nats import NatsCluster, nats_cluster

pytestmark = [pytest.mark.nats, pytest.mark.mosquitto]
NAMES = {"node-1": "agent.toml", "sensor-1": "device.toml", "dash-1": "dashboard.toml"}


def _bundles(fleet: Fleet, out: Path) -> dict[str, Path]:
    for name in NAMES:
        edge_provision("--fleet", fleet.root, "bundle", name, "--out", out / name)
    return {name: out / name / file for name, file in NAMES.items()}


@contextlib.contextmanager
def _agent(bundle: Path, data: Path, port: int) -> Iterator[Agent]:
    env = {
        "EDGE_AGENT_DATA_DIR": str(data),
        "EDGE_MQTT_PORT": str(port),  # Mosquitto's (fleet.toml's is 8883); a cluster's bundle has servers
        "EDGE_WORKERS_COUNT": "1",
        "EDGE_METRICS_PORT": "0",
    }
    with running_agent(Agent(load_config(bundle, environ=env)), TIMEOUT) as agent:
        yield agent
        assert agent.run_until_idle()


def _client(fleet: Fleet, name: str, port: int, client_id: str) -> TestClient:
    client = TestClient(port, client_id, username=name, password=fleet.password(name), tls=fleet.tls(name))
    client.connect(TIMEOUT)
    return client


def _send(fleet: Fleet, client: TestClient, tag: str, count: int) -> set[str]:
    [key] = sorted((fleet.root / "identities" / "sensor-1").glob("signing-*.key"))
    signer = load_signer(key, kid="sensor-1")
    ids = set()
    for n in range(count):
        topic, payload, task = make_task(
            signer, "node-1", "stats", {"signal": [float(n)]}, task_id=f"{tag}-{n}"
        )
        client.publish(topic, payload)  # waits for the PUBACK
        ids.add(task.id)
    return ids


def _completed(watcher: TestClient, trust: TrustStore, wanted: set[str]) -> set[str]:
    """Ids of completed results that arrive until every `wanted` one did (or a timeout fails)."""
    got: set[str] = set()
    while not wanted <= got:
        message = watcher.expect(1, TIMEOUT)[0]
        result = open_agent_message(bytes(message.payload), message.topic, trust)
        if getattr(result, "status", None) == "completed":
            got.add(result.id)  # type: ignore[union-attr]
    return got


def _nats_client(fleet: Fleet, cluster: NatsCluster, name: str, node: int, client_id: str) -> TestClient:
    return _client(fleet, name, cluster.node(node).tls_port, client_id)


def test_a_fleet_moves_from_mosquitto_to_nats_without_losing_a_queued_task(tmp_path: Path) -> None:
    fleet = provision(tmp_path, [["agent", "node-1"], ["device", "sensor-1"], ["dashboard", "dash-1"]])
    old = _bundles(fleet, tmp_path / "old")
    trust = TrustStore.load(old["dash-1"].parent / "trust.toml")
    data = tmp_path / "data-node-1"
    with fleet_broker("mosquitto", fleet):
        with _agent(old["node-1"], data, fleet.tls_port):
            pass  # the agent's session on Mosquitto; then it is offline
        device = _client(fleet, "sensor-1", fleet.tls_port, "sensor-1-old")
        before = _send(fleet, device, "before", 5)  # queued by Mosquitto for the offline agent
        device.close()
        with nats_cluster(fleet.root, tmp_path / "nats") as cluster:
            new = _bundles(fleet, tmp_path / "new")
            made = subprocess.run(
                [sys.executable, "-m", "agent", "subscribe", "--config", str(new["node-1"])],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
            assert made.returncode == 0, made.stderr
            assert "session of node-1 on 127.0.0.1:" in made.stdout

            device = _nats_client(fleet, cluster, "sensor-1", 2, "sensor-1-new")
            after = _send(fleet, device, "after", 5)  # on the cluster: waits for the agent there
            device.close()

            old_watch = _client(fleet, "dash-1", fleet.tls_port, "dash-1-old")
            assert old_watch.subscribe("edge/results/node-1/#", 1) == 1
            with _agent(old["node-1"], data, fleet.tls_port):  # drains Mosquitto's queue
                assert _completed(old_watch, trust, before) >= before

            new_watch = _nats_client(fleet, cluster, "dash-1", 3, "dash-1-new")
            assert new_watch.subscribe("edge/results/node-1/#", 1) == 1
            with _agent(new["node-1"], data, fleet.tls_port) as agent:  # moves to the cluster
                assert agent.link.endpoint in cluster.servers
                assert _completed(new_watch, trust, after) >= after
            old_watch.close()
            new_watch.close()


def test_without_a_session_the_cluster_drops_tasks_for_an_agent_not_there_yet(tmp_path: Path) -> None:
    """Why `edge-agent subscribe` comes first: PUBACKed, and gone."""
    fleet = provision(tmp_path, [["agent", "node-1"], ["device", "sensor-1"], ["dashboard", "dash-1"]])
    with nats_cluster(fleet.root, tmp_path / "nats") as cluster:
        new = _bundles(fleet, tmp_path / "new")
        trust = TrustStore.load(new["dash-1"].parent / "trust.toml")
        device = _nats_client(fleet, cluster, "sensor-1", 2, "sensor-1-new")
        early = _send(fleet, device, "early", 3)
        watch = _nats_client(fleet, cluster, "dash-1", 3, "dash-1-new")
        assert watch.subscribe("edge/results/node-1/#", 1) == 1
        with _agent(new["node-1"], tmp_path / "data", fleet.tls_port):
            late = _send(fleet, device, "late", 1)
            assert _completed(watch, trust, late) == late, "only the task sent once the agent was there"
        device.close()
        watch.close()
    assert len(early) == 3
