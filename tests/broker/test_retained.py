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
