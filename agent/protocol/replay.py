"""The replay cache behind checks 6 and 7 of PROTOCOL 4.

An interface (`ReplayCache`) and an in-memory implementation. The agent backs the same
interface with its durable store, so the cache survives a restart; tests and clients use
`MemoryReplayCache`. A record can be forgotten once its task has expired: a replay of the
same signed bytes would then fail check 5 anyway.

`claim` is the one call acceptance makes: look up and remember in one atomic step, so two
copies of one task verified on two threads cannot both be accepted as new.
"""

from __future__ import annotations

import heapq
import threading
from typing import NamedTuple, Protocol


class ReplayRecord(NamedTuple):
    """What was accepted: enough to tell a redelivery from a replay or an id reuse."""

    kid: str
    nonce: bytes
    task_id: str
    #: Identifies the exact body bytes: the envelope's signature. Ed25519 (RFC 8032) and HMAC
    #: signatures are deterministic and cannot be altered without the key, so one key gives
    #: equal signatures exactly for equal bodies, and no hash of the body is needed.
    body_id: bytes
    forget_after: float  # epoch seconds; the task's expires_at plus a margin (AcceptancePolicy.forget_after)


class ReplayCache(Protocol):
    def by_nonce(self, kid: str, nonce: bytes) -> ReplayRecord | None: ...

    def by_id(self, kid: str, task_id: str) -> ReplayRecord | None: ...

    def claim(self, record: ReplayRecord) -> ReplayRecord | None:
        """Atomically: the record holding `record`'s (kid, nonce), else the one holding its
        (kid, task_id), else remember `record` and return None."""
        ...

    def remember(self, record: ReplayRecord) -> None: ...

    def expire(self, now: float) -> int: ...


class MemoryReplayCache:
    """Thread-safe, bounded by time: `expire(now)` drops records past `forget_after`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nonces: dict[tuple[str, bytes], ReplayRecord] = {}
        self._ids: dict[tuple[str, str], ReplayRecord] = {}
        self._deadlines: list[tuple[float, str, bytes]] = []

    def by_nonce(self, kid: str, nonce: bytes) -> ReplayRecord | None:
        return self._nonces.get((kid, nonce))

    def by_id(self, kid: str, task_id: str) -> ReplayRecord | None:
        return self._ids.get((kid, task_id))

    def claim(self, record: ReplayRecord) -> ReplayRecord | None:
        kid = record.kid
        with self._lock:
            seen = self._nonces.get((kid, record.nonce))
            if seen is None:
                seen = self._ids.get((kid, record.task_id))
                if seen is None:
                    self._store(record)
            return seen

    def remember(self, record: ReplayRecord) -> None:
        with self._lock:
            self._store(record)

    def _store(self, record: ReplayRecord) -> None:
        self._nonces[(record.kid, record.nonce)] = record
        self._ids[(record.kid, record.task_id)] = record
        heapq.heappush(self._deadlines, (record.forget_after, record.kid, record.nonce))

    def expire(self, now: float) -> int:
        dropped = 0
        with self._lock:
            while self._deadlines and self._deadlines[0][0] < now:
                _, kid, nonce = heapq.heappop(self._deadlines)
                record = self._nonces.get((kid, nonce))
                if record is None or record.forget_after >= now:
                    continue
                del self._nonces[(kid, nonce)]
                if self._ids.get((kid, record.task_id)) is record:
                    del self._ids[(kid, record.task_id)]
                dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self._nonces)
