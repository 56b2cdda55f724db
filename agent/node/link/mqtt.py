"""The agent's one MQTT connection: paho 2.x behind a small surface, with the rules of ARCHITECTURE.md.

    link = MqttLink(settings, handlers)
    link.start()                       # network thread: connect, reconnect with back-off and jitter
    link.publish(topic, payload, qos=1) -> mid   # thread-safe; PUBACKs reported to handlers.published(mids)
    link.ack(delivery)                 # PUBACK of a received message, only on the connection it came on
    link.stop()

* Nothing blocks paho's network thread: every callback hands its work to the agent's queues
  (`Handlers`); the one exception is `before_connect`, which runs on the same thread while there is
  no connection (it bumps and stores the presence session counter for the Will).
* Manual acknowledgements (`manual_ack=True`): each received message carries the connection
  generation it arrived on. The generation changes at every connect and disconnect, and an ack for
  an older generation is dropped: after a reconnect paho reuses packet ids, so a late ack could
  acknowledge a different message.
* A stable client id and a persistent session (MQTT 3.1.1 clean_session 0; MQTT 5 clean_start 0 and
  a session expiry), TLS or mutual TLS from the bundle, TCP_NODELAY on the socket.
* Several broker endpoints (a cluster, `servers`): the link stays on one while it works; when the
  connection is lost or cannot be made it tries the next one at once, and backs off only after a
  whole round of them failed. paho keeps the session's unacknowledged QoS 1 publishes across the
  move (one client object), and the stable client id finds the persistent session on any node.
* `protocol = "auto"` tries MQTT 5 and falls back to 3.1.1 when the broker refuses it or does not
  answer within `connack_timeout_s` (amqtt does not answer an MQTT 5 CONNECT with properties).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ...common.endpoints import Endpoints, Order, format_endpoint
from ...common.tls import nodelay
from . import pahofast
from .pahoio import BatchingClient

log = logging.getLogger(__name__)

MQTT5, MQTT311 = "5", "3.1.1"
#: QoS 1 publishes (results) awaiting their PUBACK. paho ignores an MQTT 5 broker's Receive Maximum,
#: and exceeding it is a protocol error: 20 is Mosquitto's default and the usual minimum.
MAX_INFLIGHT = {MQTT5: 20, MQTT311: 100}
_PAHO_PROTOCOL = {MQTT5: paho.MQTTv5, MQTT311: paho.MQTTv311}


class Delivery(NamedTuple):
    """A received message and the connection generation it arrived on (for its ack)."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: float  # time.time() when paho handed it over


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class LinkSettings:
    host: str
    port: int
    client_id: str
    subscriptions: tuple[str, ...]
    protocol: str = "auto"  # "auto", "5" or "3.1.1"
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86400
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    connack_timeout_s: float = 5.0
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    servers: tuple[tuple[str, int], ...] = ()  # a cluster's endpoints; empty: host and port
    server_order: Order = "ordered"


@dataclass
class Handlers:
    """What the link calls, on its network thread; each must return at once (queue the work)."""

    message: Callable[[Delivery], None]
    #: The packet ids the broker acknowledged since the last call, once per loop iteration, outside
    #: paho's locks: it may take locks that a thread publishing through paho holds.
    published: Callable[[list[int]], None] = lambda mids: None
    connected: Callable[[bool, str], None] = lambda session_present, protocol: None
    disconnected: Callable[[], None] = lambda: None
    before_connect: Callable[[], Will | None] = lambda: None


def backoff_delay(attempt: int, lo: float, hi: float, rng: random.Random) -> float:
    """Exponential back-off with full jitter: uniform in [lo, min(hi, lo * 2**attempt)]."""
    ceiling = min(hi, lo * (2 ** min(attempt, 30)))
    return rng.uniform(lo, max(lo, ceiling))


