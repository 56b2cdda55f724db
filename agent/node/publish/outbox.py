"""Results until the broker has them: stored first, published QoS 1, forgotten on PUBACK.

A result enters the `outbox` table in the same commit as the task's final record; once that commit
is durable, `send` publishes it and remembers its packet id: on the store's writer thread, which
writes it to the socket itself on a plain connection (`MqttLink.publish_here`), else through the
network thread. The broker's PUBACKs are handed over by the network thread once per loop
iteration, outside paho's locks (`on_pubacks`): each forgets its result (a lazy commit: a lost
deletion means one harmless re-send) and wakes whoever waits for an empty outbox. Within one
process paho re-sends unacknowledged QoS 1 messages after a reconnect; after a restart `restore`
re-publishes every stored result: its stored body signed again with the agent's key, which makes
the same bytes as before (deterministic signatures, `results.SignOnce`) unless the key was changed
in between; then the result carries the new key's signature, which dashboards trust as well.
A stored result too large to publish (stored before sizes were checked, or under a larger
`security.max_payload`) is replaced by its `abandoned` / `result_too_large` answer: it would
otherwise be sent, refused by the broker with the connection, and sent again at every reconnect.
"""

from __future__ import annotations

import logging
import threading
import time

from agent.protocol import AuthenticationError, Limits, open_envelope

from ..link.mqtt import MqttLink
from ..store import OUTBOX, Op, Store
from .signing import Publication, Signing, SignOnce

log = logging.getLogger(__name__)


def outbox_op(key: str, result: SignOnce) -> Op:
    """The stored row of a result: its unsigned body (signed while the commit syncs, and again by
    `restore`). Rows of schema 1 held the signed `payload` instead; `restore` still sends those."""
    return Op(OUTBOX, key, {"topic": result.topic, "body": result.body, "at": time.time()})


def result_rows(key: str, result: SignOnce, reply_topic: str | None = None) -> list[tuple[str, SignOnce]]:
    """The outbox rows of one result: its results topic, and the issuer's replies topic too when
    the task asked for `reply` (PROTOCOL 4). Each row is published and acknowledged on its own, so
    a restart re-sends exactly the copies the broker had not acknowledged."""
    rows = [(key, result)]
    if reply_topic is not None:
        rows.append((f"{key}>reply", result.copy_to(reply_topic)))
    return rows


def outbox_ops(rows: list[tuple[str, SignOnce]]) -> list[Op]:
    """The store operations of `result_rows`."""
    return [outbox_op(key, result) for key, result in rows]


class Outbox:
    def __init__(self, store: Store, link: MqttLink, signing: Signing) -> None:
        self._store = store
        self._link = link
        self._signing = signing
        self._inflight: dict[int, str] = {}  # mid -> outbox key
        self._lock = threading.Lock()  # mids: `send` holds it while paho may be writing the result
        self._idle = threading.Condition()
        self.published = 0
        self.acknowledged = 0

    def restore(self) -> int:
        """Queue every stored result (a restart): same topic, same bytes with the same key."""
        rows = self._store.rows(OUTBOX)
        signing = self._signing
        for key, doc in sorted(rows, key=lambda row: row[1]["at"]):
            if "payload" in doc:  # a schema 1 row: the signed payload
                payload = doc["payload"]
                if len(payload) > signing.max_payload:
                    payload = self._replace_too_large(key, _signed_body(payload))
            elif len(doc["body"]) > signing.max_body:
                payload = self._replace_too_large(key, doc["body"])
            else:
                payload = signing.sign(doc["body"])
            self.send(key, Publication(doc["topic"], payload))
        return len(rows)

    def _replace_too_large(self, key: str, body: bytes) -> bytes:
        """The stored result `key` cannot be published: its `result_too_large` answer instead."""
        replacement = self._signing.too_large(body)
        log.error(
            "stored result %s is too large to publish (body of %d bytes, security.max_payload %d): "
            "published as abandoned, result_too_large",
            key,
            len(body),
            self._signing.max_payload,
        )
        self._store.commit([outbox_op(key, replacement)], sync=False)
        return replacement.publication().payload

    def send(self, key: str, publication: Publication) -> None:
        """Publish a stored result (call only once its commit is durable): from this thread when
        the link allows it, else from the network thread."""
        with self._lock:  # its PUBACK (`on_pubacks`, on the network thread) waits until its mid is known
            mid = self._link.publish_here(publication.topic, publication.payload, 1)
            if mid is not None:
                self._remember(mid, key)
                return
        self._link.publish_soon(publication.topic, publication.payload, 1, lambda mid: self._sent(mid, key))

    def send_rows(self, rows: list[tuple[str, SignOnce]]) -> None:
        """Publish the rows of `result_rows` (once their commit is durable)."""
        for key, result in rows:
            self.send(key, result.publication())

    def _sent(self, mid: int, key: str) -> None:
        """The network thread published it: remembered before its PUBACK can be handled."""
        with self._lock:
            self._remember(mid, key)

    def _remember(self, mid: int, key: str) -> None:
        """(under `_lock`) `mid` is the packet of the result `key`."""
        self._inflight[mid] = key
        self.published += 1

    def on_pubacks(self, mids: list[int]) -> None:
        """PUBACKs (the network thread, outside paho's locks): their results are forgotten."""
        with self._lock:
            keys = [key for key in (self._inflight.pop(mid, None) for mid in mids) if key is not None]
        if not keys:
            return  # presence or other QoS 1 messages of the agent
        self.acknowledged += len(keys)
        self._store.commit([Op(OUTBOX, key, None) for key in keys], sync=False)
        with self._idle:
            self._idle.notify_all()

    @property
    def pending(self) -> int:
        return self._store.count(OUTBOX)

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True


def _signed_body(payload: bytes) -> bytes:
    try:
        return open_envelope(payload, Limits(max_payload=len(payload))).body
    except AuthenticationError:  # not ours to read: the answer names no task
        return b""
