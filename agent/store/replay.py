"""The durable replay cache behind checks 6 and 7 (the `ReplayCache` of agent.protocol).

`accept_task` claims (kid, nonce) and (kid, id) here in memory, atomically; the intake then commits
the claim's row (`row_op`) in the same group commit as the task, before the task is acknowledged.
After a restart `load` rebuilds the indexes from the store's `replay` table, so a redelivered or
replayed task is recognised across `kill -9`. A claim that was never committed (a crash before the
commit) is simply gone, and so is the task: the broker redelivers it, since it was not acknowledged.

Rows are forgotten once their task has expired (`forget_after` = expires_at + clock skew): a replay
of the same signed bytes fails check 5 from then on.
"""

from __future__ import annotations

import heapq
import sys
import threading

from ..protocol import ReplayRecord
from .state import REPLAY
from .store import Op, Store


def row_key(kid: str, nonce: bytes) -> str:
    return f"{kid}\x00{nonce.hex()}"


class DurableReplayCache:
    """Thread-safe; indexes in memory, rows in the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._nonces: dict[tuple[str, bytes], ReplayRecord] = {}
        self._ids: dict[tuple[str, str], ReplayRecord] = {}
        self._deadlines: list[tuple[float, str, bytes]] = []
        for key, row in store.rows(REPLAY):
            record = ReplayRecord(sys.intern(row[0]), *row[1:])
            store.tables[REPLAY][key] = record  # one object for the index and the table
            self._index(record)

    # -- the ReplayCache protocol -------------------------------------------------------------------

    def by_nonce(self, kid: str, nonce: bytes) -> ReplayRecord | None:
        return self._nonces.get((kid, nonce))

    def by_id(self, kid: str, task_id: str) -> ReplayRecord | None:
        return self._ids.get((kid, task_id))

    def claim(self, record: ReplayRecord) -> ReplayRecord | None:
        with self._lock:
            seen = self._nonces.get((record.kid, record.nonce)) or self._ids.get((record.kid, record.task_id))
            if seen is None:
                self._index(record._replace(kid=sys.intern(record.kid)))  # one kid string per issuer
            return seen

    def remember(self, record: ReplayRecord) -> None:
        with self._lock:
            self._index(record)

    def expire(self, now: float) -> int:
        gone: list[str] = []
        with self._lock:
            while self._deadlines and self._deadlines[0][0] < now:
                _, kid, nonce = heapq.heappop(self._deadlines)
                record = self._nonces.get((kid, nonce))
                if record is None or record.forget_after >= now:
                    continue
                del self._nonces[(kid, nonce)]
                if self._ids.get((kid, record.task_id)) is record:
                    del self._ids[(kid, record.task_id)]
                gone.append(row_key(kid, nonce))
        if gone:
            self._store.forget(REPLAY, gone)
        return len(gone)

    # -- the agent's additions -------------------------------------------------------------------------

    def release(self, record: ReplayRecord) -> None:
        """Undo an uncommitted claim (a task refused as `overloaded` may be sent again as it is)."""
        with self._lock:
            if self._nonces.get((record.kid, record.nonce)) == record:
                del self._nonces[(record.kid, record.nonce)]
            if self._ids.get((record.kid, record.task_id)) == record:
                del self._ids[(record.kid, record.task_id)]

    def row_op(self, kid: str, nonce: bytes) -> Op:
        """The row to commit for a claim: the indexed record itself (a tuple is a MessagePack
        array), so the cache and the table share one object."""
        record = self._nonces[(kid, nonce)]
        return Op(REPLAY, row_key(kid, nonce), record)

    def _index(self, record: ReplayRecord) -> None:
        self._nonces[(record.kid, record.nonce)] = record
        self._ids[(record.kid, record.task_id)] = record
        heapq.heappush(self._deadlines, (record.forget_after, record.kid, record.nonce))

    def __len__(self) -> int:
        return len(self._nonces)
