"""agent.pahoio: paho with batched reads and writes carries exactly what stock paho carries.

The packet framing is checked on its own (whole, partial, malformed lengths), then real Mosquitto
traffic in both directions: QoS 0 and 1, small and large payloads (a large one spans many reads),
bursts (many packets in one read), every PUBACK reported, and a reconnect that starts clean; and
`publish_here`, written by the calling thread or, when it cannot, left to the network thread."""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.node.link import pahoio
from agent.node.link.pahoio import READ_SIZE, BatchingClient, whole_packet
from tests.support.services import free_port, run_mosquitto

TIMEOUT = 20.0


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16383, 16384, 300_000])
def test_a_whole_packet_is_found_with_any_length_encoding(size: int) -> None:
    body = bytes(i % 251 for i in range(size))
    packet = b"\x30" + _remaining_length(size) + body
    buffer = b"\x40\x02\x00\x01" + packet + b"\x40"  # a PUBACK before, a partial packet after
    assert whole_packet(buffer, 0) == (0x40, 2, 4)
    command, start, end = whole_packet(buffer, 4) or (0, 0, 0)
    assert command == 0x30 and buffer[start:end] == body
    assert whole_packet(buffer, end) is None  # one byte of the next packet


def test_a_partial_or_malformed_packet_is_left_to_paho() -> None:
    packet = b"\x30" + _remaining_length(200) + b"x" * 200
    for cut in range(1, len(packet)):
        assert whole_packet(packet[:cut], 0) is None
    assert whole_packet(b"\x30\xff\xff\xff\xff\x01" + b"x" * 10, 0) is None  # 5 length bytes


def _packet(command: int, qos: int, data: bytes, pos: int = 0) -> dict[str, Any]:
    return {
        "command": command,
        "mid": 1,
        "qos": qos,
        "pos": pos,
        "to_process": len(data) - pos,
        "packet": data,
        "info": None,
    }


def test_packets_needing_nothing_after_their_write_are_joined() -> None:
    out: deque[Any] = deque(
        [
            _packet(0x40, 0, b"ACK1xx", pos=2),  # partly written already: only the rest is joined
            _packet(0x40, 0, b"ACK2"),
            _packet(0x32, 1, b"PUB1"),
            _packet(0x30, 0, b"QOS0"),  # its on_publish runs when written: stays alone
            _packet(0x32, 1, b"PUB2"),
            _packet(0xE0, 0, b"DISC"),  # paho closes the socket after it: stays alone
        ]
    )
    BatchingClient._coalesce(out)
    assert [(p["packet"], p["pos"], p["to_process"]) for p in out] == [
        (b"K1xxACK2PUB1", 0, 12),
        (b"QOS0", 0, 4),
        (b"PUB2", 0, 4),
        (b"DISC", 0, 4),
    ]


class _Broker:
    def __init__(self, port: int) -> None:
        self.port = port

    def client(self, name: str, cls: type[mqtt.Client] = mqtt.Client, **options: Any) -> mqtt.Client:
        client = cls(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5, **options)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        return client


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[_Broker]:
    port = free_port()
    conf = f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
    with run_mosquitto(conf, tmp_path, [port]):
        yield _Broker(port)


def _subscribed(client: mqtt.Client, topic: str) -> None:
    done = threading.Event()
    client.on_subscribe = lambda c, u, mid, codes, p: done.set()
    client.subscribe(topic, qos=1)
    assert done.wait(TIMEOUT)


def _reader(
    broker: _Broker, cls: type[mqtt.Client] = mqtt.Client
) -> tuple[mqtt.Client, queue.SimpleQueue[mqtt.MQTTMessage]]:
    """A client subscribed to `t/#`, and the queue its messages go to."""
    received: queue.SimpleQueue[mqtt.MQTTMessage] = queue.SimpleQueue()
    reader = broker.client("reader", cls)
    reader.on_message = lambda c, u, m: received.put(m)
    _subscribed(reader, "t/#")
    return reader, received


def _payloads(count: int) -> list[bytes]:
    """Mostly small, some spanning several reads of READ_SIZE."""
    sizes = [0, 1, 700, 5000, 3 * READ_SIZE + 17]
    return [bytes([i % 256]) * sizes[i % len(sizes)] for i in range(count)]


@pytest.mark.parametrize("qos", [0, 1])
def test_what_a_batching_client_receives_is_what_was_sent(broker: _Broker, qos: int) -> None:
    reader, received = _reader(broker, BatchingClient)
    writer = broker.client("writer")
    payloads = _payloads(600)
    for i, payload in enumerate(payloads):  # a burst: many packets arrive in one read
        writer.publish(f"t/{i}", payload, qos=qos)
    got = [received.get(timeout=TIMEOUT) for _ in payloads]
    assert [(m.topic, m.payload) for m in got] == [(f"t/{i}", p) for i, p in enumerate(payloads)]
    assert reader.buffered() == 0  # nothing left waiting in the buffer while select sleeps
    for client in (reader, writer):
        client.disconnect()
        client.loop_stop()


