"""amqtt's per-connection protocol handler, with the QoS flows that lose messages replaced.

Stock `ProtocolHandler` runs every outgoing QoS 1/2 message as a task that waits at most 5 s
(hard-coded) for its PUBACK/PUBREC/PUBCOMP and then forgets the message; one still waiting
when the client disconnects is forgotten too. Incoming QoS 1 is acknowledged before the
broker has even looked at the message. This subclass keeps amqtt's packet reader, writer,
keepalive and connection lifecycle, and replaces exactly those flows:

* FIX-OUTBOUND-ACKS: outgoing acknowledgements are handed to the session's `Outbox`
  (broker/outbox.py), which owns in-flight state, has no timer, and resends with DUP on
  reconnect [MQTT-4.4.0-1]. `_retry_deliveries` (stock resend, awaited inside `start()`, with
  a 10 s cap) becomes a no-op because the outbox does it.
* FIX-INBOUND-ACK-AFTER-ACCEPT: an incoming PUBLISH goes to the broker's `publish_sink`,
  which routes it (and journals it when persistence is on); PUBACK / PUBREC is sent only when
  the future it returns is done, in receive order. QoS 2 uses the spec's method B with the
  packet id kept until PUBREL, so a re-sent QoS 2 PUBLISH is never routed twice.
* FIX-PUBREL-UNKNOWN: PUBREL is always answered with PUBCOMP, also for a packet id the broker
  no longer knows (after a restart), so the client's QoS 2 flow can complete [MQTT-4.3.3].
* FIX-KEEPALIVE: stock only logs a read timeout; here a client silent for 1.5x its keepalive
  is disconnected (and its Last Will published) [MQTT-3.1.2-24].
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.pubrec import PubrecPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.session import IncomingApplicationMessage, Session

log = logging.getLogger("broker.handler")


class ClientViolation(Exception):
    """What a client sent breaks the protocol badly enough that its connection is closed."""


class PublishSink(Protocol):
    """The broker's entry point for a PUBLISH; the returned future says it was taken."""

    def __call__(
        self, session: Session, topic: str, payload: bytes, qos: int, retain: bool
    ) -> asyncio.Future[None] | None: ...


class AckSink(Protocol):
    """Where outgoing-flow acknowledgements go: the session's outbox."""

    def on_puback(self, packet_id: int) -> None: ...

    def on_pubrec(self, packet_id: int) -> bool: ...

    def on_pubcomp(self, packet_id: int) -> None: ...


class EdgeProtocolHandler(BrokerProtocolHandler):  # type: ignore[misc]  # amqtt ships no type information
    """One client connection; see the module docstring for what differs from amqtt."""

    publish_sink: PublishSink | None = None
    acks: AckSink | None = None

    # -- outgoing -------------------------------------------------------------------------------

    async def send_publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, packet_id: int | None, dup: bool
    ) -> None:
        await self._send_packet(PublishPacket.build(topic, payload, packet_id, dup, qos, retain))

    async def send_pubrel(self, packet_id: int) -> None:
        await self._send_packet(PubrelPacket.build(packet_id))

    async def _retry_deliveries(self) -> None:
        """FIX-OUTBOUND-ACKS: the outbox resends in-flight messages once CONNACK is out."""

    async def handle_puback(self, puback: PubackPacket) -> None:
        if self.acks is not None:
            self.acks.on_puback(puback.packet_id)

    async def handle_pubrec(self, pubrec: PubrecPacket) -> None:
        if self.acks is not None and self.acks.on_pubrec(pubrec.packet_id):
            await self.send_pubrel(pubrec.packet_id)

    async def handle_pubcomp(self, pubcomp: PubcompPacket) -> None:
        if self.acks is not None:
            self.acks.on_pubcomp(pubcomp.packet_id)

    # -- incoming -------------------------------------------------------------------------------

    async def handle_publish(self, publish_packet: PublishPacket) -> None:
        session = self.session
        topic = publish_packet.topic_name
        if session is None or topic is None:
            return
        qos = publish_packet.qos or 0
        packet_id = publish_packet.packet_id
        payload = bytes(publish_packet.data or b"")
        retain = bool(publish_packet.retain_flag)
        try:
            if qos == 0:
                self._route(session, topic, payload, 0, retain)
            elif qos == 1 and packet_id is not None:
                await self._accepted(self._route(session, topic, payload, 1, retain))
                await self._send_packet(PubackPacket.build(packet_id))
            elif qos == 2 and packet_id is not None:
                if packet_id not in session.inflight_in:  # a re-sent PUBLISH is acknowledged, not routed
                    session.inflight_in[packet_id] = IncomingApplicationMessage(
                        packet_id, topic, 2, payload, retain
                    )
                    await self._accepted(self._route(session, topic, payload, 2, retain))
                await self._send_packet(PubrecPacket.build(packet_id))
            else:
                raise ClientViolation(f"PUBLISH with QoS {qos} or without a packet id")
        except ClientViolation as exc:
            log.warning("closing %s: %s", session.client_id, exc)
            self.abort()

    def _route(
        self, session: Session, topic: str, payload: bytes, qos: int, retain: bool
    ) -> asyncio.Future[None] | None:
        if self.publish_sink is None:
            return None
        return self.publish_sink(session, topic, payload, qos, retain)

    @staticmethod
    async def _accepted(future: asyncio.Future[None] | None) -> None:
        if future is not None:
            await future

    async def handle_pubrel(self, pubrel: PubrelPacket) -> None:
        if self.session is not None:
            self.session.inflight_in.pop(pubrel.packet_id, None)
        await self._send_packet(PubcompPacket.build(pubrel.packet_id))

    # -- connection -----------------------------------------------------------------------------

    def handle_read_timeout(self) -> None:
        """FIX-KEEPALIVE: nothing heard for 1.5x keepalive: drop the connection (the Will follows)."""
        client = self.session.client_id if self.session else None
        log.info("keepalive expired for %s: closing its connection", client)
        self.abort()

    def abort(self) -> None:
        """Close the connection from inside the handler; the broker sees an abnormal disconnect."""
        task = self._reader_task
        if task is not None and not task.done():
            task.cancel()
