"""A small synchronous MQTT 3.1.1 (or 5) client for broker tests (paho-mqtt 2.x, callback API 2).

with Probe("node-1", port, password=pw, tls=TlsFiles(...)) as p:
    assert p.connect() is None              # None = accepted, else why it was refused
    p.subscribe(["edge/tasks/node-1"])      # the SUBACK codes (0x80 = refused; 0x87 on MQTT 5)
    p.publish("edge/results/node-1/t", b"x")  # waits for the PUBACK
    p.received(wanted={...}, settle=0.2)    # the (topic, payload) pairs that arrived
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"
# A wait for what must come (CONNACK, SUBACK, PUBACK, wanted messages): only a failing test spends
# it all. NATS answers a new client's CONNECT once JetStream has made its session (replicated on 3
# nodes): over 5 s once in CI.
TIMEOUT = 30.0


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path | None = None
    key: Path | None = None


def _nodelay(_client: Any, _userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Probe:
    """One connection; messages are collected on a queue."""

    def __init__(
        self,
        username: str,
        port: int,
        *,
        password: str,
        tls: TlsFiles | None = None,
        mqtt5: bool = False,
        websocket: bool = False,
    ) -> None:
        self.username = username
        self.mqtt5 = mqtt5
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"probe-{username}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
            transport="websockets" if websocket else "tcp",
        )
        if websocket:
            self.client.ws_set_options(path="/mqtt")
        self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(tls.ca),
                certfile=None if tls.cert is None else str(tls.cert),
                keyfile=None if tls.key is None else str(tls.key),
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self.port = port
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connack: queue.Queue[Any] = queue.Queue()
        self._subacks: dict[int, list[int]] = {}
        self._suback_event = threading.Condition()
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        if not websocket:
            c.on_socket_open = _nodelay

    # -- callbacks (network thread) --------------------------------------------------------
    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._connack.put(reason)

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._connack.put(("disconnected", reason))

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((msg.topic, bytes(msg.payload)))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[Any], _props: Any) -> None:
        with self._suback_event:
            self._subacks[mid] = [int(getattr(code, "value", code)) for code in codes]
            self._suback_event.notify_all()

    # -- API ------------------------------------------------------------------------------
    def connect(self) -> str | None:
        """None when the broker accepted us; otherwise a description of the refusal."""
        try:
            self.client.connect(HOST, self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            return f"connect failed: {exc!r}"
        self.client.loop_start()
        try:
            reason = self._connack.get(timeout=TIMEOUT)
        except queue.Empty:
            return "no CONNACK"
        if isinstance(reason, tuple):
            return f"disconnected before CONNACK: {reason[1]}"
        if reason.is_failure:
            return f"refused: {reason}"
        return None

    def subscribe(self, filters: list[str], qos: int = 1) -> list[int]:
        """Subscribe in one SUBSCRIBE; the SUBACK return codes in order."""
        result, mid = self.client.subscribe([(f, qos) for f in filters])
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        deadline = time.monotonic() + TIMEOUT
        with self._suback_event:
            while mid not in self._subacks:
                left = deadline - time.monotonic()
                assert left > 0, f"no SUBACK for {filters}"
                self._suback_event.wait(left)
            return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=TIMEOUT)
        assert info.is_published(), f"{self.username}: no PUBACK for {topic}"

    def received(self, wanted: set[tuple[str, bytes]], settle: float = 0.2) -> set[tuple[str, bytes]]:
        """Collect until every `wanted` message arrived (or timeout), then `settle` s more for extras."""
        got: set[tuple[str, bytes]] = set()
        deadline = time.monotonic() + TIMEOUT
        while not wanted <= got and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                got.add(self.messages.get(timeout=0.05))
        end = time.monotonic() + settle
        while time.monotonic() < end:
            with contextlib.suppress(queue.Empty):
                got.add(self.messages.get(timeout=0.02))
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