def test_what_a_batching_client_publishes_arrives_and_every_puback_is_reported(broker: _Broker) -> None:
    reader, received = _reader(broker)
    published: queue.SimpleQueue[int] = queue.SimpleQueue()
    writer = broker.client("writer", BatchingClient)
    writer.on_publish = lambda c, u, mid, reason, p: published.put(mid)
    payloads = _payloads(400)
    mids = [writer.publish(f"t/{i}", p, qos=i % 2).mid for i, p in enumerate(payloads)]
    got = [received.get(timeout=TIMEOUT) for _ in payloads]
    for qos in (0, 1):  # paho holds QoS 1 beyond its in-flight window, QoS 0 goes at once: each in order
        sent = [(f"t/{i}", p) for i, p in enumerate(payloads) if i % 2 == qos]
        assert [(m.topic, m.payload) for m in got if int(m.topic[2:]) % 2 == qos] == sent
    reported = {published.get(timeout=TIMEOUT) for _ in mids}  # QoS 1 on PUBACK, QoS 0 when written
    assert reported == set(mids)
    for client in (reader, writer):
        client.disconnect()
        client.loop_stop()


def test_closing_the_socket_drops_what_was_buffered() -> None:
    client = BatchingClient(CallbackAPIVersion.VERSION2, client_id="c")
    client._sock, _ = socket.socketpair()
    client._read_buffer, client._read_pos = b"\x30\x05stale", 1  # bytes of the connection closing
    client._sock_close()
    assert client.buffered() == 0 and client._sock is None
    _.close()


def test_a_client_reconnected_by_paho_goes_on_receiving(broker: _Broker) -> None:
    received: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    reader = broker.client("reader", BatchingClient)
    reader.on_message = lambda c, u, m: received.put(m.payload)
    _subscribed(reader, "t/#")
    sock = reader.socket()
    assert isinstance(sock, socket.socket)
    connected = threading.Event()
    reader.on_connect = lambda c, u, f, r, p: (c.subscribe("t/#", qos=1), connected.set())
    sock.shutdown(socket.SHUT_RDWR)  # paho's loop_start reconnects
    assert connected.wait(TIMEOUT)
    time.sleep(0.2)  # the new subscription is in place
    writer = broker.client("writer")
    writer.publish("t/after", b"fresh", qos=1)
    assert received.get(timeout=TIMEOUT) == b"fresh"
    assert received.empty()
    for client in (reader, writer):
        client.disconnect()
        client.loop_stop()


def test_wake_reaches_the_network_thread_while_quiet_hides_the_pair() -> None:
    client = BatchingClient(CallbackAPIVersion.VERSION2, client_id="w")
    client._sockpairR, client._sockpairW = socket.socketpair()
    try:
        with client.quiet():
            assert client._sockpairW is None  # paho's own publish writes no wake-up byte here
            client.wake()
            ready, _, _ = select.select([client._sockpairR], [], [], 1.0)
            assert ready  # another thread's wake-up still gets through
        assert client._sockpairW is not None and client._hidden_wake is None
    finally:
        for sock in (client._sockpairR, client._sockpairW):
            if sock is not None:
                sock.close()


def _wake_pending(client: BatchingClient) -> bool:
    ready, _, _ = select.select([client._sockpairR], [], [], 0)
    return bool(ready)


