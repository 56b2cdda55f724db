"""From one PUBLISH to the outboxes of its subscribers: QoS, receive ACL, retained, journal.

Replaces amqtt's broadcast loop (`Broker._run_broadcast`) and retained-message delivery:

* FIX-MIN-QOS: a message is delivered at min(publish QoS, granted QoS) [MQTT-3.8.4-6]; stock
  amqtt delivered at the subscription's QoS. A client with overlapping subscriptions gets one
  copy at the highest of their QoS [MQTT-3.3.5-1].
* FIX-RETAINED-ACL: retained messages go only to the client that subscribed, only for the
  filter it subscribed with, and only where the receive ACL allows (stock amqtt sent, on every
  connect, the retained messages matching *every* client's subscriptions, unchecked).
* Shared subscriptions (`$share/{group}/{filter}`; amqtt had none): each message goes to one
  member of each matching group, round robin among members connected with room in their
  window, else connected, else a persistent member's queue.
* FIX-OFFLINE-QUEUE: QoS 1/2 messages for a disconnected persistent session are queued in its
  bounded outbox (journaled when persistence is on) with their own retain flag; a refusal at
  the bound is counted and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .config import LimitSettings
from .limits import LimitEvents
from .outbox import Delivery, Outbox
from .records import StoreState
from .retained import RetainedMessages
from .store import MemoryStore
from .subscriptions import SharedKey, SubscriptionIndex
from .topicfilter import parse_shared

log = logging.getLogger("broker.router")

#: `(username, topic, action)` -> allowed; action is "publish", "subscribe" or "receive".
AclCheck = Callable[[str | None, str, str], bool]


@dataclass
class RouterStats:
    received: int = 0
    routed: int = 0
    refused_publish: int = 0


class Router:
    """Subscriptions, outboxes and retained messages of one broker; a bound it hits is
    reported to `events` (broker/limits.py)."""

    def __init__(
        self,
        limits: LimitSettings,
        store: MemoryStore,
        acl: AclCheck | None = None,
        events: LimitEvents | None = None,
    ) -> None:
        self.limits = limits
        self.store = store
        self.acl = acl
        self.events = events or LimitEvents()
        self.index = SubscriptionIndex()
        self.outboxes: dict[str, Outbox] = {}
        self.retained = RetainedMessages(limits, store, self.events)
        self.stats = RouterStats()
        self._share_next: dict[SharedKey, int] = {}

    def allowed(self, username: str | None, topic: str, action: str) -> bool:
        return self.acl is None or self.acl(username, topic, action)

    # -- sessions ---------------------------------------------------------------------------------

    def outbox(self, client_id: str, *, persistent: bool, username: str | None) -> Outbox:
        """The outbox of `client_id`, created if needed; a persistent one is recorded in the store."""
        outbox = self.outboxes.get(client_id)
        if outbox is None or outbox.persistent != persistent:
            outbox = Outbox(
                client_id,
                persistent=persistent,
                username=username,
                max_queued=self.limits.max_queued_messages,
                max_queued_bytes=self.limits.max_queued_bytes,
                max_inflight=self.limits.max_inflight_messages,
                on_done=self._done,
            )
            self.outboxes[client_id] = outbox
        outbox.username = username
        if persistent:
            self.store.session_opened(client_id, username)
        return outbox

    def forget(self, client_id: str) -> None:
        """Drop a session's outbox and subscriptions (clean session ended, or expired/replaced)."""
        outbox = self.outboxes.pop(client_id, None)
        if outbox is not None:
            outbox.detach()
            outbox.clear()
            if outbox.persistent:
                self.store.session_deleted(client_id)
        self.index.remove_client(client_id)
        self.events.forget(client_id)

    def _done(self, outbox: Outbox, delivery: Delivery) -> None:
        if delivery.seq:
            self.store.done(outbox.client_id, delivery.seq)

    # -- subscriptions ----------------------------------------------------------------------------

    def subscribe(self, client_id: str, topic_filter: str, qos: int) -> None:
        self.index.add(client_id, topic_filter, qos)
        outbox = self.outboxes.get(client_id)
        if outbox is not None and outbox.persistent:
            self.store.subscribed(client_id, topic_filter, qos)

    def unsubscribe(self, client_id: str, topic_filter: str) -> bool:
        removed = self.index.remove(client_id, topic_filter)
        outbox = self.outboxes.get(client_id)
        if removed and outbox is not None and outbox.persistent:
            self.store.unsubscribed(client_id, topic_filter)
        return removed

    # -- messages ---------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Route one message to every subscriber allowed to receive it; keep it if retained."""
        self.stats.received += 1
        if retain:
            self.retained.set(topic, payload, qos)
        seq = 0
        for client_id, granted in self.index.match(topic).items():
            outbox = self.outboxes.get(client_id)
            if outbox is None:
                continue
            seq = self._offer(outbox, Delivery(topic, payload, min(qos, granted)), seq)
        for key, members in self.index.match_shared(topic):
            chosen = self._pick_member(key, members, topic, qos)
            if chosen is not None:
                seq = self._offer(chosen, Delivery(topic, payload, min(qos, members[chosen.client_id])), seq)

    def _pick_member(self, key: SharedKey, members: dict[str, int], topic: str, qos: int) -> Outbox | None:
        """One member of a shared group for this message (see the module docstring), or None."""
        names = sorted(members)
        start = self._share_next.get(key, 0) % len(names)
        best: Outbox | None = None
        best_rank = 3
        for name in names[start:] + names[:start]:
            outbox = self.outboxes.get(name)
            if outbox is None or not self.allowed(outbox.username, topic, "receive"):
                continue
            if outbox.connected:
                rank = 0 if len(outbox.inflight) < outbox.max_inflight and not outbox.queue else 1
            else:
                rank = 2 if outbox.persistent and min(qos, members[name]) > 0 else 3
            if rank < best_rank:
                best, best_rank = outbox, rank
                if rank == 0:
                    break
        if best is not None:
            self._share_next[key] = names.index(best.client_id) + 1
        return best if best_rank < 3 else None

    def send_retained(self, client_id: str, topic_filter: str, granted: int) -> int:
        """After a SUBACK: the retained messages matching the new subscription [MQTT-3.3.1-6]
        (none for a shared subscription, as in MQTT 5 section 4.8.2)."""
        outbox = self.outboxes.get(client_id)
        if outbox is None or parse_shared(topic_filter) is not None:
            return 0
        sent = 0
        for topic, (payload, qos) in self.retained.matching(topic_filter):
            self._offer(outbox, Delivery(topic, payload, min(qos, granted), retain=True), 0)
            sent += 1
        return sent

    def _offer(self, outbox: Outbox, delivery: Delivery, seq: int) -> int:
        """Queue one delivery if the client may have it; returns the message's store sequence."""
        if not self.allowed(outbox.username, delivery.topic, "receive"):
            return seq
        durable = outbox.persistent and delivery.qos > 0
        if not outbox.connected and not durable:
            return seq  # QoS 0, or a clean session that is gone: nothing to keep [MQTT-3.1.2-5]
        bound = outbox.offer(delivery)
        if bound is not None:
            self.events.queue_full(outbox, bound, delivery)
            return seq
        self.stats.routed += 1
        if durable:
            if not seq:
                seq = self.store.message(delivery.topic, delivery.payload)
            delivery.seq = seq
            sent = delivery.packet_id > 0  # not queued behind the window: its PUBACK may come soon
            self.store.queued(outbox.client_id, seq, delivery.qos, delivery.retain, sent=sent)
        return seq

    # -- restart ----------------------------------------------------------------------------------

    def restore(self, store_state: StoreState) -> int:
        """Refill retained messages, persistent sessions, subscriptions and queues from the store."""
        self.retained.restore(store_state.retained)
        for client_id, record in store_state.sessions.items():
            outbox = self.outbox(client_id, persistent=True, username=record.username)
            for topic_filter, qos in record.subscriptions.items():
                self.index.add(client_id, topic_filter, qos)
            for seq, (qos, retain) in record.pending.items():
                topic, payload = store_state.messages[seq]
                outbox.restore(Delivery(topic, payload, qos, retain, seq=seq))
        return len(store_state.sessions)
