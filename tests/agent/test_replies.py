"""Device replies (PROTOCOL 1 and 4): a task that asks `reply: true` is answered on
`{p}/replies/{kid}/{id}` too, with the bytes of its result, and only its issuer may read it.

On both brokers, with the files `edge-provision bundle` writes for a device: its ACL (it reads its
own replies and nothing else) and its trust store (the keys of the agents it may task).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from agent.protocol import (
    ProtocolError,
    Result,
    TrustStore,
    make_control,
    open_agent_message,
    open_envelope,
    seal,
)
from tests.agent.conftest import TIMEOUT, TOPICS, Site
from tests.support.fleet import edge_provision
from tests.support.mqtt import TestClient

SUBACK_REFUSED = 0x80


def device_trust(site: Site, name: str) -> TrustStore:
    """The trust store in `name`'s own bundle (what firmware verifies its replies with)."""
    out = site.tmp / f"bundle-{name}"
    if not out.exists():
        edge_provision("--fleet", site.fleet.root, "bundle", name, "--out", out)
    return TrustStore.load(out / "trust.toml")


def replies_of(site: Site, name: str) -> TestClient:
    client = site.client(name)
    assert client.subscribe(f"{TOPICS.prefix}/replies/{name}/#", 1) == 1
    return client


def open_reply(message: object, trust: TrustStore) -> Result:
    got = open_agent_message(message.payload, message.topic, trust)  # type: ignore[attr-defined]
    assert isinstance(got, Result)
    return got


@pytest.mark.parametrize("device", ["sensor-1", "mcu-1"])
def test_a_device_reads_its_reply_and_verifies_it_with_its_own_bundle(any_site: Site, device: str) -> None:
    """Ed25519 and HMAC devices alike: the reply verifies with the device's trust store, carries
    the result the dashboards see, byte for byte, and the numbers numpy computes."""
    site = any_site
    watcher = site.watch(f"{TOPICS.prefix}/results/node-1/#")
    inbox = replies_of(site, device)
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    b = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    with site.agent():
        task = site.submit(
            inbox, device, "matrix_multiply", {"matrix_a": a.tolist(), "matrix_b": b}, reply=True
        )
        [reply] = inbox.expect(1)
        [result] = watcher.expect(1)
    assert reply.topic == f"{TOPICS.prefix}/replies/{device}/{task.id}"
    assert bytes(reply.payload) == bytes(result.payload)
    answer = open_reply(reply, device_trust(site, device))
    assert (answer.id, answer.node, answer.status) == (task.id, "node-1", "completed")
    np.testing.assert_allclose(answer.result, a @ b, rtol=1e-12)


def test_without_reply_nothing_is_published_on_the_replies_topic(any_site: Site) -> None:
    site = any_site
    watcher = site.watch(f"{TOPICS.prefix}/results/node-1/#")
    inbox = replies_of(site, "sensor-1")
    with site.agent():
        site.submit(inbox, "sensor-1", "stats", {"signal": [1.0, 2.0]})
        asked = site.submit(inbox, "sensor-1", "stats", {"signal": [3.0, 5.0]}, reply=True)
        results = site.results(watcher, 2)
        [reply] = inbox.expect(1)  # the broker keeps one subscriber's order: the first result came first
    assert {r.id for r in results} >= {asked.id}
    assert reply.topic.endswith("/" + asked.id)
    assert inbox.messages.empty()


def test_a_rejected_task_that_asked_for_a_reply_is_answered_there(any_site: Site) -> None:
    site = any_site
    inbox = replies_of(site, "sensor-1")
    with site.agent():
        task = site.submit(inbox, "sensor-1", "stats", {"signal": "not numbers"}, reply=True)
        [reply] = inbox.expect(1)
    answer = open_reply(reply, device_trust(site, "sensor-1"))
    assert (answer.id, answer.status) == (task.id, "rejected")
    assert answer.error is not None and answer.error["code"] == "invalid_params"


def test_a_control_command_with_reply_is_answered_on_the_operators_replies(any_site: Site) -> None:
    site = any_site
    inbox = replies_of(site, "op-1")
    with site.agent():
        topic, payload, command = make_control(site.signer("op-1"), "node-1", "sys.list", {}, reply=True)
        inbox.publish(topic, payload)
        [reply] = inbox.expect(1)
    assert reply.topic == f"{TOPICS.prefix}/replies/op-1/{command.id}"
    answer = open_reply(reply, site.trust())
    assert (answer.kernel, answer.status) == ("sys.list", "completed")


