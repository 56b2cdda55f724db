"""Retained messages on the embedded broker: never on tasks or control topics (PROTOCOL 1).

A retained task would reach every agent that subscribes later, and again after each of its
restarts; the embedded broker refuses such a publish (acknowledged, dropped, counted in
`refused_publish`, logged), and a Will that would be one at CONNECT. What Mosquitto does
instead is in test_fleet.py and tests/agent/test_retained_tasks.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from broker import ConfigError, settings_from
from broker.embedded import BrokerThread
from tests.support.brokers import embedded
from tests.support.mqtt import RawClient, TestClient

NEVER_RETAINED = ["edge/tasks/node-1", "edge/tasks/all", "edge/tasks/pool/cams", "edge/control/node-1"]


@pytest.fixture
def settings() -> dict[str, Any]:
    return {"listeners.tcp.port": 0, "auth.allow_anonymous": True}


@pytest.fixture
def broker(settings: dict[str, Any]) -> Iterator[BrokerThread]:
    with embedded(settings) as thread:
        yield thread


def _client(broker: BrokerThread, client_id: str) -> TestClient:
    client = TestClient(broker.port, client_id)
    client.connect()
    return client


def test_a_retained_publish_on_a_tasks_or_control_topic_is_refused(
    broker: BrokerThread, caplog: pytest.LogCaptureFixture
) -> None:
    live = _client(broker, "live")
    assert live.subscribe("edge/#", 1) == 1
    publisher = _client(broker, "device")
    with caplog.at_level(logging.INFO, logger="broker.core"):
        for topic in NEVER_RETAINED:
            publisher.publish(topic, b"retained task", qos=1, retain=True)  # acknowledged all the same
    publisher.publish("edge/tasks/node-1", b"live task", qos=1)  # not retained: routed
    publisher.publish("edge/presence/node-1", b"online", qos=1, retain=True)  # presence stays retained
    assert [(m.topic, m.payload) for m in live.expect_until("edge/presence/node-1")] == [
        ("edge/tasks/node-1", b"live task"),
        ("edge/presence/node-1", b"online"),
    ]
    later = _client(broker, "later")
    assert later.subscribe("edge/#", 1) == 1
    [retained] = later.expect(1)
    assert (retained.topic, retained.retain) == ("edge/presence/node-1", True)
    later.sync()
    assert later.messages.empty(), "a retained task was kept"
    stats = broker.stats()
    assert (stats["retained"], stats["refused_publish"]) == (1, len(NEVER_RETAINED))
    assert (
        "dropped a retained publish of device (None) to edge/control/node-1: a tasks or control topic is"
        " never retained" in caplog.text
    )


@pytest.mark.parametrize(
    "settings", [{"listeners.tcp.port": 0, "auth.allow_anonymous": True, "protocol.prefix": "acme/site-3"}]
)
def test_the_fleet_prefix_says_which_topics_are_never_retained(broker: BrokerThread) -> None:
    publisher = _client(broker, "device")
    publisher.publish("acme/site-3/tasks/node-1", b"refused", qos=1, retain=True)
    publisher.publish("edge/tasks/node-1", b"another prefix: kept", qos=1, retain=True)
    later = _client(broker, "later")
    later.subscribe_many([("acme/#", 1), ("edge/#", 1)])
    assert [m.topic for m in later.expect(1)] == ["edge/tasks/node-1"]
    later.sync()
    assert later.messages.empty()
    assert broker.stats()["refused_publish"] == 1


def test_a_retained_will_on_a_tasks_topic_is_refused_at_connect(broker: BrokerThread) -> None:
    raw = RawClient(broker.port)
    try:
        assert raw.connect("will", will=("edge/tasks/node-1", b"task", 1, True))[1] == 5
    finally:
        raw.close()
    ok = RawClient(broker.port)
    try:
        assert ok.connect("will-ok", will=("edge/tasks/node-1", b"task", 1, False))[1] == 0
    finally:
        ok.close()


def test_the_prefix_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"protocol\.prefix"):
        settings_from({"auth.allow_anonymous": True, "protocol.prefix": "edge/#"})
    assert settings_from({"auth.allow_anonymous": True, "protocol.prefix": ""}).protocol.prefix == ""


BOUNDED = {
    "listeners.tcp.port": 0,
    "auth.allow_anonymous": True,
    "limits.max_packet_size": 4096,
    "limits.max_retained_messages": 3,
    "limits.max_retained_bytes": 4096,
}


def _retained(broker: BrokerThread, topic_filter: str) -> dict[str, bytes]:
    """What a new subscriber to `topic_filter` gets as retained messages."""
    later = _client(broker, "retained-reader")
    later.subscribe(topic_filter, 1)
    later.sync()
    got = {}
    while not later.messages.empty():
        message = later.messages.get_nowait()
        got[message.topic] = message.payload
    later.close()
    return got


@pytest.mark.parametrize("settings", [BOUNDED])
def test_retained_messages_are_bounded_in_number(
    broker: BrokerThread, caplog: pytest.LogCaptureFixture
) -> None:
    live = _client(broker, "live")
    live.subscribe("r/#", 1)
    publisher = _client(broker, "publisher")
    with caplog.at_level(logging.WARNING, logger="broker.limits"):
        for i in range(4):
            publisher.publish(f"r/{i}", b"v%d" % i, qos=1, retain=True)
    assert [m.topic for m in live.expect(4)] == ["r/0", "r/1", "r/2", "r/3"]  # delivered all the same
    assert _retained(broker, "r/#") == {"r/0": b"v0", "r/1": b"v1", "r/2": b"v2"}
    stats = broker.stats()
    assert (stats["retained"], stats["refused_retained"]) == (3, 1)
    assert "retained message on r/3 not kept (limits.max_retained_messages = 3, 3 kept)" in caplog.text
    publisher.publish("r/0", b"new", qos=1, retain=True)  # a replacement keeps the count
    publisher.publish("r/1", b"", qos=1, retain=True)  # a clearing makes room
    publisher.publish("r/3", b"v3", qos=1, retain=True)
    assert _retained(broker, "r/#") == {"r/0": b"new", "r/2": b"v2", "r/3": b"v3"}


@pytest.mark.parametrize("settings", [BOUNDED])
def test_retained_messages_are_bounded_in_bytes(broker: BrokerThread) -> None:
    publisher = _client(broker, "publisher")
    publisher.publish("r/a", b"a" * 2000, qos=1, retain=True)  # 2,003 bytes with the topic
    publisher.publish("r/b", b"b" * 2000, qos=1, retain=True)  # 4,006
    publisher.publish("r/c", b"c" * 100, qos=1, retain=True)  # would be 4,109 > 4,096: not kept
    assert _retained(broker, "r/#") == {"r/a": b"a" * 2000, "r/b": b"b" * 2000}
    assert (broker.stats()["retained_bytes"], broker.stats()["refused_retained"]) == (4006, 1)
    publisher.publish("r/b", b"B" * 2100, qos=1, retain=True)  # a replacement that does not fit:
    assert _retained(broker, "r/#") == {"r/a": b"a" * 2000}  # no stale r/b either
    assert broker.stats()["retained_bytes"] == 2003
