"""What survives a broker restart: persistent sessions, their queued messages, retained messages.

Layout of the data directory (one writer: the running broker holds `lock` with flock)::

    snapshot.msgpack        the whole durable state at generation G (written atomically)
    journal.<G>.log         every change since that snapshot, one frame per batch

The files are the journal engine's (`agent.common.journal`, shared with the agent): a frame is
written whole or cut back, generations switch atomically with directory fsyncs, a torn last
frame is cut at start, and any other damage stops the start by name (`edge-broker
--check-store` reports it, `--cut` repairs it knowingly). Files of the format before the engine
(`>II` frames, a bare MessagePack snapshot) are still read, and rewritten at the next start.

Every change is applied to the in-memory `StoreState` and its record waits in a `Batch`
(broker/journal.py); one writer task writes and fsyncs batches (group commit), one frame each,
off the event loop. A PUBACK waits for the `Group` of records its PUBLISH made (`accepted()`),
which is done when each of them is on disk or was cancelled by a subscriber's acknowledgement;
a SUBACK or a new session's CONNACK waits until everything before it is on disk (`barrier()`).
When the journal passes `compact_bytes`, and at every start, the state is written as snapshot
G+1 and journal G+1 starts empty: start-up time and disk use follow the live state, not
history. A failed write (a full disk, an I/O error) fails the PUBACKs waiting for it, and the
next write is a new generation (a snapshot of the whole state), never an append behind it.

`MemoryStore` has the same interface and keeps nothing (persistence off).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from agent.common.journal import LEGACY_BROKER, OS, FileOps, JournalDirectory, Layout

from .errors import CorruptStore, StoreError
from .journal import Batch, Group
from .records import Record, StoreState

log = logging.getLogger("broker.store")

SNAPSHOT = "snapshot.msgpack"
LOCK = "lock"
ACK_WAIT_S = 0.005  # persistence.ack_wait_ms's default, in seconds
ACK_WAIT_CAP = 20  # a batch waits for acknowledgements at most this many times ack_wait_s


def _legacy_snapshot(data: bytes) -> tuple[bytes, int]:
    """A snapshot before the journal engine: the bare MessagePack document, its generation inside."""
    doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(doc, dict):
        raise ValueError("not a broker snapshot")
    return data, int(doc["gen"])


LAYOUT = Layout(
    owner="broker",
    snapshot_name=SNAPSHOT,
    lock_name=LOCK,
    legacy_framing=LEGACY_BROKER,
    legacy_snapshot=_legacy_snapshot,
    check_command=lambda directory: f"edge-broker --check-store --data-dir {directory}",
)


def _records(payload: Any, path: Path) -> list[Record]:
    """The records of one journal frame: a batch, or one record alone (journals before batches)."""
    if isinstance(payload, list) and payload and isinstance(payload[0], str):
        return [payload]
    if isinstance(payload, list) and all(isinstance(rec, list) and rec for rec in payload):
        return payload
    raise CorruptStore(f"{path}: a frame that holds no journal records ({type(payload).__name__})")


class MemoryStore:
    """Persistence off: the same calls, nothing kept, nothing to wait for."""

    enabled = False

    def __init__(self) -> None:
        self.state = StoreState()
        self.stats = WriteStats()  # all zero here: nothing is written
        self._seq = 0

    async def open(self) -> StoreState:
        return self.state

    async def close(self) -> None:
        return None

    def barrier(self) -> asyncio.Future[None] | None:
        return None

    def accepted(self) -> Group | None:
        return None

    def retain(self, topic: str, payload: bytes, qos: int) -> None:
        return None

    def clear_retained(self, topic: str) -> None:
        return None

    def session_opened(self, client_id: str, username: str | None) -> None:
        return None

    def session_deleted(self, client_id: str) -> None:
        return None

    def subscribed(self, client_id: str, topic_filter: str, qos: int) -> None:
        return None

    def unsubscribed(self, client_id: str, topic_filter: str) -> None:
        return None

    def message(self, topic: str, payload: bytes) -> int:
        self._seq += 1
        return self._seq

    def queued(self, client_id: str, seq: int, qos: int, retain: bool, *, sent: bool = False) -> None:
        return None

    def done(self, client_id: str, seq: int) -> None:
        return None


class Store(MemoryStore):
    """The on-disk store; see the module docstring."""

    enabled = True

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        compact_bytes: int = 16 << 20,
        ack_wait_s: float = ACK_WAIT_S,
        ops: FileOps = OS,
    ) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.fsync = fsync
        self.compact_bytes = compact_bytes
        self.ack_wait_s = ack_wait_s
        self._journal = JournalDirectory(data_dir, LAYOUT, fsync=fsync, ops=ops)
        self._must_switch = False  # a write failed: the next one is a new generation, not an append
        self._batch = Batch()
        self._flushed: asyncio.Future[None] | None = None  # resolved when the batch is written
        self._writing: asyncio.Future[None] | None = None  # resolved when the batch in flight is
        self._busy = False  # a write or a compaction is in flight
        self._overdue = False  # the batch's hot entries waited `ack_wait_s`: write them
        self._timer: asyncio.TimerHandle | None = None
        self._hot_since = 0.0  # loop time of the batch's first hot entry
        self._progress = 0.0  # loop time of the last cancellation
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    # -- life cycle -------------------------------------------------------------------------------

    @property
    def gen(self) -> int:
        return self._journal.generation

    @property
    def journal_bytes(self) -> int:
        return self._journal.journal_bytes

    async def open(self) -> StoreState:
        """Lock the directory, load snapshot and journal, start a new generation, start the writer."""
        self.state = await asyncio.to_thread(self._load)
        await asyncio.to_thread(self._journal.switch, self.state.encode(self.gen + 1))
        self.state, _ = StoreState.decode(self.state.encode(self.gen))  # drop what nothing refers to
        self._writer = asyncio.create_task(self._write_loop(), name="broker-store-writer")
        stats = (len(self.state.sessions), len(self.state.retained), len(self.state.messages))
        log.info("store %s: %d persistent sessions, %d retained, %d queued messages", self.data_dir, *stats)
        return self.state

    async def close(self) -> None:
        """Write what is buffered, then a final snapshot; release the directory."""
        if self._writer is None:
            self._journal.close()
            return
        self._closing = True
        self._wake.set()
        await self._writer
        self._writer = None
        self._disarm()
        stats = self.stats
        log.info(
            "journal: %d frames (%d records, %d fsyncs); %d queue entries acknowledged before they "
            "were written (never written)",
            stats.batches,
            stats.records,
            stats.fsyncs,
            stats.cancelled,
        )
        try:
            await asyncio.to_thread(self._journal.switch, self.state.encode(self.gen + 1))
        except (OSError, StoreError) as exc:  # the journal holds everything: the next start replays it
            log.warning("no final snapshot (%s): the next start replays the journal", exc)
        self._journal.close()

    def _load(self) -> StoreState:
        recovery = self._journal.open()
        try:
            state = StoreState()
            if recovery.snapshot is not None:
                try:
                    state, _ = StoreState.decode(recovery.snapshot)
                except (ValueError, KeyError, TypeError) as exc:
                    raise CorruptStore(
                        f"{self.data_dir / SNAPSHOT} is unreadable ({exc}); move it aside to start empty, "
                        "losing queued messages"
                    ) from None
            path = self._journal.journal_path
            for payload in recovery.batches:
                for rec in _records(payload, path):
                    try:
                        state.apply(rec)
                    except (ValueError, KeyError, TypeError, IndexError) as exc:
                        raise CorruptStore(f"{path}: bad record {rec[:1]!r}: {exc}") from None
        except BaseException:
            self._journal.close()
            raise
        return state

    # -- group commit ---------------------------------------------------------------------------
    #
    # The batch (broker/journal.py) is written when it is *ripe*: at once when it holds a record
    # that must be durable and that no acknowledgement can cancel, or when `barrier()` waits for
    # it; when it holds queue entries already sent to their subscribers (hot), once they are all
    # cancelled, or no acknowledgement cancelled anything for `ack_wait_s`, or ACK_WAIT_CAP times
    # that after the first of them; at once when it holds only A records (no fsync). One write
    # is in flight at a time, off the event loop; what arrives meanwhile makes the next batch.

    def barrier(self) -> asyncio.Future[None] | None:
        """A future done when everything recorded so far is on disk or cancelled (None: already
        is); for a CONNACK or SUBACK, which must not outrun the session or subscription."""
        group = self._batch.close_group()
        if group is not None:
            return group.future()
        if self._batch.durable:
            if self._flushed is None:
                self._flushed = asyncio.get_running_loop().create_future()
                self._kick()  # written now: someone waits for all of it, cancellable or not
            return self._flushed
        return self._writing

    def accepted(self) -> Group | None:
        """Done when the records made since the last `accepted()` or `barrier()` (those of one
        PUBLISH) are on disk or cancelled (None: there are none); gates its PUBACK."""
        return self._batch.close_group()

    def _ripe(self) -> bool:
        batch = self._batch
        if not batch.alive:
            return self._flushed is not None  # nothing to write, but a barrier to resolve
        return bool(batch.cold or not batch.hot or self._overdue or self._flushed or self._closing)

    def _kick(self) -> None:
        if not self._busy and self._ripe():
            self._wake.set()

    def _arm(self) -> None:
        """A hot entry: written once acknowledgements stop coming for `ack_wait_s` (or at the
        latest ACK_WAIT_CAP times that after the first hot entry), unless one cancels it first."""
        if self._timer is None and not self._overdue:
            loop = asyncio.get_running_loop()
            self._hot_since = self._progress = loop.time()
            self._timer = loop.call_later(self.ack_wait_s, self._due)

    def _disarm(self) -> None:
        """No hot entry left (all cancelled, or taken for a write): nothing to time."""
        self._overdue = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        loop = asyncio.get_running_loop()
        last = max(self._hot_since, self._progress)
        deadline = min(last + self.ack_wait_s, self._hot_since + self.ack_wait_s * ACK_WAIT_CAP)
        if loop.time() < deadline:  # acknowledgements are still coming: they may cancel the rest
            self._timer = loop.call_at(deadline, self._due)
            return
        self._timer = None
        self._overdue = True
        self._kick()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ripe():
                if self._must_switch:  # after a failed write: the whole state, not an append
                    await self._compact()
                    continue
                await self._write_batch()
                if self.journal_bytes > self.compact_bytes:
                    await self._compact()
            if self._closing and not self._batch.alive:
                return

    def _take(self) -> tuple[list[Record], list[Group], asyncio.Future[None] | None]:
        records, groups = self._batch.take()
        flushed, self._flushed = self._flushed, None
        self._disarm()
        return records, groups, flushed

    async def _write_batch(self) -> None:
        sync = self._batch.durable and self.fsync
        records, groups, flushed = self._take()
        if not records:  # everything in it was cancelled
            _resolve(groups, flushed)
            return
        self._busy = True
        writing = self._writing = flushed or asyncio.get_running_loop().create_future()
        try:
            await asyncio.to_thread(self._journal.append, records, sync=sync)
        except Exception as exc:  # disk errors, and anything else: the writer must outlive it
            self._must_switch = True
            self.stats.failures += 1
            log.error(
                "journal write failed (%s): the messages it held are not acknowledged (their publishers "
                "send them again) and the next write is a snapshot of the whole state; free space in %s "
                "(or replace the disk): nothing is acknowledged until a write succeeds",
                exc,
                self.data_dir,
            )
            _resolve(groups, writing, StoreError(f"journal write failed: {exc}"))
        else:
            self.stats.add(len(records), sync)
            _resolve(groups, writing)
        finally:
            self._writing = None
            self._busy = False

    async def _compact(self) -> None:
        """Snapshot the state (which already holds the batch's records), start a new journal.

        The batch is taken either way: its records are in the snapshot, or, when the switch
        fails, in no file at all. Then its waiters fail, and the next write must be a snapshot
        again (`_must_switch`): an append would leave the journal without those records."""
        _, groups, flushed = self._take()
        self._busy = True
        writing = self._writing = flushed or asyncio.get_running_loop().create_future()
        try:
            snapshot = self.state.encode(self.gen + 1)
            await asyncio.to_thread(self._journal.switch, snapshot)
        except Exception as exc:  # as in _write_batch: the writer must outlive it
            self._must_switch = True
            self.stats.failures += 1
            log.error(
                "compaction failed (%s): its messages are not acknowledged; retrying at the next batch; "
                "free space in %s (or replace the disk)",
                exc,
                self.data_dir,
            )
            _resolve(groups, writing, StoreError(f"snapshot write failed: {exc}"))
            return
        finally:
            self._writing = None
            self._busy = False
        self._must_switch = False
        _resolve(groups, writing)
        log.info("store compacted: generation %d, %d bytes of snapshot", self.gen, len(snapshot))

    # -- changes ----------------------------------------------------------------------------------

    def _record(self, rec: Record) -> None:
        """A change that must be durable before its caller is answered, and that nothing cancels."""
        self.state.apply(rec)
        self._batch.add(rec)
        self._kick()

    def retain(self, topic: str, payload: bytes, qos: int) -> None:
        self._record(["R", topic, payload, qos])

    def clear_retained(self, topic: str) -> None:
        if topic in self.state.retained:
            self._record(["r", topic])

    def session_opened(self, client_id: str, username: str | None) -> None:
        known = self.state.sessions.get(client_id)
        if known is None or known.username != username:
            self._record(["S", client_id, username])

    def session_deleted(self, client_id: str) -> None:
        if client_id in self.state.sessions:
            self._record(["s", client_id])

    def subscribed(self, client_id: str, topic_filter: str, qos: int) -> None:
        self._record(["B", client_id, topic_filter, qos])

    def unsubscribed(self, client_id: str, topic_filter: str) -> None:
        self._record(["b", client_id, topic_filter])

    def message(self, topic: str, payload: bytes) -> int:
        seq = self.state.next_seq
        self.state.add_message(seq, topic, payload)
        self._batch.add_message(seq, ["M", seq, topic, payload])
        return seq  # written with its queue entries, or cancelled with the last of them

    def queued(self, client_id: str, seq: int, qos: int, retain: bool, *, sent: bool = False) -> None:
        if not self.state.add_pending(client_id, seq, qos, retain):
            return  # already queued there (a shared and a plain subscription of one client)
        self._batch.add_queued(client_id, seq, ["Q", client_id, seq, qos, retain], hot=sent)
        if sent:
            self._arm()
        else:
            self._kick()

    def done(self, client_id: str, seq: int) -> None:
        if not self.state.remove_pending(client_id, seq):
            return
        completed = self._batch.cancel_queued(client_id, seq, message_gone=seq not in self.state.messages)
        if completed is None:  # its Q is written (or being written): an A follows it
            self._batch.add_ack(["A", client_id, seq])
        else:
            self.stats.cancelled += 1
            self._progress = asyncio.get_running_loop().time()
            _resolve(completed, None)
            self._batch.reset_if_empty()
            if not self._batch.hot:
                self._disarm()
        self._kick()


@dataclass
class WriteStats:
    """What the journal writer did (for the benchmark and the tests)."""

    batches: int = 0  # frames written
    records: int = 0  # records in them
    fsyncs: int = 0
    cancelled: int = 0  # queue entries acknowledged before they were written (no Q, no A)
    failures: int = 0  # writes and snapshots that failed (their publishers got no PUBACK)

    def add(self, records: int, synced: bool) -> None:
        self.batches += 1
        self.records += records
        self.fsyncs += synced


def _resolve(
    groups: list[Group], extra: asyncio.Future[None] | None, error: StoreError | None = None
) -> None:
    """Answer everyone waiting for these groups (and `extra`): done, or failed with `error`."""
    for group in groups:
        group.resolve(error)
    if extra is not None and not extra.done():
        if error is None:
            extra.set_result(None)
        else:
            extra.set_exception(error)
            extra.exception()  # retrieved here: publishers see a missing PUBACK, not a traceback
