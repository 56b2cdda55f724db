"""agent.pahofast: paho's decoding with shared tables gives what paho's own class gives.

Packets are built by paho's own encoder (`Properties.pack`), decoded by both classes, compared
property by property; then a real Mosquitto carries MQTT 5 properties to a client that uses the
installed class."""

from __future__ import annotations

import queue
import struct
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from agent.node.link import pahofast
from agent.node.link.pahofast import LazyMessageInfo, SharedTablesProperties
from tests.support.services import free_port, run_mosquitto

#: Every property a PUBLISH or a PUBACK may carry, with a value of its type.
PUBLISH_PROPS: dict[str, Any] = {
    "PayloadFormatIndicator": 1,
    "MessageExpiryInterval": 3600,
    "ContentType": "application/msgpack",
    "ResponseTopic": "edge/reply/1",
    "CorrelationData": b"\x00\x01corr",
    "TopicAlias": 7,
    "UserProperty": [("a", "1"), ("b", "2")],
}
PUBACK_PROPS: dict[str, Any] = {"ReasonString": "quota", "UserProperty": [("why", "test")]}


def _stock(packet_type: int, values: dict[str, Any]) -> Properties:
    props = Properties(packet_type)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        if isinstance(value, list):
            for item in value:
                setattr(props, name, item)
        else:
            setattr(props, name, value)
    return props


def _seen(props: Properties) -> dict[str, Any]:
    return {name: getattr(props, name) for name in pahofast._ATTRIBUTES if hasattr(props, name)}


def test_install_points_paho_at_the_subclass() -> None:
    assert pahofast.install()
    assert pahofast.install()  # idempotent
    assert _packet.Properties is SharedTablesProperties
    assert mqtt.Properties is SharedTablesProperties
    assert issubclass(SharedTablesProperties, Properties)


@pytest.mark.parametrize("count", [0, 1, 3, len(PUBLISH_PROPS)])
def test_publish_properties_decode_as_paho_does(count: int) -> None:
    values = dict(list(PUBLISH_PROPS.items())[:count])
    encoded = _stock(PacketTypes.PUBLISH, values).pack()  # type: ignore[no-untyped-call]
    stock, fast = Properties(PacketTypes.PUBLISH), SharedTablesProperties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    assert stock.unpack(encoded)[1] == fast.unpack(encoded)[1] == len(encoded)  # type: ignore[no-untyped-call]
    assert _seen(fast) == _seen(stock) == {k: v for k, v in values.items()}
    assert fast.json() == stock.json()  # type: ignore[no-untyped-call]
    assert str(fast) == str(stock)
    assert fast.isEmpty() == stock.isEmpty() == (count == 0)  # type: ignore[no-untyped-call]
    assert fast.pack() == encoded  # type: ignore[no-untyped-call]


def test_unpack_clears_what_an_earlier_unpack_set() -> None:
    fast = SharedTablesProperties(PacketTypes.PUBLISH)
    fast.unpack(_stock(PacketTypes.PUBLISH, PUBLISH_PROPS).pack())  # type: ignore[no-untyped-call]
    fast.unpack(_stock(PacketTypes.PUBLISH, {"ContentType": "x"}).pack())  # type: ignore[no-untyped-call]
    assert _seen(fast) == {"ContentType": "x"}


def test_tables_stay_shared_and_unchanged() -> None:
    before = {name: repr(value) for name, value in pahofast._SHARED.items()}
    one, two = SharedTablesProperties(PacketTypes.PUBLISH), SharedTablesProperties(PacketTypes.PUBACK)
    one.UserProperty = ("k", "v")
    two.ReasonString = "r"
    assert one.names is two.names and one.properties is two.properties
    assert {name: repr(value) for name, value in pahofast._SHARED.items()} == before
    assert not hasattr(two, "UserProperty") and not hasattr(one, "ReasonString")


def test_validation_errors_are_pahos() -> None:
    for cls in (Properties, SharedTablesProperties):
        props = cls(PacketTypes.PUBACK)
        with pytest.raises(MQTTException, match="does not apply to packet type"):
            props.ContentType = "text/plain"  # a PUBLISH property on a PUBACK
        with pytest.raises(MQTTException, match="must be one of"):
            props.NoSuchProperty = 1
        with pytest.raises(MQTTException, match="range 1-65535"):
            cls(PacketTypes.PUBLISH).TopicAlias = 0


