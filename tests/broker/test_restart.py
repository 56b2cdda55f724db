"""Broker restart: persistent sessions, their queues and retained messages survive it.

Run against both brokers (Mosquitto with `persistence true`). The embedded broker is also
killed with SIGKILL as a separate process, which only its journal (fsync before PUBACK) survives.
"""

from __future__ import annotations

import signal

from tests.broker.conftest import USERS, BrokerProcess, ClientFactory, deliver_unacknowledged
from tests.support.brokers import RunningBroker
from tests.support.mqtt import TestClient


def test_sessions_queues_and_retained_messages_survive_a_restart(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    sub = client("restart-sub", clean=False)
    assert sub.subscribe_many([("test/rs/#", 1), ("test/rs2/#", 2)]) == [1, 2]
    sub.disconnect()
    pub = client("restart-pub")
    for i in range(50):
        pub.publish(f"test/rs/{i}", b"%d" % i, qos=1)
    pub.publish("test/rs2/two", b"qos2", qos=2)
    pub.publish("test/retained", b"kept", qos=1, retain=True)
    pub.disconnect()

    mqtt_broker.restart()

    back = client("restart-sub", clean=False, connect=False)
    assert back.connect() is True  # the session is there
    got = back.expect(51)
    assert [m.payload for m in got[:50]] == [b"%d" % i for i in range(50)]  # every one, in order
    assert (got[50].topic, got[50].qos) == ("test/rs2/two", 2)
    pub = client("restart-pub")
    pub.publish("test/rs/after", b"new", qos=1)  # the subscriptions are there too
    assert back.expect(1)[0].topic == "test/rs/after"
    fresh = client("fresh")
    fresh.subscribe("test/retained", 1)
    [retained] = fresh.expect(1)
    assert (retained.payload, retained.retain) == (b"kept", True)
    if mqtt_broker.embedded is not None:  # the bounds count what came back from the store
        stats = mqtt_broker.embedded.stats()
        assert (stats["retained_bytes"], stats["queued_bytes"]) == (len("test/retained") + 4, 0)


def test_a_message_in_flight_at_restart_is_delivered_after_it(
    mqtt_broker: RunningBroker, client: ClientFactory
) -> None:
    sub = deliver_unacknowledged(client, "inflight-sub", "test/if", b"unacked")
    sub.close()
    mqtt_broker.restart()
    again = client("inflight-sub", clean=False)
    assert again.expect(1)[0].payload == b"unacked"


def test_acknowledged_messages_survive_sigkill(broker_process: BrokerProcess) -> None:
    port = broker_process.port
    proc = broker_process.spawn()
    try:
        sub = TestClient(port, "kill-sub", clean=False, username="alice", password=USERS["alice"])
        sub.connect()
        sub.subscribe("test/k/#", 1)
        sub.disconnect()
        pub = TestClient(port, "kill-pub", username="bob", password=USERS["bob"])
        pub.connect()
        for i in range(200):
            pub.publish(f"test/k/{i}", b"%d" % i, qos=1)  # returns once PUBACK arrived
        pub.publish("test/k-retained", b"r", qos=0, retain=True)
        pub.publish("test/sync", b"", qos=1)  # the retained QoS 0 publish is journaled before this PUBACK
        pub.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    proc = broker_process.spawn()
    try:
        back = TestClient(port, "kill-sub", clean=False, username="alice", password=USERS["alice"])
        assert back.connect() is True
        assert [m.payload for m in back.expect(200)] == [b"%d" % i for i in range(200)]
        back.subscribe("test/k-retained", 1)
        assert back.expect(1)[0].payload == b"r"
        back.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # a clean stop on SIGTERM
