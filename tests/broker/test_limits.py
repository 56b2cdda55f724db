"""The embedded broker's bounds: offline queue (messages and bytes), in-flight window, packet
size, session ownership; each bound hit is counted in `stats()` and logged (broker/limits.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from tests.broker.conftest import USERS, ClientFactory
from tests.support.brokers import RunningBroker, broker_under_test, embedded
from tests.support.mqtt import ConnectRefused, RawClient, TestClient

LIMITS = {
    "limits.max_queued_messages": 5,
    "limits.max_inflight_messages": 2,
    "limits.max_packet_size": 4096,
    "limits.max_queued_bytes": 4096,
}


@pytest.fixture
def embedded_settings() -> dict[str, Any]:
    return LIMITS


@pytest.fixture
def client(embedded_client: ClientFactory) -> ClientFactory:
    return embedded_client


def _offline_subscriber(client: ClientFactory, client_id: str, topic_filter: str) -> None:
    """A persistent session subscribed to `topic_filter` (QoS 1) whose client went away."""
    sub = client(client_id, clean=False)
    sub.subscribe(topic_filter, 1)
    sub.disconnect()


def test_a_full_offline_queue_drops_counts_and_logs(
    embedded_broker: RunningBroker, client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    _offline_subscriber(client, "bounded", "test/b/#")
    pub = client("pub")
    with caplog.at_level(logging.WARNING, logger="broker.limits"):
        for i in range(8):
            pub.publish(f"test/b/{i}", b"%d" % i, qos=1)
    assert embedded_broker.embedded is not None
    assert embedded_broker.embedded.stats()["dropped"] == 3
    assert "queue of client bounded is full (limits.max_queued_messages = 5)" in caplog.text
    back = client("bounded", clean=False)
    assert [m.topic for m in back.expect(5)] == [f"test/b/{i}" for i in range(5)]  # the oldest are kept
    pub.publish("test/b/end", b"", qos=1)
    assert [m.topic for m in back.expect_until("test/b/end")] == ["test/b/end"]


def test_a_queue_is_bounded_by_its_bytes_too(
    embedded_broker: RunningBroker, client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """limits.max_queued_bytes = 4096: two messages of 1,508 bytes (topic and payload) fit, a
    third does not; 10,000 messages of 1 MiB used to be kept for one offline client."""
    _offline_subscriber(client, "heavy", "test/q/#")
    pub = client("pub")
    with caplog.at_level(logging.WARNING, logger="broker.limits"):
        for i in range(3):
            pub.publish(f"test/q/{i}", b"x" * 1500, qos=1)
    assert embedded_broker.embedded is not None
    stats = embedded_broker.embedded.stats()
    assert (stats["dropped"], stats["dropped_by_bytes"], stats["queued_bytes"]) == (1, 1, 2 * 1508)
    assert "queue of client heavy is full (limits.max_queued_bytes = 4096)" in caplog.text
    embedded_broker.restart()  # the journaled queue comes back with its bytes counted
    assert embedded_broker.embedded.stats()["queued_bytes"] == 2 * 1508
    pub = client("pub-again")
    back = client("heavy", clean=False)
    assert [m.topic for m in back.expect(2)] == ["test/q/0", "test/q/1"]
    pub.publish("test/q/end", b"", qos=1)  # the queue drained: room again
    assert [m.topic for m in back.expect_until("test/q/end")] == ["test/q/end"]
    assert embedded_broker.embedded.stats()["queued_bytes"] == 0


def test_in_flight_window_holds_the_rest_until_acknowledged(client: ClientFactory) -> None:
    sub = client("window", manual_ack=True)
    sub.subscribe("test/w", 1)
    pub = client("pub")
    for i in range(4):
        pub.publish("test/w", b"%d" % i, qos=1)
    first = sub.expect(2)
    assert sub.messages.empty(), "a third message arrived with two unacknowledged"
    sub.ack(first[0])
    assert sub.expect(1)[0].payload == b"2"
    sub.ack(first[1])
    assert sub.expect(1)[0].payload == b"3"


def test_an_oversized_packet_closes_only_that_connection(
    embedded_broker: RunningBroker, client: ClientFactory
) -> None:
    watcher = client("watcher")
    watcher.subscribe("test/#", 1)
    big = RawClient(embedded_broker.port)
    try:
        assert big.connect("big", username="bob", password=USERS["bob"])[1] == 0
        big.publish("test/big", b"x" * 10_000, qos=0)
        assert big.closed_by_broker()
    finally:
        big.close()
    client("pub").publish("test/after", b"fine", qos=1)
    assert [m.topic for m in watcher.expect_until("test/after")] == ["test/after"]


def test_a_persistent_session_belongs_to_its_identity(client: ClientFactory) -> None:
    client("alice-device", clean=False).disconnect()
    with pytest.raises(ConnectRefused):
        client("alice-device", user="bob", clean=True)  # may neither take it over nor wipe it
    assert client("alice-device", clean=False, connect=False).connect() is True


def test_a_client_id_that_names_another_identity_is_refused(embedded_broker: RunningBroker) -> None:
    """FIX-CLIENT-ID: alice may not take bob's name as her client id, not even before bob ever
    connected (a persistent session under it would lock bob out for ever)."""
    squatter = RawClient(embedded_broker.port)
    try:
        _, code = squatter.connect("bob", username="alice", password=USERS["alice"], clean=False)
        assert code == 2  # identifier rejected
    finally:
        squatter.close()
    owner = TestClient(embedded_broker.port, "bob", username="bob", password=USERS["bob"], clean=False)
    try:
        assert owner.connect() is False  # bob's own, new session
    finally:
        owner.close()


def test_a_will_outside_the_publish_acl_is_refused_at_connect(embedded_broker: RunningBroker) -> None:
    will = RawClient(embedded_broker.port)
    try:
        _, code = will.connect(
            "will-out", username="alice", password=USERS["alice"], will=("secret/w", b"x", 1, False)
        )
        assert code == 5
    finally:
        will.close()


def test_sys_topics_belong_to_the_broker_and_sessions_expire() -> None:
    settings = {"listeners.tcp.port": 0, "auth.allow_anonymous": True, "limits.session_expiry_s": 1}
    with embedded(settings) as thread:
        sub = TestClient(thread.port, "dollar")
        sub.connect()
        assert sub.subscribe_many([("$SYS/#", 1), ("$app/#", 1)]) == [1, 1]
        pub = TestClient(thread.port, "writer")
        pub.connect()
        pub.publish("$SYS/broker/uptime", b"forged", qos=1)  # dropped: $SYS is the broker's
        pub.publish("$app/x", b"fine", qos=1)
        assert [m.topic for m in sub.expect_until("$app/x")] == ["$app/x"]
        sub.disconnect()
        pub.disconnect()

        expiring = TestClient(thread.port, "expiring", clean=False)
        expiring.connect()
        expiring.disconnect()
        deadline = time.monotonic() + 20
        while (
            thread.stats()["sessions"] and time.monotonic() < deadline
        ):  # the expiry monitor ticks each second
            time.sleep(0.1)
        again = TestClient(thread.port, "expiring", clean=False)
        assert again.connect() is False  # limits.session_expiry_s = 1: the session is gone
        again.disconnect()


def test_sessions_expire_by_role_agents_keep_theirs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A device's disconnected persistent session expires after limits.session_expiry_s; an
    agent's (acl.toml role = "agent") is kept (limits.agent_session_expiry_s, 0: never)."""
    users = {"agent-a": "pw-a", "dev-d": "pw-d"}
    own = ["t/#"]
    acl = {
        "users": {
            "agent-a": {"role": "agent", "publish": own, "subscribe": own},
            "dev-d": {"role": "device", "publish": own, "subscribe": own},
        }
    }
    settings = {"limits.session_expiry_s": 1}
    with (
        broker_under_test("embedded", tmp_path, users, acl, settings=settings) as running,
        caplog.at_level(logging.INFO, logger="broker.limits"),
    ):
        assert running.embedded is not None
        for user, password in users.items():
            session = TestClient(running.port, f"{user}-s", username=user, password=password, clean=False)
            session.connect()
            session.subscribe("t/x", 1)
            session.disconnect()
        deadline = time.monotonic() + 15  # the monitor looks each second
        while running.embedded.stats()["sessions_expired"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # another look or two: the agent's session must still be there
        assert running.embedded.stats()["sessions_expired"] == 1
        present = {}
        for user, password in users.items():
            back = TestClient(running.port, f"{user}-s", username=user, password=password, clean=False)
            present[user] = back.connect()
            back.close()
    assert present == {"agent-a": True, "dev-d": False}
    assert "session of dev-d-s (dev-d) expired: disconnected for" in caplog.text
    assert "(limits.session_expiry_s = 1)" in caplog.text


def test_connections_past_the_broker_wide_limit_are_closed_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """limits.max_connections = 2 over every listener: a third connection is closed before its
    CONNECT is read, counted and logged; once one closes there is room again."""
    settings = {
        "listeners.tcp.port": 0,
        "listeners.ws.enabled": True,
        "listeners.ws.port": 0,
        "auth.allow_anonymous": True,
        "limits.max_connections": 2,
    }
    with embedded(settings) as thread, caplog.at_level(logging.WARNING, logger="broker.limits"):
        first = TestClient(thread.port, "first")
        second = TestClient(thread.ws_port, "second", transport="websockets")
        first.connect()
        second.connect()
        third = RawClient(thread.port)
        try:
            assert third.closed_by_broker(), "a third connection was kept open"
        finally:
            third.close()
        assert thread.stats()["refused_connections"] == 1
        assert "limits.max_connections = 2 connections are open" in caplog.text
        second.disconnect()
        deadline = time.monotonic() + 15
        while thread.stats()["connected"] > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        again = TestClient(thread.port, "again")
        again.connect()
        again.close()
        first.close()


def test_nothing_is_left_behind_by_clients_that_come_and_go(embedded_broker: RunningBroker) -> None:
    for i in range(50):
        quick = TestClient(embedded_broker.port, f"passing-{i}", username="bob", password=USERS["bob"])
        quick.connect()
        quick.subscribe("test/x", 1)
        quick.disconnect()
    assert embedded_broker.embedded is not None

    async def leftovers() -> dict[str, int]:
        broker = embedded_broker.embedded.embedded.broker  # type: ignore[union-attr]
        router = broker.router
        return {
            "sessions": len(broker.sessions),
            "connections": len(broker._connections),
            "writers": len(broker._writers),
            "outboxes": len(router.outboxes),
            "subscriptions": len(router.index),
        }

    empty = dict.fromkeys(("sessions", "connections", "writers", "outboxes", "subscriptions"), 0)
    deadline = time.monotonic() + 15  # the last DISCONNECT may still be in flight
    while embedded_broker.embedded.call(leftovers) != empty and time.monotonic() < deadline:
        time.sleep(0.05)
    assert embedded_broker.embedded.call(leftovers) == empty
