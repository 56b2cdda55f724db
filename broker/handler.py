"""amqtt's per-connection protocol handler, with the packet hot path and the QoS flows replaced.

amqtt keeps, per connection: the session, the attach/start/stop life cycle, CONNACK, SUBACK and
UNSUBACK, and the queues through which SUBSCRIBE, UNSUBSCRIBE and DISCONNECT reach the broker's
client loop. Replaced here, each for a fault of NOTES.md or of the benchmark:

* FIX-HOT-PATH (`_reader_loop`): stock amqtt reads a packet in five to ten awaits, wraps every
  read in `asyncio.wait_for` (a task and a timer per packet, for the keepalive), runs every
  packet in a task of its own and builds packet objects for every PUBACK; together some 600
  Python calls per routed QoS 1 message. Here a packet is read whole (its size checked before
  its body is read: FIX-PACKET-LIMIT), PUBLISH and the acknowledgements are decoded and
  encoded inline, and the keepalive is a single timer; SUBSCRIBE, UNSUBSCRIBE and DISCONNECT
  still go through amqtt's packet classes and handlers. A malformed packet closes the
  connection instead of desynchronising it (stock amqtt drops a bad PUBLISH header and reads
  its payload as the next packets).
* FIX-OUTBOUND-ACKS: PUBACK, PUBREC and PUBCOMP from the client go to the session's `Outbox`
  (broker/outbox.py), which owns in-flight messages with no timer (stock amqtt forgot a message
  5 s after sending it, or when the client disconnected) and resends with DUP on reconnect.
  `_retry_deliveries` (stock resend, awaited inside `start()`) is therefore a no-op.
* FIX-INBOUND-ACK-AFTER-ACCEPT: an incoming PUBLISH goes to the broker's `publish_sink`, which
  routes it (and journals it when persistence is on); its PUBACK / PUBREC leaves only when the
  `Acceptance` returned is done (the message durable, or delivered to every persistent
  subscriber), and acknowledgements always leave in receive order [MQTT-4.6.0-2].
  QoS 2 uses the spec's method B with the packet id kept until PUBREL, so a re-sent QoS 2
  PUBLISH is acknowledged again but never routed twice.
* FIX-PUBREL-UNKNOWN: PUBREL is always answered with PUBCOMP, also for a packet id the broker no
  longer knows (after a restart), so the client's QoS 2 flow can complete.
* FIX-KEEPALIVE: stock amqtt only logs a read timeout; here a client silent for 1.5 times its
  keepalive is disconnected, which publishes its Will [MQTT-3.1.2-24].
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from amqtt.adapters import BufferReader
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.packet import MQTTFixedHeader
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.subscribe import SubscribePacket
from amqtt.mqtt.unsubscribe import UnsubscribePacket
from amqtt.session import IncomingApplicationMessage, Session

from .transport import read_packet

log = logging.getLogger("broker.handler")

CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 3, 4, 5, 6, 7
SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT = 8, 10, 12, 14
PINGRESP = b"\xd0\x00"


class ClientViolation(Exception):
    """What a client sent breaks the protocol badly enough that its connection is closed."""


class Acceptance(Protocol):
    """Says when a PUBLISH was taken (routed, and durable or delivered): an asyncio future, or
    the store's `Group`, whose callbacks run at once."""

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def exception(self) -> BaseException | None: ...

    def add_done_callback(self, callback: Callable[[Any], object], /) -> None: ...


class PublishSink(Protocol):
    """The broker's entry point for a PUBLISH; the acceptance returned says it was taken."""

    def __call__(
        self, session: Session, topic: str, payload: bytes, qos: int, retain: bool
    ) -> Acceptance | None: ...


class AckSink(Protocol):
    """Where outgoing-flow acknowledgements go: the session's outbox."""

    def on_puback(self, packet_id: int) -> None: ...

    def on_pubrec(self, packet_id: int) -> bool: ...

    def on_pubcomp(self, packet_id: int) -> None: ...


