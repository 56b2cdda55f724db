"""The whole PROTOCOL path through a 3-node NATS cluster: the agent on node 1, devices and an
operator on node 2, a dashboard on node 3; every message crosses the cluster's routes and
JetStream (QoS 1 to the agent's persistent session, retained presence, the Last Will)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.protocol import Presence, RejectReport, Result, make_control
from native.agreement import result_mismatch
from tests.agent.test_kernels_e2e import CASES, _expected
from tests.cluster.conftest import TIMEOUT, TOPICS, ClusterSite
from tests.support.mqtt import TestClient

pytestmark = pytest.mark.nats


def _collect(watcher: TestClient, site: ClusterSite, wanted: set[str]) -> dict[str, Any]:
    """Messages by topic (verified, decoded) until every topic of `wanted` arrived."""
    got: dict[str, Any] = {}
    while not wanted <= set(got):
        message = watcher.expect(1, TIMEOUT)[0]
        got[message.topic] = site.open(message.topic, bytes(message.payload))
    return got


def test_every_kernel_refusals_control_and_presence_across_three_nodes(cluster_site: ClusterSite) -> None:
    site = cluster_site
    dashboard = site.client("dash-1", node=3)
    for topic_filter in ("edge/results/node-1/#", TOPICS.rejects("node-1"), TOPICS.presence("node-1")):
        assert dashboard.subscribe(topic_filter, 1) == 1
    device, mcu, operator = (site.client(name, node=2) for name in ("sensor-1", "mcu-1", "op-1"))
    with site.agent(first=1) as agent:
        assert agent.link.endpoint == site.cluster.node(1).endpoint
        birth = _collect(dashboard, site, {TOPICS.presence("node-1")})[TOPICS.presence("node-1")]
        assert isinstance(birth, Presence) and birth.state == "online"

        kernels = {}
        for n, (kernel, params) in enumerate(CASES.items()):
            issuer, client = ("mcu-1", mcu) if n % 2 else ("sensor-1", device)  # HMAC and Ed25519
            topic, payload, task = site.task(issuer, kernel, params)
            client.publish(topic, payload)
            kernels[task.id] = kernel
        topic, payload, stranger = site.task("sensor-1", "stats", {"signal": [1.0]}, target="node-2")
        device.publish(TOPICS.tasks("node-1"), payload)  # signed for node-2: target_mismatch
        _, payload, unknown = site.task("sensor-1", "no_such_kernel", {})
        device.publish(TOPICS.tasks("node-1"), payload)
        _, payload, expired = site.task("sensor-1", "stats", {"signal": [1.0]}, ttl_s=1, now=1.0)
        device.publish(TOPICS.tasks("node-1"), payload)
        _, good, _ = site.task("sensor-1", "stats", {"signal": [1.0]})
        forged = bytearray(good)
        forged[-5] ^= 0x01  # inside the signature
        device.publish(TOPICS.tasks("node-1"), bytes(forged))
        first = next(iter(kernels))
        topic, payload, status = make_control(site.signer("op-1"), "node-1", "sys.status", {"task": first})
        operator.publish(topic, payload)

        ids = [*kernels, stranger.id, unknown.id, expired.id, status.id]
        wanted = {TOPICS.results("node-1", i) for i in ids} | {TOPICS.rejects("node-1")}
        got = _collect(dashboard, site, wanted)
        assert agent.run_until_idle()

        for task_id, kernel in kernels.items():
            result: Result = got[TOPICS.results("node-1", task_id)]
            assert (result.status, result.kernel, result.node) == ("completed", kernel, "node-1"), (
                result.error
            )
            assert result_mismatch(kernel, result.result, _expected(kernel, CASES[kernel])) is None
        codes = {
            i: got[TOPICS.results("node-1", i)].error["code"] for i in (stranger.id, unknown.id, expired.id)
        }
        assert codes == {stranger.id: "target_mismatch", unknown.id: "unknown_kernel", expired.id: "expired"}
        report = got[TOPICS.rejects("node-1")]
        assert isinstance(report, RejectReport) and report.code == "bad_signature"
        record = got[TOPICS.results("node-1", status.id)]
        assert record.status == "completed" and record.result["status"] == "completed", record

        session = birth.session
        agent.link.drop()  # no DISCONNECT: node 1 publishes the Last Will, node 3 delivers it
        death = _collect(dashboard, site, {TOPICS.presence("node-1")})[TOPICS.presence("node-1")]
        assert (death.state, death.session) == ("offline", session)
        rebirth = _collect(dashboard, site, {TOPICS.presence("node-1")})[TOPICS.presence("node-1")]
        assert (rebirth.state, rebirth.session) == ("online", session + 1)
