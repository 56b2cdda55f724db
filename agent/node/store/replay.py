"""The durable replay cache behind checks 6 and 7 (the `ReplayCache` of agent.protocol).

The protocol library's `MemoryReplayCache` does the claiming; this adds durability. `accept_task`
claims (kid, nonce) and (kid, id) in memory, atomically; the intake then commits the claim's row
(`row_op`) in the same group commit as the task, before the task is acknowledged. After a restart
the rows are claimed again from the store's `replay` table, so a redelivered or replayed task is
recognised across `kill -9`. A claim that was never committed (a crash before the commit) is
simply gone, and so is the task: the broker redelivers it, since it was not acknowledged.
`peek()` is a view that answers like the cache but claims nothing: the intake runs checks 1-7
through it when the queue is full, so that a task refused as `overloaded` may be sent again as it is.

When a row may be forgotten, with a clock that jumps (boards without a real-time clock)
----------------------------------------------------------------------------------------
A row exists to refuse the task it records. Forgetting it is sound only if check 5 will refuse that
task at every clock reading the agent may have later: the task passes check 5 at a reading t when
issued_at - skew <= t < expires_at. The old rule forgot a row once the wall clock passed
expires_at + skew. A forward jump (a wrong NTP answer, a GPS week rollover) made every row look
expired, the rows were forgotten and compacted away, and once the clock was corrected, every
captured task still within its lifetime could be replayed. The wall clock can go back by any
amount, so no reading of it alone can justify forgetting anything.

The rule here: the cache keeps a **floor**, a time the real clock cannot be below, made from what
cannot jump:
- every task that passes checks 1-5 proves, by its signed `issued_at`, that the real time is at
  least `issued_at - skew` (its issuer holds a trusted key, and check 5 bounds how far ahead of the
  agent's clock that may be, so the floor never passes the highest time the agent acted on);
- between two such tasks the floor advances with the monotonic clock, which never jumps (it stops
  during a suspend: the floor then lags, which only keeps rows longer).
Then:
1. A row is forgotten only when its task's `expires_at` is below both the wall clock and the floor
   (the intake claims with `forget_after` = expires_at: `AcceptancePolicy(replay_margin_s=0)`;
   rows written by older agents hold expires_at + skew and are kept one skew longer). A forward
   jump of the wall clock does not move the floor, so it forgets nothing early.
2. Check 5 runs at max(wall clock, floor) (`now`): a wall clock set back below the floor is read
   as the floor. A task whose row was forgotten (expires_at < floor then, and the floor never
   decreases) is refused `expired` at every later reading. Readings at or above the floor are read
   as they are; the floor is at most the real time while issuers' clocks are within the skew, so an
   agent with a correct clock never refuses a task because of it.
3. The floor is stored (`meta` table, `FLOOR_KEY`) in a commit made before rows are forgotten,
   and starts from the stored value after a restart (the downtime is not added: the monotonic
   clock restarts with the machine, and a lower floor only keeps rows longer). A snapshot that
   leaves forgotten rows out therefore always holds a floor above their `expires_at`. The intake
   also stores it with its own commits once it has moved `FLOOR_STEP_S` (`floor_op`), and the
   agent sweeps at start: an agent whose every life is shorter than its housekeeping period (a
   crash loop, a flapping board) still forgets rows, instead of keeping every task's for ever.
With correct clocks a row lives as long as before (until about expires_at + skew: the floor trails
the real time by the skew, and by as much as the most advanced issuer's clock is behind); an agent
that receives nothing keeps its rows until the monotonic clock has moved the floor past them.
"""

from __future__ import annotations

import heapq
import sys
import threading
import time
from collections.abc import Callable

from agent.protocol import MemoryReplayCache, ReplayRecord

from .state import META, REPLAY
from .store import Op, Store

#: The `meta` document holding the floor: {"at": epoch seconds}.
FLOOR_KEY = "replay_floor"
#: How far the floor moves before the intake stores it again with its next commit.
FLOOR_STEP_S = 1.0


def row_key(kid: str, nonce: bytes) -> str:
    return f"{kid}\x00{nonce.hex()}"


class DurableReplayCache:
    """Thread-safe: a `MemoryReplayCache` whose rows are in the store, and the floor of the clock
    (see the module docstring): `observe` raises it, `now` is check 5's time, `expire` forgets."""

    def __init__(self, store: Store, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._memory = MemoryReplayCache()
        self._lock = threading.Lock()
        self._monotonic = monotonic
        stored = (store.get(META, FLOOR_KEY) or {}).get("at", 0.0)
        self._stored_floor = float(stored) if isinstance(stored, (int, float)) else 0.0
        #: (floor, monotonic reading then): one tuple, replaced whole, so a reader needs no lock
        self._floor = (self._stored_floor, monotonic())
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
        """Forget the rows whose `forget_after` (their task's expires_at) is below both `now` (the
        wall clock) and the floor."""
        horizon = min(now, self.floor())
        dropped = self._memory.expire(horizon)
        gone: list[str] = []
        with self._lock:
            while self._stored and self._stored[0][0] < horizon:
                _, kid, nonce = heapq.heappop(self._stored)
                if self._memory.by_nonce(kid, nonce) is None:
                    gone.append(row_key(kid, nonce))
            if gone and horizon > self._stored_floor:  # stored before the rows leave the disk
                self._stored_floor = horizon
                self._store.commit([Op(META, FLOOR_KEY, {"at": horizon})], sync=False)
        if gone:
            self._store.forget(REPLAY, gone)
        return dropped

    # -- the floor of the clock (see the module docstring) -----------------------------------------------

    def floor(self) -> float:
        """A time the real clock cannot be below: the last one proven, plus the monotonic time since."""
        at, then = self._floor
        return at + (self._monotonic() - then)

    def observe(self, issued_at: float, clock_skew_s: float) -> None:
        """A task passed checks 1-5: the real time is at least its `issued_at` less the skew."""
        proven = issued_at - clock_skew_s
        if proven > self.floor():
            with self._lock:
                if proven > self.floor():
                    self._floor = (proven, self._monotonic())

    def floor_op(self) -> Op | None:
        """The floor, to store with the intake's next commit, once it has moved `FLOOR_STEP_S`
        since it was last stored (None before): a restart then starts from a recent floor."""
        floor = self.floor()
        with self._lock:
            if floor < self._stored_floor + FLOOR_STEP_S:
                return None
            self._stored_floor = floor
        return Op(META, FLOOR_KEY, {"at": floor})

    def now(self, clock: float) -> float:
        """Check 5's time: the wall clock, or the floor when the clock reads below it."""
        floor = self.floor()
        return clock if clock >= floor else floor

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