def _id_packet(kind: int, packet_id: int, flags: int = 0) -> bytes:
    return bytes(((kind << 4) | flags, 2)) + packet_id.to_bytes(2, "big")


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


class EdgeProtocolHandler(BrokerProtocolHandler):  # type: ignore[misc]  # amqtt ships no type information
    """One client connection; see the module docstring for what differs from amqtt."""

    publish_sink: PublishSink | None = None
    acks: AckSink | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending_acks: deque[tuple[Acceptance | None, bytes]] = deque()
        self._last_heard = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    # -- outgoing ---------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.writer is not None:
            self.writer.write(data)

    def write_publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, packet_id: int | None, dup: bool
    ) -> None:
        name = topic.encode("utf-8")
        variable = len(name).to_bytes(2, "big") + name
        if qos:
            variable += (packet_id or 0).to_bytes(2, "big")
        first = 0x30 | (8 if dup else 0) | (qos << 1) | (1 if retain else 0)
        self.write(bytes((first,)) + _remaining_length(len(variable) + len(payload)) + variable + payload)

    def write_pubrel(self, packet_id: int) -> None:
        self.write(_id_packet(PUBREL, packet_id, 2))

    def write_blocked(self) -> bool:
        """True while the socket's send buffer is over its high-water mark (a slow reader)."""
        blocked = getattr(self.writer, "blocked", None)
        return bool(blocked()) if blocked is not None else False

    async def drain(self) -> None:
        if self.writer is not None:
            await self.writer.drain()

    async def _retry_deliveries(self) -> None:
        """FIX-OUTBOUND-ACKS: the outbox resends in-flight messages once CONNACK is out."""

    # -- the reader -------------------------------------------------------------------------------

    async def _reader_loop(self) -> None:
        """FIX-HOT-PATH: read whole packets, handle the frequent ones inline."""
        if self._reader_ready is not None:
            self._reader_ready.set()
        self._last_heard = self._loop.time()
        self._arm_watchdog()
        try:
            while self.reader is not None:
                first, body = await read_packet(self.reader)
                self._last_heard = self._loop.time()
                if not await self._dispatch(first >> 4, first & 0x0F, body):
                    break
        except asyncio.CancelledError:
            pass
        except (asyncio.IncompleteReadError, ConnectionError, EOFError):
            pass  # the client went away
        except Exception as exc:  # a malformed or oversized packet: that connection ends
            client = self.session.client_id if self.session else None
            log.info("closing %s: %s", client, exc)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
        await self.handle_connection_closed()
        self._reader_stopped.set()
        await self.stop()

    async def _dispatch(self, kind: int, flags: int, body: bytes) -> bool:
        """Handle one packet; False ends the connection."""
        if kind == PUBLISH:
            self._on_publish(flags, body)
        elif kind in (PUBACK, PUBREC, PUBCOMP, PUBREL):
            self._on_ack(kind, flags, body)
        elif kind == PINGREQ:
            self.write(PINGRESP)
        elif kind == SUBSCRIBE and flags == 2:
            packet = await SubscribePacket.from_stream(
                BufferReader(body), MQTTFixedHeader(kind, flags, len(body))
            )
            if not packet.payload or not packet.payload.topics:
                raise ClientViolation("SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
            await self.handle_subscribe(packet)
        elif kind == UNSUBSCRIBE and flags == 2:
            packet = await UnsubscribePacket.from_stream(
                BufferReader(body), MQTTFixedHeader(kind, flags, len(body))
            )
            await self.handle_unsubscribe(packet)
        elif kind == DISCONNECT:
            await self.handle_disconnect(DisconnectPacket())
            return False
        else:
            raise ClientViolation(f"unexpected packet type {kind} with flags {flags:#x}")
        return True

    def _on_publish(self, flags: int, body: bytes) -> None:
        session = self.session
        qos = (flags >> 1) & 3
        length = int.from_bytes(body[:2], "big")
        if qos == 3 or len(body) < 2 + length + (2 if qos else 0):
            raise ClientViolation("malformed PUBLISH")
        topic = body[2 : 2 + length].decode("utf-8")
        offset = 2 + length
        packet_id = 0
        if qos:
            packet_id = int.from_bytes(body[offset : offset + 2], "big")
            offset += 2
            if not packet_id:
                raise ClientViolation("PUBLISH with packet id 0 [MQTT-2.3.1-1]")
        payload = body[offset:]
        retain = bool(flags & 1)
        if qos == 0:
            self._route(session, topic, payload, 0, retain)
        elif qos == 1:
            self._ack_in_order(self._route(session, topic, payload, 1, retain), _id_packet(PUBACK, packet_id))
        elif packet_id in session.inflight_in:  # a re-sent QoS 2 PUBLISH: acknowledged, not routed
            self._ack_in_order(None, _id_packet(PUBREC, packet_id))
        else:
            session.inflight_in[packet_id] = IncomingApplicationMessage(packet_id, topic, 2, payload, retain)
            self._ack_in_order(self._route(session, topic, payload, 2, retain), _id_packet(PUBREC, packet_id))

    def _route(
        self, session: Session, topic: str, payload: bytes, qos: int, retain: bool
    ) -> Acceptance | None:
        if self.publish_sink is None:
            return None
        return self.publish_sink(session, topic, payload, qos, retain)

    def _on_ack(self, kind: int, flags: int, body: bytes) -> None:
        if len(body) != 2 or flags != (2 if kind == PUBREL else 0):
            raise ClientViolation(f"malformed acknowledgement (type {kind})")
        packet_id = int.from_bytes(body, "big")
        acks = self.acks
        if kind == PUBREL:  # FIX-PUBREL-UNKNOWN: always completed
            if self.session is not None:
                self.session.inflight_in.pop(packet_id, None)
            self._ack_in_order(None, _id_packet(PUBCOMP, packet_id))
        elif acks is None:
            return
        elif kind == PUBACK:
            acks.on_puback(packet_id)
        elif kind == PUBREC:
            if acks.on_pubrec(packet_id):
                self.write_pubrel(packet_id)
        else:
            acks.on_pubcomp(packet_id)

    # -- acknowledgements to the client, in order -------------------------------------------------

    def _ack_in_order(self, accepted: Acceptance | None, packet: bytes) -> None:
        if accepted is None and not self._pending_acks:
            self.write(packet)
            return
        self._pending_acks.append((accepted, packet))
        if accepted is not None and not accepted.done():
            accepted.add_done_callback(self._flush_acks)
        self._flush_acks()

    def _flush_acks(self, _done: object = None) -> None:
        pending = self._pending_acks
        while pending:
            accepted, packet = pending[0]
            if accepted is not None:
                if not accepted.done():
                    return
                if accepted.cancelled() or accepted.exception() is not None:
                    log.warning("not acknowledging: the store could not keep the message; closing")
                    pending.clear()
                    self.abort()
                    return
            pending.popleft()
            self.write(packet)

    # -- keepalive --------------------------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        timeout = self.session.keep_alive if self.session is not None else 0
        if timeout > 0:
            self._watchdog = self._loop.call_later(timeout, self._check_keepalive, timeout)

    def _check_keepalive(self, timeout: float) -> None:
        silent = self._loop.time() - self._last_heard
        if silent < timeout:
            self._watchdog = self._loop.call_later(timeout - silent, self._check_keepalive, timeout)
            return
        client = self.session.client_id if self.session else None
        log.info("keepalive expired for %s (silent for %.1f s): closing its connection", client, silent)
        self.abort()

    def abort(self) -> None:
        """Close the connection from inside the handler; the broker sees an abnormal disconnect."""
        task = self._reader_task
        if task is not None and not task.done():
            task.cancel()