def test_a_device_cannot_read_another_devices_replies_or_the_results(any_site: Site) -> None:
    site = any_site
    thief = site.client("sensor-2")
    assert thief.subscribe(f"{TOPICS.prefix}/replies/sensor-1/#", 1) == SUBACK_REFUSED
    assert thief.subscribe(f"{TOPICS.prefix}/replies/+/#", 1) == SUBACK_REFUSED
    assert thief.subscribe(f"{TOPICS.prefix}/results/#", 1) == SUBACK_REFUSED
    assert thief.subscribe(f"{TOPICS.prefix}/replies/sensor-2/#", 1) == 1
    inbox = replies_of(site, "sensor-1")
    with site.agent():
        site.submit(inbox, "sensor-1", "stats", {"signal": [1.0]}, reply=True)
        inbox.expect(1)
        thief.sync()
    assert thief.messages.empty(), "sensor-2 received sensor-1's reply"


def test_a_reply_signed_by_another_agent_or_not_by_an_agent_is_refused(any_site: Site) -> None:
    """What the device's verification rests on: its trust store holds the keys of the agents it
    may task (sensor-2 targets node-2 only), and a reply must be signed by the node it names."""
    site = any_site
    inbox = replies_of(site, "sensor-1")
    with site.agent():
        site.submit(inbox, "sensor-1", "stats", {"signal": [1.0]}, reply=True)
        [reply] = inbox.expect(1)
    with pytest.raises(ProtocolError) as refused:
        open_reply(reply, device_trust(site, "sensor-2"))  # node-1's key is not in sensor-2's bundle
    assert refused.value.code == "unknown_key"
    forged = _Message(reply.topic, seal(open_envelope(bytes(reply.payload)).body, site.signer("sensor-1")))
    with pytest.raises(ProtocolError) as unknown:
        open_reply(forged, site.trust())  # a dashboard's store: agents' keys only
    assert unknown.value.code == "unknown_key"
    with pytest.raises(ProtocolError) as wrong:
        open_reply(forged, TrustStore.load(site.bundle("node-1").parent / "trust.toml"))  # knows sensor-1
    assert wrong.value.code == "wrong_role"


class _Message:
    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload = topic, payload


def test_replies_survive_a_broker_restart_like_results(any_site: Site) -> None:
    """Each copy is an outbox row of its own: the replies not acknowledged when the broker went
    away are sent again, none lost."""
    site = any_site
    inbox = site.client("sensor-1", client_id="inbox", clean=False)
    assert inbox.subscribe(f"{TOPICS.prefix}/replies/sensor-1/#", 1) == 1
    with site.agent(workers_count=2) as agent:
        ids = [
            site.submit(inbox, "sensor-1", "test.sleep", {"seconds": 0.4}, task_id=f"r{n}", reply=True).id
            for n in range(6)
        ]
        deadline = time.monotonic() + TIMEOUT
        while agent.lifecycle.totals["completed"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        site.broker.restart()
        while agent.lifecycle.totals["completed"] < 6 or not agent.link.connected:
            assert time.monotonic() < deadline + 60
            time.sleep(0.02)
        assert agent.outbox.wait_empty(TIMEOUT)
        got: set[str] = set()
        trust = device_trust(site, "sensor-1")
        end = time.monotonic() + 60
        while got != set(ids) and time.monotonic() < end:  # at least once: duplicates may come
            got |= {open_reply(m, trust).id for m in inbox.expect(1, max(0.1, end - time.monotonic()))}
    assert got == set(ids)


def test_a_device_bundle_holds_the_keys_of_the_agents_it_may_task(any_site: Site) -> None:
    site = any_site
    assert {k.kid for k in device_trust(site, "sensor-2").keys()} == {"node-2"}  # noqa: SIM118 (not a dict)
    assert {k.kid for k in device_trust(site, "sensor-1").keys()} == {"node-1", "node-2"}  # noqa: SIM118
    env = (site.tmp / "bundle-sensor-2" / "device.env").read_text()
    assert "EDGE_DEVICE_TARGET=node-2\n" in env
    keys = [line for line in env.splitlines() if line.startswith("EDGE_AGENT_KEY")]
    assert keys[0] == "EDGE_AGENT_KEYS=1" and keys[1].startswith('EDGE_AGENT_KEY_1="node-2 ed25519 ')
    assert len(keys) == 2
