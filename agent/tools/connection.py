"""One MQTT connection for a client tool: paho 2.x with blocking connect, subscribe and publish.

    client = ToolClient.from_config(config, "submit")
    client.connect()                       # ConnectFailed with advice: unreachable, login, TLS
    client.subscribe([topic_filter, ...])  # granted QoS per filter (0x80: refused by the ACL)
    info = client.publish(topic, payload); client.wait_published([info], timeout)
    incoming = client.messages.get(timeout=...)

Subscriptions are remembered and renewed after paho reconnects (clean sessions: a tool has no
state worth keeping in the broker). With several endpoints (`mqtt.servers`, a cluster) `connect`
tries each in turn, and paho's reconnects move to the next one when a connection is lost.
MQTT 3.1.1 unless `mqtt.protocol = "5"`: every broker speaks it and the tools need nothing of
MQTT 5.
"""

from __future__ import annotations

import queue
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.common.endpoints import Endpoints, Order, follow_next, format_endpoint
from agent.common.tls import nodelay

from .errors import ConnectFailed
from .settings import ClientConfig

SUBSCRIBE_REFUSED = 0x80
_HINT_ADDRESS = (
    "check mqtt.host / mqtt.port (--host / --port, EDGE_MQTT_HOST / EDGE_MQTT_PORT) or mqtt.servers"
    " (EDGE_MQTT_SERVERS)"
)


class Incoming(NamedTuple):
    topic: str
    payload: bytes
    retain: bool
    received_at: float


@dataclass(frozen=True)
class ConnectSettings:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    mqtt5: bool = False
    keepalive_s: int = 30
    timeout_s: float = 10.0
    servers: tuple[tuple[str, int], ...] = ()  # a cluster's endpoints; empty: host and port
    server_order: Order = "ordered"


def connect_settings(config: ClientConfig, tool: str) -> ConnectSettings:
    """How `config` reaches its broker; file errors name their key."""
    m = config.mqtt
    return ConnectSettings(
        host=m.host,
        port=m.port,
        client_id=config.client_id(tool),
        username=m.username,
        password=m.password(),
        tls=m.tls_context(),
        mqtt5=m.protocol == "5",
        keepalive_s=m.keepalive_s,
        timeout_s=max(m.connack_timeout_s, 10.0),
        servers=tuple(m.endpoints()) if m.servers else (),
        server_order=m.server_order,
    )


def _granted(code: Any) -> int:
    """The QoS granted, or SUBSCRIBE_REFUSED for any failure: 0x80 on MQTT 3.1.1, a reason code
    of 0x80 or more on MQTT 5 (Mosquitto refuses with 0x87, not authorized)."""
    value = int(code.value) if hasattr(code, "value") else int(code)
    return SUBSCRIBE_REFUSED if value >= SUBSCRIBE_REFUSED else value


