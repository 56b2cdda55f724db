"""MQTT clients for tests: a paho 2.x client with blocking helpers, and a raw-socket client.

`TestClient` is paho (`CallbackAPIVersion.VERSION2`, MQTT 3.1.1, TCP_NODELAY) with every wait
on an event and a generous timeout, never a sleep. `RawClient` writes and reads MQTT 3.1.1
packets itself, for what paho will not do: withhold a PUBREC, inspect DUP and packet ids,
send garbage or a truncated CONNECT.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

LOCALHOST = "127.0.0.1"
TIMEOUT = 15.0
_CLOSED = object()


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    if isinstance(sock, (socket.socket, ssl.SSLSocket)):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ConnectRefused(Exception):
    def __init__(self, reason: Any) -> None:
        super().__init__(f"CONNACK refused: {reason}")
        self.reason = reason


class TestClient:
    """A paho client whose calls wait for the broker's answer."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        port: int,
        client_id: str = "",
        *,
        clean: bool = True,
        username: str | None = None,
        password: str | None = None,
        manual_ack: bool = False,
        keepalive: int = 60,
        will: tuple[str, bytes, int, bool] | None = None,
        tls: ssl.SSLContext | None = None,
        transport: str = "tcp",
        host: str = LOCALHOST,
    ) -> None:
        self.port = port
        self.host = host
        self.client_id = client_id
        self.keepalive = keepalive
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=clean,
            manual_ack=manual_ack,
            transport=transport,  # type: ignore[arg-type]
        )
        self.client.on_socket_open = _nodelay
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=will[2], retain=will[3])
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.reconnect_delay_set(1, 2)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connack: queue.Queue[tuple[Any, bool]] = queue.Queue()
        self._subacks: dict[int, queue.Queue[list[Any]]] = {}
        self._published: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self.disconnected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect

    # -- callbacks (paho's network thread) ---------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connack.put((reason, bool(flags.session_present)))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.disconnected.set()
        self._connack.put((_CLOSED, False))  # ends a connect() still waiting for its CONNACK

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[Any], props: Any
    ) -> None:
        with self._lock:
            self._subacks.setdefault(mid, queue.Queue()).put(codes)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            self._published.setdefault(mid, threading.Event()).set()

    # -- blocking calls -------------------------------------------------------------------------------

    def connect(self, timeout: float = TIMEOUT) -> bool:
        """Connect and wait for CONNACK; returns session-present; raises `ConnectRefused`."""
        self.disconnected.clear()
        while not self._connack.empty():
            self._connack.get_nowait()
        self.client.connect(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        try:
            reason, present = self._connack.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise TimeoutError(f"no CONNACK within {timeout} s") from None
        if reason is _CLOSED:
            self.close()
            raise ConnectRefused("the connection was closed before CONNACK")
        if reason.is_failure:
            self.close()
            raise ConnectRefused(reason)
        return present

    def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = TIMEOUT) -> int:
        """Subscribe and return the granted QoS (128 / 0x80 for a refusal)."""
        return self.subscribe_many([(topic_filter, qos)], timeout)[0]

    def subscribe_many(self, filters: list[tuple[str, int]], timeout: float = TIMEOUT) -> list[int]:
        with self._lock:
            rc, mid = self.client.subscribe(filters)
            assert rc == mqtt.MQTT_ERR_SUCCESS, rc
            box = self._subacks.setdefault(mid, queue.Queue())
        codes = box.get(timeout=timeout)
        return [int(code.value) if hasattr(code, "value") else int(code) for code in codes]

    def unsubscribe(self, topic_filter: str, timeout: float = TIMEOUT) -> None:
        done = threading.Event()
        self.client.on_unsubscribe = lambda c, u, mid, codes, props: done.set()
        self.client.unsubscribe(topic_filter)
        assert done.wait(timeout), "no UNSUBACK"

    def publish(
        self, topic: str, payload: bytes = b"", qos: int = 1, retain: bool = False, timeout: float = TIMEOUT
    ) -> None:
        """Publish; for QoS 1/2 wait until the broker acknowledged it.

        paho is called outside `_lock`: `_on_publish` takes `_lock` inside paho's own lock, so
        holding `_lock` across `publish()` could deadlock the two threads."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if not qos:
            return
        with self._lock:  # the PUBACK may have come already: then its event is set
            event = self._published.setdefault(info.mid, threading.Event())
        try:
            if not event.wait(timeout):
                raise TimeoutError(f"no acknowledgement of a QoS {qos} publish to {topic} within {timeout} s")
        finally:
            with self._lock:
                self._published.pop(info.mid, None)  # packet ids are reused

    def expect(self, count: int = 1, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        """The next `count` messages received, in order; fails if they do not come in time."""
        got = []
        for _ in range(count):
            try:
                got.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(
                    f"expected {count} message(s), got {len(got)}: {[m.topic for m in got]}"
                ) from None
        return got

    def expect_until(self, topic: str, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        """Every message up to and including the first on `topic` (a marker sent after the rest)."""
        got = []
        while True:
            message = self.expect(1, timeout)[0]
            got.append(message)
            if message.topic == topic:
                return got

    def sync(self, timeout: float = TIMEOUT) -> None:
        """A round trip on this connection: every message the broker had routed to this client
        before is in `messages` afterwards (a QoS 1 PUBLISH is acknowledged even when the ACL
        drops it, and PUBACK follows, on the same stream, what was sent before it)."""
        self.publish(f"sync/{self.client_id or 'anonymous'}", b"", qos=1, timeout=timeout)

    def ack(self, message: mqtt.MQTTMessage) -> None:
        self.client.ack(message.mid, message.qos)

    def disconnect(self) -> None:
        """A clean DISCONNECT (no Will)."""
        self.client.disconnect()
        self.disconnected.wait(TIMEOUT)
        self.client.loop_stop()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT (the Will is published)."""
        sock = self.client.socket()
        shutdown = getattr(sock, "shutdown", None)  # a WebSocket wrapper has none
        if shutdown is not None:  # shut down first: paho's loop wakes at once instead of in up to 1 s
            with contextlib.suppress(OSError):
                shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Release everything (without DISCONNECT)."""
        self.drop()


# --- raw MQTT 3.1.1 -----------------------------------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def _remaining(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + _remaining(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    clean: bool = True,
    keepalive: int = 60,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
) -> bytes:
    flags = 0x02 if clean else 0
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
        payload += _string(will[0]) + struct.pack(">H", len(will[1])) + will[1]
    if username is not None:
        flags |= 0x80
        payload += _string(username)
    if password is not None:
        flags |= 0x40
        payload += _string(password)
    body = _string("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive) + payload
    return packet(CONNECT, 0, body)


@dataclass
class Received:
    kind: int
    flags: int
    body: bytes

    @property
    def packet_id(self) -> int:
        if self.kind == PUBLISH:
            (length,) = struct.unpack_from(">H", self.body)
            return int(struct.unpack_from(">H", self.body, 2 + length)[0]) if self.qos else 0
        return int(struct.unpack_from(">H", self.body)[0])

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 8)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 1)

    @property
    def topic(self) -> str:
        (length,) = struct.unpack_from(">H", self.body)
        return self.body[2 : 2 + length].decode()

    @property
    def payload(self) -> bytes:
        (length,) = struct.unpack_from(">H", self.body)
        return self.body[2 + length + (2 if self.qos else 0) :]


class RawClient:
    """One socket speaking MQTT 3.1.1 packet by packet."""

    def __init__(self, port: int, host: str = LOCALHOST, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the broker")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def receive(self) -> Received:
        first = self._read(1)[0]
        multiplier, length = 1, 0
        while True:
            byte = self._read(1)[0]
            length += (byte & 0x7F) * multiplier
            if not byte & 0x80:
                break
            multiplier *= 128
        return Received(first >> 4, first & 0x0F, self._read(length))

    def receive_kind(self, kind: int, skip: Callable[[Received], bool] = lambda p: False) -> Received:
        while True:
            got = self.receive()
            if got.kind == kind:
                return got
            if not skip(got):
                raise AssertionError(f"expected packet type {kind}, got {got}")

    def connect(self, client_id: str, **options: Any) -> tuple[bool, int]:
        """CONNECT and read CONNACK: (session present, return code)."""
        self.send(connect_packet(client_id, **options))
        connack = self.receive_kind(CONNACK)
        return bool(connack.body[0] & 1), connack.body[1]

    def subscribe(self, packet_id: int, filters: list[tuple[str, int]]) -> list[int]:
        body = struct.pack(">H", packet_id) + b"".join(_string(f) + bytes([q]) for f, q in filters)
        self.send(packet(SUBSCRIBE, 2, body))
        suback = self.receive_kind(SUBACK)
        return list(suback.body[2:])

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, packet_id: int = 1, retain: bool = False
    ) -> None:
        body = _string(topic) + (struct.pack(">H", packet_id) if qos else b"") + payload
        self.send(packet(PUBLISH, (qos << 1) | int(retain), body))

    def ack(self, kind: int, packet_id: int) -> None:
        self.send(packet(kind, 2 if kind == PUBREL else 0, struct.pack(">H", packet_id)))

    def disconnect(self) -> None:
        self.send(packet(DISCONNECT, 0, b""))
        self.close()

    def closed_by_broker(self, timeout: float = TIMEOUT) -> bool:
        """True when the broker closes the connection (reading anything until then)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()