def failover_delay(failures: int, endpoints: int, lo: float, hi: float, rng: random.Random) -> float:
    """The wait before the next connection attempt after `failures` failed ones in a row (0: a
    connection was lost): none while a round of the endpoints is not yet over, so a cluster's
    client is on the next node at once; the back-off, counted in whole rounds, once all failed."""
    rounds, within = divmod(failures, endpoints)
    return 0.0 if within else backoff_delay(rounds, lo, hi, rng)


class MqttLink:
    """One paho client, its network thread and its reconnect policy."""

    def __init__(self, settings: LinkSettings, handlers: Handlers) -> None:
        self.settings = settings
        self.handlers = handlers
        self.protocol = MQTT5 if settings.protocol == "auto" else settings.protocol
        self._auto = settings.protocol == "auto"
        self._lock = threading.Lock()  # generation and acks
        self._generation = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # SUBACK of this connection's subscriptions
        self._subscribe_mid = -1
        self._paused: frozenset[str] = frozenset()  # subscriptions left for now (`pause`)
        self._stop = threading.Event()
        self._rng = random.Random()
        servers = settings.servers or ((settings.host, settings.port),)
        self._endpoints = Endpoints(servers, settings.server_order)
        self._client = self._make_client()
        self._thread = threading.Thread(target=self._run, name="mqtt-network", daemon=True)
        self.connects = 0  # successful connections so far
        self._downgraded = False  # auto just switched to 3.1.1: reconnect at once
        self.acks_dropped = 0
        self._soon: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._acknowledged: deque[int] = deque()  # PUBACKs of this loop iteration (`_on_publish`)
        self._woken = False  # a wake-up is on its way since the network thread last took `_soon`

    # -- the paho client ---------------------------------------------------------------------------

    def _make_client(self) -> BatchingClient:
        s = self.settings
        pahofast.install()  # MQTT 5 decoding without rebuilding paho's tables per packet
        client = BatchingClient(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=_PAHO_PROTOCOL[self.protocol],
            clean_session=False if self.protocol == MQTT311 else None,
            reconnect_on_failure=False,  # our own loop reconnects, with jitter
            manual_ack=True,
        )
        client.on_socket_open = nodelay
        client.max_inflight_messages_set(MAX_INFLIGHT[self.protocol])
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls is not None:
            client.tls_set_context(s.tls)
        return client

    def _connect_properties(self) -> Properties | None:
        if self.protocol != MQTT5:
            return None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry_s
        return props

    # -- callbacks: network thread, return at once ---------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        with self._lock:
            self._generation += 1
        self.connects += 1
        self._subscribed.clear()
        paused = self._paused
        _, mid = client.subscribe(
            [(topic, 1) for topic in self.settings.subscriptions if topic not in paused]
        )
        self._subscribe_mid = -1 if mid is None else mid
        if paused:  # a persistent session may still hold them
            client.unsubscribe(sorted(paused))
        self._connected.set()
        self.handlers.connected(bool(flags.session_present), self.protocol)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._lock:
            self._generation += 1
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if was_connected:
            self.handlers.disconnected()

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        if mid == self._subscribe_mid:
            refused = [str(c) for c in codes if getattr(c, "is_failure", False) or c == 0x80]
            if refused:
                log.error("the broker refused subscriptions (%s): check the ACL", ", ".join(refused))
            self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.handlers.message(
            Delivery(
                self._generation, message.mid, message.qos, message.topic, bytes(message.payload), time.time()
            )
        )

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._acknowledged.append(mid)  # paho holds its locks here: handed over by `_run_soon`

    # -- what the agent calls (any thread) -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def endpoint(self) -> str:
        """`host:port` of the broker endpoint in use (or tried next)."""
        return format_endpoint(*self._endpoints.current)

    @property
    def generation(self) -> int:
        return self._generation

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Connected and the broker acknowledged the subscriptions (tasks can arrive)."""
        deadline = time.monotonic() + timeout
        return self._connected.wait(timeout) and self._subscribed.wait(max(0.0, deadline - time.monotonic()))

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> int:
        """Queue a publish; returns its mid. QoS 1 survives reconnects in paho's memory."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return int(info.mid)

    def publish_and_wait(self, topic: str, payload: bytes, qos: int, retain: bool, timeout: float) -> bool:
        """Publish and wait for the broker's acknowledgement (presence at a clean stop)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):  # not connected: paho keeps it, but nobody will wait
            return False
        return info.is_published()

    def ack(self, delivery: Delivery) -> bool:
        """Send the PUBACK of `delivery` if its connection is still the current one."""
        if delivery.qos == 0:
            return True
        with self._lock:
            if delivery.generation != self._generation or not self._connected.is_set():
                return False
            self._client.ack(delivery.mid, delivery.qos)
        return True

    # The hot path: work handed to the network thread, which runs it between two loop iterations.
    # One wake-up serves a whole batch, where a paho call from another thread costs a wake-up and
    # a loop iteration each; and the network thread is where the connection generation changes.

    def ack_all(self, deliveries: list[Delivery]) -> None:
        """PUBACKs of a batch, in this order, by the network thread; those of an older connection
        are dropped there (counted in `acks_dropped`)."""
        self._post(lambda: self._ack_now(deliveries))

    def publish_here(self, topic: str, payload: bytes, qos: int) -> int | None:
        """Publish and write it from the calling thread (`BatchingClient.publish_here`), one
        hand-off less than `publish_soon`; returns its mid. None when only the network thread may
        write: with TLS, or while there is no connection (a later client may replace this one)."""
        if self.settings.tls is not None or not self._connected.is_set():
            return None
        return self._client.publish_here(topic, payload, qos)

    def writes_held(self) -> AbstractContextManager[None]:
        """`publish_here` calls of this thread inside are written together at its end."""
        return self._client.writes_held()

    def publish_soon(self, topic: str, payload: bytes, qos: int, on_mid: Callable[[int], None]) -> None:
        """Publish from the network thread; `on_mid(mid)` runs there before any PUBACK of it can."""
        self._post(lambda: on_mid(self.publish(topic, payload, qos)))

    def pause(self, filters: Iterable[str]) -> None:
        """Leave the subscriptions `filters` (UNSUBSCRIBE now and after every connect) and join
        those paused before and not named again: `pause(())` joins them all. A draining agent
        leaves its pools so that their other members take the pool's tasks."""
        paused = frozenset(filters) & frozenset(self.settings.subscriptions)
        left, joined = paused - self._paused, self._paused - paused
        self._paused = paused  # read by _on_connect: a connection made from now on knows it
        self._post(lambda: self._resubscribe(left, joined))

    def _resubscribe(self, left: frozenset[str], joined: frozenset[str]) -> None:
        if not self._connected.is_set():
            return  # _on_connect subscribes to what is not paused then
        if left:
            self._client.unsubscribe(sorted(left))
        if joined:
            self._client.subscribe([(topic, 1) for topic in sorted(joined)])

    def _ack_now(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            if delivery.qos == 0:
                continue
            if delivery.generation != self._generation or not self._connected.is_set():
                self.acks_dropped += 1
                continue
            self._client.ack(delivery.mid, delivery.qos)

    def _post(self, work: Callable[[], None]) -> None:
        """Queue `work` for the network thread and wake it, once per batch: a wake-up already on
        its way since the thread last took the queue (`_run_soon` clears the flag first) serves too."""
        self._soon.put(work)
        if not self._woken:
            self._woken = True
            self._client.wake()

    def _run_soon(self) -> None:
        """Between two loop iterations, outside paho's locks: PUBACKs reported, queued work run."""
        if self._acknowledged:
            self._report_published()
        self._woken = False  # before taking: work queued after this point wakes the thread again
        with self._client.quiet():  # packets queued here are written by the next loop iteration
            while True:
                try:
                    work = self._soon.get_nowait()
                except queue.Empty:
                    return
                try:
                    work()
                except Exception:  # contained: the network thread must go on
                    log.exception("queued MQTT work failed")

    def _report_published(self) -> None:
        acknowledged = self._acknowledged
        mids = [acknowledged.popleft() for _ in range(len(acknowledged))]
        try:
            self.handlers.published(mids)
        except Exception:  # contained: the network thread must go on
            log.exception("handling PUBACKs failed")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """DISCONNECT cleanly (no Will) and end the network thread."""
        self._stop.set()
        if self._connected.is_set():
            self._client.disconnect()
        self._thread.join(timeout)
        if self._thread.is_alive():  # a broker that never answers: close the socket
            self._client.disconnect()
            self._thread.join(timeout)

    def drop(self) -> None:
        """Close the socket without DISCONNECT (tests: the broker publishes the Will)."""
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- the network thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        # paho writes to the socket from the publishing thread unless it believes a network thread
        # of its own exists: with TLS, two threads writing corrupt the stream. Tell it this is that
        # thread, so other threads only queue their packets and wake it (paho's loop_start does this).
        self._client._thread = threading.current_thread()
        failures = 0
        while not self._stop.is_set():
            try:
                accepted = self._session()
            except Exception:  # a bug must not end the network thread: log it and reconnect
                log.exception("MQTT connection failed")
                accepted = False
            failures = 0 if accepted else failures + 1
            if self._stop.is_set():
                break
            if self._downgraded:  # not a failure: the broker answered, in another protocol
                self._downgraded, failures = False, 0
                continue
            self._stop.wait(self._next_endpoint(failures))

    def _next_endpoint(self, failures: int) -> float:
        """Move to the next endpoint; the delay before trying it (`failover_delay`)."""
        if len(self._endpoints) > 1:
            log.info("trying the next broker endpoint, %s", format_endpoint(*self._endpoints.advance()))
        s = self.settings
        return failover_delay(failures, len(self._endpoints), s.reconnect_min_s, s.reconnect_max_s, self._rng)

    def _session(self) -> bool:
        """One connection from CONNECT to its end; True if it was accepted."""
        will = self.handlers.before_connect()
        client = self._client
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        s = self.settings
        options: dict[str, Any] = {}
        if self.protocol == MQTT5:  # 3.1.1: clean_session=False, given to the client
            options = {"clean_start": False, "properties": self._connect_properties()}
        host, port = self._endpoints.current
        try:
            client.connect(host, port, keepalive=s.keepalive_s, **options)
        except (OSError, ssl.SSLError) as exc:
            log.warning("cannot connect to %s: %s", format_endpoint(host, port), exc)
            return False
        if not self._await_connack():
            return False
        # Work queued while there was no connection: its wake-up went to a closed or stale pair,
        # and `_woken` would hold back the next one. Taken now, it leaves with the first loop.
        self._run_soon()
        while client.loop(timeout=1.0) == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._run_soon()
        self._run_soon()  # acks of this connection are dropped, publishes wait in paho for the next
        return True

    def _await_connack(self) -> bool:
        deadline = time.monotonic() + self.settings.connack_timeout_s
        while not self._connected.is_set() and not self._stop.is_set():
            rc = self._client.loop(timeout=0.1)
            if self._connected.is_set():
                break
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
                self._client.disconnect()
                self._client._sock_close()  # the only way to drop a half-open CONNECT
                self._maybe_downgrade()
                return False
        return self._connected.is_set()

    def _maybe_downgrade(self) -> None:
        """auto: a broker that refused or ignored MQTT 5 gets MQTT 3.1.1 from now on."""
        if self._auto and self.protocol == MQTT5 and self.connects == 0:
            log.info("broker did not accept MQTT 5; using MQTT 3.1.1")
            self.protocol = MQTT311
            self._client = self._make_client()
            self._client._thread = threading.current_thread()
            self._downgraded = True
