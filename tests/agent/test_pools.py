"""Pools deliver at least once (PROTOCOL 1): a pool task that reaches two members runs on each.

A publisher's QoS 1 retransmission after a reconnect may reach a different member of the pool than
the first copy did, and two agents do not share a replay cache. Here the second copy is sent after
the member that ran the first left the pool (`sys.drain`), so the broker must hand it to the other.
"""

from __future__ import annotations

import time

from agent.protocol import Result, make_control
from tests.agent.conftest import TIMEOUT, TOPICS, Site
from tests.support.mqtt import TestClient

GOOD = {"signal": [1.0, 2.0, 3.0]}


def _next_result(site: Site, watcher: TestClient) -> tuple[str, Result]:
    """The next result on `watcher`, with the topic it came on."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        message = watcher.expect(1, max(0.1, deadline - time.monotonic()))[0]
        if "/results/" in message.topic:
            return message.topic, site.open(message)


def test_a_pool_task_delivered_to_two_members_runs_on_each_and_each_result_names_its_node(
    any_site: Site,
) -> None:
    site = any_site
    watcher = site.watch(TOPICS.prefix + "/results/#")
    device, operator = site.client("sensor-1"), site.client("op-1")
    topic, payload, _ = site.task("sensor-1", "stats", GOOD, target="pool:cams", task_id="twice")
    assert topic == TOPICS.tasks_pool("cams")
    with site.agent("node-1"), site.agent("node-2"):
        device.publish(topic, payload)
        first_topic, first = _next_result(site, watcher)
        assert (first.id, first.status) == ("twice", "completed")
        # the member that ran it leaves the pool: its UNSUBSCRIBE goes out before the answer
        drain_topic, drain, _ = make_control(
            site.signer("op-1"), first.node, "sys.drain", {}, task_id="leave"
        )
        operator.publish(drain_topic, drain)
        _, answer = _next_result(site, watcher)
        assert (answer.id, answer.node, answer.status) == ("leave", first.node, "completed")
        device.publish(topic, payload)  # the same signed bytes, as a retransmission may bring them
        second_topic, second = _next_result(site, watcher)
    assert (second.id, second.status) == ("twice", "completed")
    assert {first.node, second.node} == {"node-1", "node-2"}
    for result_topic, result in ((first_topic, first), (second_topic, second)):
        assert result_topic == TOPICS.results(result.node, "twice")  # each from its own node
    assert second.result == first.result