def test_a_repeated_single_property_is_refused_by_both() -> None:
    once = _stock(PacketTypes.PUBLISH, {"ContentType": "a"}).pack()  # type: ignore[no-untyped-call]
    body = once[1:]  # the property without its length
    twice = bytes([len(body) * 2]) + body * 2
    for cls in (Properties, SharedTablesProperties):
        with pytest.raises(MQTTException, match="must not exist more than once"):
            cls(PacketTypes.PUBLISH).unpack(twice)


@pytest.mark.parametrize("values", [{}, PUBACK_PROPS], ids=["bare", "reason-and-user-property"])
def test_puback_decodes_as_paho_does(values: dict[str, Any]) -> None:
    pahofast.install()
    body = struct.pack("!HB", 42, 0x10) + _stock(PacketTypes.PUBACK, values).pack()  # type: ignore[no-untyped-call]
    decoded = _packet.decode_puback(0x40, body, MQTTProtocolVersion.MQTTv5)
    assert decoded.mid == 42
    assert isinstance(decoded.properties, SharedTablesProperties)
    assert _seen(decoded.properties) == values


def test_properties_through_mosquitto(tmp_path: Path) -> None:
    """A real broker's MQTT 5 PUBLISH with properties, decoded by a client using the installed class."""
    pahofast.install()
    port = free_port()
    conf = f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    received: queue.SimpleQueue[Any] = queue.SimpleQueue()
    acked: queue.SimpleQueue[int] = queue.SimpleQueue()
    with run_mosquitto(conf, tmp_path, [port]):
        clients = []
        for name in ("sub", "pub"):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
            client.connect("127.0.0.1", port)
            client.loop_start()
            clients.append(client)
        sub, pub = clients
        subscribed = queue.SimpleQueue[int]()
        sub.on_subscribe = lambda c, u, mid, codes, p: subscribed.put(mid)
        sub.on_message = lambda c, u, m: received.put(m)
        pub.on_publish = lambda c, u, mid, reason, p: acked.put(mid)
        sub.subscribe("t/#", qos=1)
        subscribed.get(timeout=10)
        sent = {k: v for k, v in PUBLISH_PROPS.items() if k != "TopicAlias"}  # aliases are per link
        info = pub.publish("t/1", b"payload", qos=1, properties=_stock(PacketTypes.PUBLISH, sent))
        message = received.get(timeout=10)
        assert acked.get(timeout=10) == info.mid
        assert isinstance(info, LazyMessageInfo) and isinstance(message.info, LazyMessageInfo)
        info.wait_for_publish(10)  # published before anyone asked: no condition was needed
        assert info.is_published()
        waited = pub.publish("t/2", b"waited for", qos=1)
        waited.wait_for_publish(10)  # asked before its PUBACK, most likely: made and notified
        assert waited.is_published() and received.get(timeout=10).payload == b"waited for"
        for client in clients:
            client.disconnect()
            client.loop_stop()
    assert message.payload == b"payload"
    assert isinstance(message.properties, SharedTablesProperties)
    assert _seen(message.properties) == sent
    assert pahofast._CONDITION_SLOT.__get__(message.info) is None  # a received message makes none


def test_install_points_paho_at_the_lazy_message_info() -> None:
    assert pahofast.install()
    assert mqtt.MQTTMessageInfo is LazyMessageInfo
    assert pahofast.install() and mqtt.MQTTMessageInfo is LazyMessageInfo  # idempotent
    info = mqtt.MQTTMessage(mid=7).info
    assert isinstance(info, LazyMessageInfo) and (info.mid, info.rc, tuple(info)) == (7, 0, (0, 7))
    assert not info.is_published()


def test_a_waiter_is_never_missed_whichever_comes_first() -> None:
    """Marking published and waiting race from two threads; a lost notification would leave the
    waiter (no timeout) blocked for ever."""
    for i in range(400):
        info = LazyMessageInfo(i)
        waiter = threading.Thread(target=info.wait_for_publish, daemon=True)
        marker = threading.Thread(target=info._set_as_published, daemon=True)
        first, second = (waiter, marker) if i % 2 else (marker, waiter)
        first.start()
        second.start()
        for thread in (marker, waiter):
            thread.join(10)
            assert not thread.is_alive(), f"round {i}: {thread is waiter and 'the waiter was never woken'}"
        assert info.is_published()