@contextlib.contextmanager
def _without_network_thread(broker: _Broker) -> Iterator[BatchingClient]:
    """A connected client whose "network thread" is the test, calling `loop` itself; paho is told
    that thread exists, as `MqttLink` does, so that its own publish only queues and wakes it."""
    client = BatchingClient(CallbackAPIVersion.VERSION2, client_id="writer", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    deadline = time.monotonic() + TIMEOUT
    while not client.is_connected():
        assert time.monotonic() < deadline
        client.loop(0.05)
    client._thread = threading.current_thread()
    while _wake_pending(client):
        client._sockpairR.recv(64)
    try:
        yield client
    finally:
        client.disconnect()
        client.loop(0.05)
        client._reset_sockets()


def test_publish_here_writes_from_the_calling_thread_without_waking_the_network_thread(
    broker: _Broker,
) -> None:
    reader, received = _reader(broker)
    payloads = _payloads(20)  # paho's in-flight window: all of them leave at once
    with _without_network_thread(broker) as writer:
        mids = [writer.publish_here(f"t/{i}", p, qos=1) for i, p in enumerate(payloads)]
        assert len(set(mids)) == 20
        got = [received.get(timeout=TIMEOUT) for _ in payloads]  # nobody else wrote them
        assert [(m.topic, m.payload) for m in got] == [(f"t/{i}", p) for i, p in enumerate(payloads)]
        assert not _wake_pending(writer) and not writer._out_packet
    reader.disconnect()
    reader.loop_stop()


def test_writes_held_sends_the_packets_of_several_publish_here_calls_in_one_write(broker: _Broker) -> None:
    reader, received = _reader(broker)
    payloads = [bytes([i]) * 300 for i in range(10)]  # results' size: the socket takes them at once
    with _without_network_thread(broker) as writer:
        sends: list[int] = []
        send = writer._sock_send
        writer._sock_send = lambda buf: sends.append(len(buf)) or send(buf)  # type: ignore[method-assign]
        with writer.writes_held():
            with writer.writes_held():  # nested: only the outer block writes
                mids = [writer.publish_here(f"t/{i}", p, qos=1) for i, p in enumerate(payloads[:5])]
            assert len(writer._out_packet) == 5 and not sends
            mids += [writer.publish_here(f"t/{i}", p, qos=1) for i, p in enumerate(payloads[5:], 5)]
            with pytest.raises(queue.Empty):
                received.get(timeout=0.3)  # held: nothing has left yet
        assert len(set(mids)) == 10 and not writer._out_packet and not _wake_pending(writer)
        assert len(sends) == 1  # all ten in one send
        got = [received.get(timeout=TIMEOUT) for _ in payloads]
        assert [(m.topic, m.payload) for m in got] == [(f"t/{i}", p) for i, p in enumerate(payloads)]
        with writer._write_lock, writer.writes_held():  # the network thread is writing at the end:
            writer.publish_here("t/late", b"queued", qos=1)
        assert len(writer._out_packet) == 1 and _wake_pending(writer)  # left to it, and it is woken
        writer.loop(0.05)
        assert received.get(timeout=TIMEOUT).payload == b"queued"
    reader.disconnect()
    reader.loop_stop()


def test_publish_here_copes_with_the_network_thread_queueing_while_it_checks_the_queue(
    broker: _Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network thread queues acks at any time; a deque changed under a Python-level iteration
    raises (it ended the agent's store writer once)."""
    reader, received = _reader(broker)
    check = pahoio._needs_nothing_after
    with _without_network_thread(broker) as writer:

        def queued_meanwhile(packet: dict[str, Any]) -> bool:
            if len(writer._out_packet) < 3:  # as if another thread queued a packet right now
                writer.publish("t/meanwhile", b"m", qos=1)
            return check(packet)

        monkeypatch.setattr(pahoio, "_needs_nothing_after", queued_meanwhile)
        with writer.writes_held():
            writer.publish_here("t/a", b"a", qos=1)
            writer.publish_here("t/b", b"b", qos=1)
        monkeypatch.setattr(pahoio, "_needs_nothing_after", check)
        writer.loop(0.05)  # whatever the snapshot did not cover, the network thread writes
        got = [received.get(timeout=TIMEOUT) for _ in range(3)]
        assert [(m.topic, m.payload) for m in got] == [("t/a", b"a"), ("t/b", b"b"), ("t/meanwhile", b"m")]
        assert not writer._out_packet
    reader.disconnect()
    reader.loop_stop()


def test_publish_here_leaves_its_packet_to_the_network_thread_when_it_cannot_write(broker: _Broker) -> None:
    reader, received = _reader(broker)
    with _without_network_thread(broker) as writer:
        with writer._write_lock:  # as if the network thread were writing
            writer.publish_here("t/late", b"queued", qos=1)
            assert len(writer._out_packet) == 1 and _wake_pending(writer)  # queued, the thread woken
        writer._sockpairR.recv(64)
        writer.publish("t/q0", b"zero", qos=0)  # paho calls on_publish once a QoS 0 packet is written,
        writer.publish_here("t/after", b"behind it", qos=1)  # so nothing is written here behind it
        assert len(writer._out_packet) == 3 and _wake_pending(writer)
        with pytest.raises(queue.Empty):
            received.get(timeout=0.3)
        writer.loop(0.05)  # the network thread writes all three, in order
        got = [received.get(timeout=TIMEOUT) for _ in range(3)]
        assert [(m.topic, m.payload) for m in got] == [
            ("t/late", b"queued"),
            ("t/q0", b"zero"),
            ("t/after", b"behind it"),
        ]
    reader.disconnect()
    reader.loop_stop()