class ToolClient:
    """A paho client whose calls wait for the broker's answer."""

    def __init__(self, settings: ConnectSettings, on_puback: Callable[[int], None] | None = None) -> None:
        """`on_puback(mid)`: on paho's network thread, for every QoS 1 publish the broker
        acknowledged, those made while the connection was down included (paho keeps them and sends
        them after it reconnects; their `MQTTMessageInfo` raises instead)."""
        self.settings = settings
        self.messages: queue.Queue[Incoming] = queue.Queue()
        self.connected = threading.Event()
        self.connects = 0
        self._connack: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._filters: list[str] = []
        self._subacks: dict[int, queue.Queue[list[int]]] = {}
        self._endpoints = Endpoints(
            settings.servers or ((settings.host, settings.port),), settings.server_order
        )
        self._closing = False
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=paho.MQTTv5 if settings.mqtt5 else paho.MQTTv311,
            clean_session=None if settings.mqtt5 else True,
        )
        c = self._client
        c.on_socket_open = nodelay
        c.connect_timeout = settings.timeout_s
        c.reconnect_delay_set(1, 5)
        if settings.username is not None:
            c.username_pw_set(settings.username, settings.password)
        if settings.tls is not None:
            c.tls_set_context(settings.tls)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_connect_fail = self._on_connect_fail
        if on_puback is not None:
            c.on_publish = lambda client, userdata, mid, reason, props: on_puback(mid)

    @classmethod
    def from_config(cls, config: ClientConfig, tool: str) -> ToolClient:
        return cls(connect_settings(config, tool))

    @property
    def address(self) -> str:
        """The endpoint in use (or tried now)."""
        return format_endpoint(*self._endpoints.current)

    # -- paho's network thread ------------------------------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._connack.put(reason)
            return
        self.connects += 1
        self.connected.set()
        self._connack.put(None)
        with self._lock:
            filters = list(self._filters)
        if filters and self.connects > 1:  # renew after a reconnect (clean session)
            client.subscribe([(f, 1) for f in filters])

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        self._connack.put(ConnectionResetError("closed before CONNACK"))
        if not self._closing and self.connects:
            follow_next(client, self._endpoints, self.settings.keepalive_s)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        if not self._closing:
            follow_next(client, self._endpoints, self.settings.keepalive_s)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.messages.put(Incoming(msg.topic, bytes(msg.payload), bool(msg.retain), time.time()))

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._lock:
            self._subacks.setdefault(mid, queue.Queue()).put([_granted(c) for c in codes])

    # -- blocking calls -------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and wait for the CONNACK, trying each endpoint in turn; `ConnectFailed` says
        what to check (for the last one tried)."""
        for _ in range(len(self._endpoints) - 1):
            try:
                return self._connect_once()
            except ConnectFailed as exc:
                print(f"warning: {exc.message}; trying the next broker endpoint", file=sys.stderr)
                self._closing = False
                self._endpoints.advance()
        return self._connect_once()

    def _connect_once(self) -> None:
        s = self.settings
        host, port = self._endpoints.current
        while not self._connack.empty():  # what an earlier endpoint's attempt left
            self._connack.get_nowait()
        try:
            self._client.connect(host, port, keepalive=s.keepalive_s)
        except ssl.SSLCertVerificationError as exc:
            raise ConnectFailed(
                f"the broker at {self.address} has a certificate that does not verify against mqtt.ca_file:"
                f" {exc.verify_message}; is this the fleet's broker, and mqtt.host a name in its certificate?"
            ) from None
        except ssl.SSLError as exc:
            raise ConnectFailed(
                f"TLS handshake with {self.address} failed ({exc.reason or exc}): is this the broker's TLS"
                " port, and does it accept the certificate in mqtt.cert_file? For the plain port set"
                " mqtt.tls = false (EDGE_MQTT_TLS=false)"
            ) from None
        except ConnectionRefusedError:
            raise ConnectFailed(
                f"cannot reach the broker at {self.address}: connection refused. Is the broker running? "
                + _HINT_ADDRESS
            ) from None
        except socket.gaierror as exc:
            raise ConnectFailed(
                f"cannot resolve broker host {host!r}: {exc.strerror}; {_HINT_ADDRESS}"
            ) from None
        except TimeoutError:
            raise ConnectFailed(
                f"no answer from the broker at {self.address} within {s.timeout_s:g} s; {_HINT_ADDRESS}"
            ) from None
        except OSError as exc:
            raise ConnectFailed(
                f"cannot reach the broker at {self.address}: {exc}; {_HINT_ADDRESS}"
            ) from None
        self._client.loop_start()
        try:
            outcome = self._connack.get(timeout=s.timeout_s)
        except queue.Empty:
            self.close()
            raise ConnectFailed(
                f"the broker at {self.address} did not answer the login within {s.timeout_s:g} s"
            ) from None
        if outcome is None:
            return
        self.close()
        who = f"user {s.username!r}" if s.username else "an anonymous client"
        why = "closed the connection" if isinstance(outcome, Exception) else f"answered {outcome}"
        raise ConnectFailed(
            f"the broker at {self.address} refused the login of {who} ({why}): check mqtt.username and"
            " mqtt.password_file (the bundle's broker.password), the TLS certificate, and whether the"
            " identity was revoked or the broker files are out of date"
        )

    def subscribe(self, filters: Iterable[str], timeout: float = 15.0) -> list[int]:
        """Subscribe at QoS 1 and return the granted QoS per filter (0x80: refused, on either protocol)."""
        wanted = list(filters)
        with self._lock:
            self._filters.extend(wanted)
            rc, mid = self._client.subscribe([(f, 1) for f in wanted])
            if rc != paho.MQTT_ERR_SUCCESS or mid is None:
                raise ConnectFailed(f"lost the connection to {self.address} while subscribing")
            box = self._subacks.setdefault(mid, queue.Queue())
        try:
            return box.get(timeout=timeout)
        except queue.Empty:
            raise ConnectFailed(
                f"the broker at {self.address} did not acknowledge the subscription"
            ) from None
        finally:
            with self._lock:
                self._subacks.pop(mid, None)

    def publish(self, topic: str, payload: bytes) -> paho.MQTTMessageInfo:
        """A QoS 1 publish, queued; `wait_published` waits for its PUBACK."""
        return self._client.publish(topic, payload, qos=1)

    def wait_published(self, infos: Iterable[paho.MQTTMessageInfo], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for info in infos:
            while not info.is_published():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConnectFailed(
                        f"the broker at {self.address} did not acknowledge a publish within {timeout:g} s"
                    )
                try:
                    info.wait_for_publish(min(left, 0.5))
                except (RuntimeError, ValueError) as exc:  # paho: not queued, or not connected
                    raise ConnectFailed(f"publishing to the broker at {self.address} failed: {exc}") from None

    def close(self) -> None:
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
