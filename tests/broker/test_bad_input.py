"""Bad input: the embedded broker closes the offender and keeps serving everyone else.

Each test ends by checking that a publisher and a subscriber that were connected before the
abuse still exchange messages, and that a new client can still connect.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from tests.broker.conftest import USERS, ClientFactory
from tests.support.brokers import RunningBroker
from tests.support.mqtt import DISCONNECT, PUBLISH, SUBSCRIBE, RawClient, connect_packet, packet

SETTINGS = {"limits.connect_timeout_s": 1.0}


@pytest.fixture
def embedded_settings() -> dict[str, Any]:
    return SETTINGS


@pytest.fixture
def client(embedded_client: ClientFactory) -> ClientFactory:
    return embedded_client


@pytest.fixture
def bystanders(client: ClientFactory) -> Iterator[ClientFactory]:
    """A subscriber and a publisher connected before the abuse; checked after it."""
    sub = client("bystander-sub")
    sub.subscribe("test/alive/#", 1)
    pub = client("bystander-pub")
    yield client
    for i in range(20):
        pub.publish(f"test/alive/{i}", b"%d" % i, qos=1)
    assert [m.payload for m in sub.expect(20)] == [b"%d" % i for i in range(20)]
    newcomer = client("newcomer")
    newcomer.publish("test/alive/end", b"", qos=1)
    assert sub.expect(1)[0].topic == "test/alive/end"


def _all_closed(broker: RunningBroker, samples: list[bytes]) -> list[bytes]:
    """Send each sample on its own connection, all at once; the samples whose connection the
    broker did not close (within limits.connect_timeout_s and a margin)."""
    connections = [RawClient(broker.port, timeout=10) for _ in samples]
    try:
        for connection, data in zip(connections, samples, strict=True):
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                connection.send(data)
        left_open = []
        for connection, data in zip(connections, samples, strict=True):
            try:
                closed = connection.closed_by_broker(timeout=10)
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            if not closed:
                left_open.append(data[:16])
        return left_open
    finally:
        for connection in connections:
            connection.close()


def test_garbage_bytes(embedded_broker: RunningBroker, bystanders: ClientFactory) -> None:
    rng = random.Random(4)
    samples = [bytes(rng.getrandbits(8) for _ in range(n)) for n in (1, 7, 100, 5000)]
    samples += [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x10\xff\xff\xff\x7f", b"\x00" * 64, b"\xf0\x00"]
    assert _all_closed(embedded_broker, samples) == []


def test_truncated_connect(embedded_broker: RunningBroker, bystanders: ClientFactory) -> None:
    whole = connect_packet("cut", username="alice", password=USERS["alice"])
    cuts = [whole[:cut] for cut in (1, 2, 5, len(whole) // 2, len(whole) - 1)]
    assert _all_closed(embedded_broker, cuts) == []  # closed after limits.connect_timeout_s


def test_invalid_connects(embedded_broker: RunningBroker, bystanders: ClientFactory) -> None:
    good = connect_packet("odd", username="alice", password=USERS["alice"])
    wrong_protocol = good.replace(b"MQTT", b"MQIsdp")
    not_utf8 = packet(
        1, 0, struct.pack(">H", 4) + b"MQTT" + bytes([4, 2, 0, 60]) + struct.pack(">H", 2) + b"\xff\xfe"
    )
    level_5 = good.replace(b"MQTT\x04", b"MQTT\x05")
    samples = [wrong_protocol, not_utf8, level_5, packet(PUBLISH, 0, b"\x00\x01a"), good[:2] + b"\xff" * 40]
    assert _all_closed(embedded_broker, samples) == []


def test_oversized_packet(embedded_broker: RunningBroker, bystanders: ClientFactory) -> None:
    huge_header = bytes([0x10, 0xFF, 0xFF, 0xFF, 0x7F])  # a CONNECT announcing 256 MB
    assert _all_closed(embedded_broker, [huge_header + b"\x00" * 100]) == []
    connection = RawClient(embedded_broker.port)
    try:
        assert connection.connect("big", username="bob", password=USERS["bob"])[1] == 0
        body = struct.pack(">H", 6) + b"test/x" + b"y" * (2 * 1024 * 1024)
        connection.send(packet(PUBLISH, 0, body)[:70_000])  # the header already says too much
        assert connection.closed_by_broker()
    finally:
        connection.close()


def test_garbage_after_a_valid_connect(embedded_broker: RunningBroker, bystanders: ClientFactory) -> None:
    rng = random.Random(7)
    valid = [
        packet(PUBLISH, 2, struct.pack(">H", 6) + b"test/z" + struct.pack(">H", 1) + b"payload"),
        packet(SUBSCRIBE, 2, struct.pack(">HH", 1, 6) + b"test/#" + b"\x01"),
        packet(DISCONNECT, 0, b""),
    ]
    for round_ in range(30):
        connection = RawClient(embedded_broker.port, timeout=10)
        try:
            assert connection.connect(f"fuzz-{round_}", username="bob", password=USERS["bob"])[1] == 0
            data = bytearray(rng.choice(valid))
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            connection.send(bytes(data) + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))))
        finally:
            connection.close()


def test_a_flood_of_connections(embedded_broker: RunningBroker, bystanders: ClientFactory) -> None:
    flood = []
    try:
        for i in range(300):
            sock = socket.create_connection(("127.0.0.1", embedded_broker.port), timeout=10)
            if i % 3 == 1:
                sock.sendall(b"\x10\x05")  # a CONNECT that never completes
            flood.append(sock)
        for i in range(100):  # and clients that connect and leave as fast as they can
            quick = RawClient(embedded_broker.port)
            assert quick.connect(f"quick-{i}", username="bob", password=USERS["bob"])[1] == 0
            quick.disconnect()
        for sock in flood:  # every idle socket is closed once limits.connect_timeout_s has passed
            sock.settimeout(15)
            assert sock.recv(1) == b""
    finally:
        for sock in flood:
            sock.close()


def _mqtt5_connect(client_id: str, username: str, password: str) -> bytes:
    """A CONNECT as an MQTT 5 client sends it: level 5 and properties (session expiry 3600 s)."""
    properties = bytes([0x11]) + struct.pack(">I", 3600)
    credentials = struct.pack(">H", len(username)) + username.encode()
    credentials += struct.pack(">H", len(password)) + password.encode()
    body = struct.pack(">H", 4) + b"MQTT" + bytes([5, 0xC2]) + struct.pack(">H", 60)
    body += bytes([len(properties)]) + properties + bytes([0])  # CONNECT props, then Will-less payload
    body += struct.pack(">H", len(client_id)) + client_id.encode() + credentials
    return packet(1, 0, body)


@pytest.mark.parametrize("level", [5, 3])
def test_another_protocol_level_is_refused_at_once_with_connack_1(
    embedded_broker: RunningBroker, bystanders: ClientFactory, level: int
) -> None:
    """FIX-PROTOCOL-LEVEL: an MQTT 5 client learns at once that this broker speaks 3.1.1, so
    it can fall back, instead of waiting out the connect timeout (stock amqtt misparses the
    properties and waits for bytes that never come)."""
    data = _mqtt5_connect("v5-client", "alice", USERS["alice"])
    if level == 3:  # an MQTT 3.1 client: MQIsdp, level 3
        data = connect_packet("v3-client", username="alice", password=USERS["alice"])
        data = packet(1, 0, struct.pack(">H", 6) + b"MQIsdp" + bytes([3]) + data[2 + 2 + 4 + 1 :])
    connection = RawClient(embedded_broker.port, timeout=10)
    try:
        connection.send(data)
        connack = connection.receive()
        assert (connack.kind, connack.body) == (2, b"\x00\x01")  # CONNACK: unacceptable protocol version
        assert connection.closed_by_broker(timeout=10)
    finally:
        connection.close()


def test_a_paho_mqtt5_client_is_refused_with_unsupported_protocol(embedded_broker: RunningBroker) -> None:
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    refused: list[Any] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="paho-v5", protocol=mqtt.MQTTv5)
    client.username_pw_set("alice", USERS["alice"])

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, properties: Any) -> None:
        refused.append(reason)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", embedded_broker.port)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK: the broker did not answer the MQTT 5 CONNECT"
        assert refused[0].is_failure
        assert int(refused[0].value) in (0x01, 0x84)  # 3.1.1's code as read by paho, or MQTT 5's own
    finally:
        client.disconnect()
        client.loop_stop()
