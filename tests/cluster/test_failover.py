"""Failover under load: the agent, a device and a dashboard on a 3-node NATS cluster while nodes
are killed and restarted. Nothing acknowledged is lost: every task the broker PUBACKed completes,
and a result sent twice (re-published after a reconnect) carries the same bytes.

The agent runs as a process from its bundle (servers: node 1 first), the device publishes a steady
stream through the tools' client (node 2 first), the dashboard watches through the gateway's
persistent link (node 3 first); all three fail over by themselves. Every wait is on a condition
with a generous deadline: two shared cores, and JetStream electing leaders after each loss.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from agent.tools.connection import ToolClient
from tests.cluster.conftest import TIMEOUT, TOPICS, ClusterSite, wait_until
from tests.cluster.load import Load, Watch
from tests.support.mqtt import TestClient

pytestmark = pytest.mark.nats

RATE = 8.0  # tasks per second
PROGRESS = 16  # results that must complete after each step (two seconds of load)
CONNECTED = re.compile(r"connected to (127\.0\.0\.1:\d+) \(MQTT")


def _connections(site: ClusterSite) -> list[str]:
    return CONNECTED.findall(site.agent_log())


def _progress(watch: Watch, what: str, count: int = PROGRESS) -> None:
    start = watch.completed_count()
    wait_until(lambda: watch.completed_count() >= start + count, 2 * TIMEOUT, f"{count} results after {what}")


def _warm_up(site: ClusterSite, device: ToolClient, watch: Watch) -> None:
    """Until a task completes: the agent's subscriptions exist (a task published before them has
    no subscriber to go to, on any MQTT broker), so every task of the load has one."""
    for attempt in range(1, 30):
        topic, payload, task = site.task("sensor-1", "stats", {"signal": [1.0]}, task_id=f"warm-up-{attempt}")
        device.publish(topic, payload)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if watch.completed({task.id}):
                return
            time.sleep(0.05)
    raise AssertionError("no warm-up task completed")


def test_failover_under_load_loses_nothing(cluster_site: ClusterSite) -> None:
    site, cluster = cluster_site, cluster_site.cluster
    watch = Watch(site.mqtt_section("dash-1", first=3), "dash-1-watch", site.open)
    assert watch.link.wait_connected(TIMEOUT)
    load = Load(site.signer("sensor-1"), RATE)
    device = site.tool_client("sensor-1", first=2, client_id="sensor-1-load", on_puback=load.puback)
    phases: list[tuple[str, float]] = []
    with site.agent_process(first=1) as agent:
        wait_until(lambda: _connections(site), TIMEOUT, "the agent's first connection")
        assert _connections(site) == [cluster.node(1).endpoint]
        _warm_up(site, device, watch)
        load.start(device)
        try:
            _progress(watch, "the start")

            phases.append(("kill 1", time.time()))
            cluster.kill(1)  # the agent's node
            wait_until(lambda: len(_connections(site)) >= 2, TIMEOUT, "the agent back on another node")
            assert _connections(site)[-1] != cluster.node(1).endpoint
            _progress(watch, "killing the agent's node")
            cluster.start(1)
            cluster.wait_healthy()

            phases.append(("kill 2", time.time()))
            cluster.kill(2)  # the device's node
            _progress(watch, "killing the device's node")
            cluster.start(2)
            cluster.wait_healthy()

            for index in (1, 2, 3):  # a rolling restart
                phases.append((f"stop {index}", time.time()))
                cluster.stop(index)
                _progress(watch, f"stopping node {index}", PROGRESS // 2)
                cluster.start(index)
                cluster.wait_healthy()
            _progress(watch, "the rolling restart")
        finally:
            load.stop()
        wait_until(lambda: not load.unacknowledged(), 2 * TIMEOUT, "a PUBACK for every task sent")
        acknowledged = load.acknowledged()
        deadline = time.monotonic() + 3 * TIMEOUT
        while watch.completed(acknowledged) != acknowledged and time.monotonic() < deadline:
            time.sleep(0.1)
        assert agent.poll() is None, site.agent_log()[-3000:]
    lost = acknowledged - watch.completed(acknowledged)
    if lost:
        (site.tmp / "lost.txt").write_text("\n".join(sorted(lost)))
        print("LOST", sorted(lost)[:50], "tmp", site.tmp)
        print("PHASES", phases)
        print("SENT", {i: load.sent[i] for i in sorted(lost)[:50]})
    completed = len(acknowledged) - len(lost)
    print(f"sent {len(load.sent)}, acknowledged {len(acknowledged)}, completed {completed},"
          f" results received twice {watch.copies()}, lost {len(lost)}")  # fmt: skip
    assert not lost
    assert watch.differing_copies() == []
    device.close()
    watch.stop()
    assert time.time()  # the numbers above are the report


RETAINED_ATTEMPTS = 3


def retained_after_restart(site: ClusterSite, topic: str, node: int) -> tuple[TestClient, Any]:
    """A new subscriber's retained message on `topic` right after the whole cluster restarted.

    Once in CI, under heavy disk load from other work, a subscription made as soon as every node's
    /healthz said current got no retained message in 60 s (not reproduced under CPU load alone;
    probably NATS serving the subscription before it had read the account's retained messages back
    from JetStream). Every new subscription is sent the retained messages (MQTT-3.3.1-6), so this
    tries up to RETAINED_ATTEMPTS fresh subscribers: a message that was lost fails every one."""
    for attempt in range(1, RETAINED_ATTEMPTS + 1):
        observer = site.client("dash-1", node=node)
        assert observer.subscribe(topic, 1) == 1
        try:
            [message] = observer.expect(1, TIMEOUT / RETAINED_ATTEMPTS)
            return observer, message
        except AssertionError:
            if attempt == RETAINED_ATTEMPTS:
                raise
            observer.close()
    raise AssertionError("unreachable")


def test_tasks_queued_for_an_offline_agent_survive_a_whole_cluster_restart(cluster_site: ClusterSite) -> None:
    """The agent's persistent session and the QoS 1 tasks queued for it while it is away live in
    JetStream, replicated on the three nodes' disks: every node stopped and started, they are all
    still delivered (the agent comes back on another node than it left), and so is its retained
    presence."""
    site, cluster = cluster_site, cluster_site.cluster
    with site.agent(first=1):
        pass  # a clean stop: its session (subscriptions included) stays, its presence is offline
    device = site.client("sensor-1", node=2)
    sent = set()
    for n in range(20):
        topic, payload, task = site.task(
            "sensor-1", "stats", {"signal": [float(n)]}, task_id=f"queued-{n:02d}"
        )
        device.publish(topic, payload)  # waits for the PUBACK
        sent.add(task.id)
    device.close()

    cluster.stop_all()
    cluster.start_all()

    observer, presence = retained_after_restart(site, TOPICS.presence("node-1"), node=3)
    assert presence.retain and site.open(presence.topic, bytes(presence.payload)).state == "offline"
    assert observer.subscribe("edge/results/node-1/#", 1) == 1  # SUBACK: before any result exists
    with site.agent(first=3) as agent:
        assert agent.link.endpoint == cluster.node(3).endpoint
        completed: set[str] = set()
        while completed != sent:
            message = observer.expect(1, 2 * TIMEOUT)[0]
            if "/results/" in message.topic:
                result = site.open(message.topic, bytes(message.payload))
                assert result.status == "completed", result
                completed.add(result.id)
