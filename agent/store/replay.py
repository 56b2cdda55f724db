"""The durable replay cache behind checks 6 and 7 (the `ReplayCache` of agent.protocol).

The protocol library's `MemoryReplayCache` does the claiming; this adds durability. `accept_task`
claims (kid, nonce) and (kid, id) in memory, atomically; the intake then commits the claim's row
(`row_op`) in the same group commit as the task, before the task is acknowledged. After a restart
the rows are claimed again from the store's `replay` table, so a redelivered or replayed task is
recognised across `kill -9`. A claim that was never committed (a crash before the commit) is
simply gone, and so is the task: the broker redelivers it, since it was not acknowledged.

Rows are forgotten once their task has expired (`forget_after` = expires_at + clock skew): a
replay of the same signed bytes fails check 5 from then on. `peek()` is a view that answers like
the cache but claims nothing: the intake runs checks 1-7 through it when the queue is full, so
that a task refused as `overloaded` may be sent again as it is.
"""

from __future__ import annotations

import heapq
import sys
import threading

from ..protocol import MemoryReplayCache, ReplayRecord
from .state import REPLAY
from .store import Op, Store


def row_key(kid: str, nonce: bytes) -> str:
    return f"{kid}\x00{nonce.hex()}"


class DurableReplayCache:
    """Thread-safe: a `MemoryReplayCache` whose rows are in the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._memory = MemoryReplayCache()
        self._lock = threading.Lock()
        self._stored: list[tuple[float, str, bytes]] = []  # (forget_after, kid, nonce) of claims
        for key, row in store.rows(REPLAY):
            record = self._intern(ReplayRecord(*row))
            store.tables[REPLAY][key] = record  # one object for the index and the table
            self._memory.remember(record)
            self._stored.append((record.forget_after, record.kid, record.nonce))
        heapq.heapify(self._stored)

    @staticmethod
    def _intern(record: ReplayRecord) -> ReplayRecord:
        # One kid string per issuer. Built directly: `_replace` costs several times more, and
        # this runs for every accepted task.
        kid, nonce, task_id, body_id, forget_after = record
        return ReplayRecord(sys.intern(kid), nonce, task_id, body_id, forget_after)

    # -- the ReplayCache protocol -------------------------------------------------------------------

    def by_nonce(self, kid: str, nonce: bytes) -> ReplayRecord | None:
        return self._memory.by_nonce(kid, nonce)

    def by_id(self, kid: str, task_id: str) -> ReplayRecord | None:
        return self._memory.by_id(kid, task_id)

    def claim(self, record: ReplayRecord) -> ReplayRecord | None:
        record = self._intern(record)
        seen = self._memory.claim(record)
        if seen is None:
            with self._lock:
                heapq.heappush(self._stored, (record.forget_after, record.kid, record.nonce))
        return seen

    def remember(self, record: ReplayRecord) -> None:
        self._memory.remember(self._intern(record))

    def expire(self, now: float) -> int:
        dropped = self._memory.expire(now)
        gone: list[str] = []
        with self._lock:
            while self._stored and self._stored[0][0] < now:
                _, kid, nonce = heapq.heappop(self._stored)
                if self._memory.by_nonce(kid, nonce) is None:
                    gone.append(row_key(kid, nonce))
        if gone:
            self._store.forget(REPLAY, gone)
        return dropped

    # -- the agent's additions -------------------------------------------------------------------------

    def row_op(self, kid: str, nonce: bytes) -> Op:
        """The row to commit for a claim: the claimed record itself (a tuple is a MessagePack
        array), so the cache and the table share one object."""
        record = self._memory.by_nonce(kid, nonce)
        assert record is not None, "row_op of a record that was not claimed"
        return Op(REPLAY, row_key(kid, nonce), record)

    def peek(self) -> ReplayPeek:
        return ReplayPeek(self)

    def __len__(self) -> int:
        return len(self._memory)


class ReplayPeek:
    """The cache's answers without its memory: `claim` reports what is there and keeps nothing."""

    def __init__(self, cache: DurableReplayCache) -> None:
        self._cache = cache

    def by_nonce(self, kid: str, nonce: bytes) -> ReplayRecord | None:
        return self._cache.by_nonce(kid, nonce)

    def by_id(self, kid: str, task_id: str) -> ReplayRecord | None:
        return self._cache.by_id(kid, task_id)

    def claim(self, record: ReplayRecord) -> ReplayRecord | None:
        return self.by_nonce(record.kid, record.nonce) or self.by_id(record.kid, record.task_id)

    def remember(self, record: ReplayRecord) -> None:
        """A peek remembers nothing."""

    def expire(self, now: float) -> int:
        return 0
