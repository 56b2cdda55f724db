"""One client's outgoing messages: a bounded queue, an in-flight window, redelivery with DUP.

Replaces amqtt's delivery for a session (FIX-OUTBOUND-ACKS, FIX-OFFLINE-QUEUE): amqtt sends
every message as its own task that forgets it after 5 s without PUBACK, and queues messages for
an offline client without bound, in memory, re-flagged as retained. Here:

* at most `max_inflight` QoS 1/2 messages are unacknowledged at a time; the rest wait in the
  queue, which holds at most `max_queued` messages and `max_queued_bytes` bytes of topic and
  payload (0: no bound); past either a message is refused, counted (`dropped`) and reported by
  the caller;
* an in-flight message stays in flight until its PUBACK (QoS 1) or PUBCOMP (QoS 2), however long
  that takes; on every (re)connect the in-flight messages are sent again first, with DUP set,
  under the same packet id (or PUBREL if PUBREC had arrived) [MQTT-4.4.0-1], in order;
* every message keeps its own retain flag (0 for live traffic [MQTT-3.3.1-9], 1 for a retained
  message sent because of a new subscription).

Messages are written synchronously, in queue order, when they are queued or when an
acknowledgement frees the window; only a slow reader (its socket's send buffer full) makes the
outbox wait, in a task, for the socket to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .handler import EdgeProtocolHandler

log = logging.getLogger("broker.outbox")


@dataclass(slots=True)
class Delivery:
    """One message on its way to one client."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    seq: int = 0  # its record in the store when journaled (persistent session, QoS > 0), else 0
    packet_id: int = 0
    released: bool = False  # QoS 2: PUBREC received and PUBREL sent

    @property
    def size(self) -> int:
        """What the message costs a queue: its topic and payload bytes (limits.max_queued_bytes)."""
        return len(self.topic.encode("utf-8", "surrogatepass")) + len(self.payload)


class Outbox:
    """Delivery state of one client id; outlives connections of a persistent session."""

    def __init__(
        self,
        client_id: str,
        *,
        persistent: bool,
        username: str | None,
        max_queued: int,
        max_inflight: int,
        on_done: Callable[[Outbox, Delivery], None],
        max_queued_bytes: int = 0,
    ) -> None:
        self.client_id = client_id
        self.persistent = persistent
        self.username = username
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.max_inflight = max_inflight
        self.queue: deque[Delivery] = deque()
        self.queued_bytes = 0  # topic and payload bytes of `queue`
        self.inflight: dict[int, Delivery] = {}
        self.dropped = 0
        self.delivered = 0
        self._on_done = on_done
        self._handler: EdgeProtocolHandler | None = None
        self._waiter: asyncio.Task[None] | None = None  # waiting for a slow reader's socket to drain
        self._last_id = 0

    @property
    def connected(self) -> bool:
        return self._handler is not None

    def __len__(self) -> int:
        return len(self.queue) + len(self.inflight)

    # -- filling ----------------------------------------------------------------------------------

    def offer(self, delivery: Delivery) -> str | None:
        """Queue a message (and send it at once if the window allows). Returns None when it was
        queued, else the bound that refused it: `max_queued_messages` or `max_queued_bytes`."""
        if self.max_queued and len(self.queue) >= self.max_queued:
            self.dropped += 1
            return "max_queued_messages"
        size = delivery.size
        if self.max_queued_bytes and self.queued_bytes + size > self.max_queued_bytes:
            self.dropped += 1
            return "max_queued_bytes"
        self.queue.append(delivery)
        self.queued_bytes += size
        if self._handler is not None:
            self._pump()
        return None

    def restore(self, delivery: Delivery) -> None:
        """Put back a message the store kept (at start, before any connection), bounds aside:
        it was accepted under them, or under the bounds of an earlier configuration."""
        self.queue.append(delivery)
        self.queued_bytes += delivery.size

    def clear(self) -> list[Delivery]:
        """Forget everything (clean session ended, session deleted); returns what was held."""
        held = [*self.inflight.values(), *self.queue]
        self.inflight.clear()
        self.queue.clear()
        self.queued_bytes = 0
        return held

    # -- connection -------------------------------------------------------------------------------

    def attach(self, handler: EdgeProtocolHandler) -> None:
        """A connection is up (CONNACK sent): resend what is in flight, then drain the queue."""
        self.detach()
        self._handler = handler
        handler.acks = self
        for delivery in list(self.inflight.values()):
            if delivery.released:
                handler.write_pubrel(delivery.packet_id)
            else:
                self._write(handler, delivery, dup=True)
        self._pump()

    def detach(self) -> None:
        """The connection is gone: stop writing; in-flight messages wait for the next one."""
        if self._waiter is not None:
            self._waiter.cancel()
            self._waiter = None
        if self._handler is not None and self._handler.acks is self:
            self._handler.acks = None
        self._handler = None

    def _pump(self) -> None:
        """Send queued messages while the window has room and the socket takes them."""
        handler = self._handler
        if handler is None or self._waiter is not None:
            return
        while self.queue and len(self.inflight) < self.max_inflight:
            if handler.write_blocked():  # a slow reader: wait until its socket drains
                self._waiter = asyncio.create_task(self._when_writable(handler))
                self._waiter.add_done_callback(_retrieve)
                return
            delivery = self.queue.popleft()
            self.queued_bytes -= delivery.size
            if delivery.qos:
                delivery.packet_id = self._next_packet_id()
                self.inflight[delivery.packet_id] = delivery
            else:
                self.delivered += 1
            self._write(handler, delivery, dup=False)

    async def _when_writable(self, handler: EdgeProtocolHandler) -> None:
        await handler.drain()
        self._waiter = None
        self._pump()

    @staticmethod
    def _write(handler: EdgeProtocolHandler, delivery: Delivery, *, dup: bool) -> None:
        packet_id = delivery.packet_id if delivery.qos else None
        handler.write_publish(delivery.topic, delivery.payload, delivery.qos, delivery.retain, packet_id, dup)

    def _next_packet_id(self) -> int:
        candidate = self._last_id
        for _ in range(65535):
            candidate = candidate % 65535 + 1
            if candidate not in self.inflight:
                self._last_id = candidate
                return candidate
        raise RuntimeError("no free packet id: 65535 messages in flight")  # max_inflight <= 65535

    # -- acknowledgements (AckSink) -------------------------------------------------------------

    def on_puback(self, packet_id: int) -> None:
        self._complete(packet_id, expected_qos=1)

    def on_pubrec(self, packet_id: int) -> bool:
        delivery = self.inflight.get(packet_id)
        if delivery is None or delivery.qos != 2:
            log.debug("%s: PUBREC for unknown packet id %d", self.client_id, packet_id)
            return False
        delivery.released = True
        return True

    def on_pubcomp(self, packet_id: int) -> None:
        self._complete(packet_id, expected_qos=2)

    def _complete(self, packet_id: int, expected_qos: int) -> None:
        delivery = self.inflight.get(packet_id)
        if delivery is None or delivery.qos != expected_qos:
            log.debug("%s: acknowledgement for unknown packet id %d", self.client_id, packet_id)
            return
        del self.inflight[packet_id]
        self.delivered += 1
        self._on_done(self, delivery)
        if self.queue:
            self._pump()


def _retrieve(task: asyncio.Task[None]) -> None:
    """A drain wait ends by cancellation or because the connection broke; neither is news."""
    with contextlib.suppress(asyncio.CancelledError):
        exc = task.exception()
        if exc is not None:
            log.debug("outbox pump ended: %r", exc)
