"""What survives a broker restart: persistent sessions, their queued messages, retained messages.

Layout of the data directory (one writer: the running broker holds `lock` with flock)::

    snapshot.msgpack        the whole durable state at generation G (written atomically)
    journal.<G>.log         every change since that snapshot (framing: broker/records.py)

Every change is applied to the in-memory `StoreState` and its record waits in a `Batch`
(broker/journal.py); one writer task writes and fsyncs batches (group commit), one frame each,
off the event loop. A PUBACK waits for the `Group` of records its PUBLISH made (`accepted()`),
which is done when each of them is on disk or was cancelled by a subscriber's acknowledgement;
a SUBACK or a new session's CONNACK waits until everything before it is on disk (`barrier()`).
When the journal passes `compact_bytes`, and at every start, the state is written as snapshot
G+1 and journal G+1 starts empty: start-up time and disk use follow the live state, not
history. A torn last frame (a crash mid-write) is cut off at start; anything else unreadable
stops the broker with `CorruptStore` rather than forget what it acknowledged.

`MemoryStore` has the same interface and keeps nothing (persistence off).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from agent.fileio import PRIVATE, fsync_dir, write_atomic

from .errors import CorruptStore, StoreError
from .journal import Batch, Group
from .records import Record, StoreState, encode_batch, read_records

log = logging.getLogger("broker.store")

SNAPSHOT = "snapshot.msgpack"
LOCK = "lock"
ACK_WAIT_S = 0.005  # persistence.ack_wait_ms's default, in seconds
ACK_WAIT_CAP = 20  # a batch waits for acknowledgements at most this many times ack_wait_s
_JOURNAL_RE = re.compile(r"journal\.(\d+)\.log")


class MemoryStore:
    """Persistence off: the same calls, nothing kept, nothing to wait for."""

    enabled = False

    def __init__(self) -> None:
        self.state = StoreState()
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
    ) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.fsync = fsync
        self.compact_bytes = compact_bytes
        self.ack_wait_s = ack_wait_s
        self.gen = 0
        self.journal_bytes = 0
        self.stats = WriteStats()
        self._lock_fd: int | None = None
        self._journal: BinaryIO | None = None
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

    async def open(self) -> StoreState:
        """Lock the directory, load snapshot and journals, compact, start the writer."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_fd = os.open(self.data_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"persistence.data_dir: cannot use {self.data_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{self.data_dir} is in use by another running broker") from None
        state, gen = await asyncio.to_thread(self._load)
        self.state = state
        self.gen = gen
        await self._start_generation(self.state.encode(gen + 1))
        self.state, _ = StoreState.decode(self.state.encode(self.gen))  # drop what nothing refers to
        self._writer = asyncio.create_task(self._write_loop(), name="broker-store-writer")
        stats = (len(self.state.sessions), len(self.state.retained), len(self.state.messages))
        log.info("store %s: %d persistent sessions, %d retained, %d queued messages", self.data_dir, *stats)
        return self.state

    async def close(self) -> None:
        """Write what is buffered, then a final snapshot; release the directory."""
        if self._writer is None:
            self._release()
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
        with contextlib.suppress(OSError):
            await self._start_generation(self.state.encode(self.gen + 1))
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _load(self) -> tuple[StoreState, int]:
        snapshot = self.data_dir / SNAPSHOT
        state, gen = StoreState(), 0
        if snapshot.exists():
            try:
                state, gen = StoreState.decode(snapshot.read_bytes())
            except (ValueError, KeyError, TypeError) as exc:
                raise CorruptStore(
                    f"{snapshot} is unreadable ({exc}); move it aside to start empty, losing queued messages"
                ) from None
        journals = sorted(
            (int(m.group(1)), p) for p in self.data_dir.iterdir() if (m := _JOURNAL_RE.fullmatch(p.name))
        )
        live = [(n, p) for n, p in journals if n >= gen]
        for index, (number, path) in enumerate(live):
            data = path.read_bytes()
            records, end = read_records(data)
            if end < len(data):
                if index != len(live) - 1:
                    raise CorruptStore(f"{path} is damaged at byte {end} and is not the last journal")
                log.warning("%s: cut a torn record at byte %d (a crash during a write)", path, end)
            for rec in records:
                try:
                    state.apply(rec)
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    raise CorruptStore(f"{path}: bad record {rec[:1]!r}: {exc}") from None
            gen = max(gen, number)
        return state, gen

    async def _start_generation(self, snapshot: bytes) -> None:
        """Snapshot G+1 durable, then journal G+1 opened and older files removed."""
        new_gen = self.gen + 1
        await asyncio.to_thread(self._write_generation, new_gen, snapshot)
        self.gen = new_gen
        self.journal_bytes = 0

    def _write_generation(self, new_gen: int, snapshot: bytes) -> None:
        write_atomic(self.data_dir / SNAPSHOT, snapshot, PRIVATE)
        journal = open(self.data_dir / f"journal.{new_gen}.log", "ab", buffering=0)  # noqa: SIM115 - kept open
        old, self._journal = self._journal, journal
        if old is not None:
            old.close()
        for path in self.data_dir.iterdir():
            match = _JOURNAL_RE.fullmatch(path.name)
            if match and int(match.group(1)) < new_gen:
                path.unlink()
        fsync_dir(self.data_dir)

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
            data = encode_batch(records)
            await asyncio.to_thread(self._write, data, sync)
        except Exception as exc:  # disk errors, and anything else: the writer must outlive it
            log.error("journal write failed (%s): the messages it held are not acknowledged", exc)
            _resolve(groups, writing, StoreError(f"journal write failed: {exc}"))
        else:
            self.journal_bytes += len(data)
            self.stats.add(len(records), sync)
            _resolve(groups, writing)
        finally:
            self._writing = None
            self._busy = False

    def _write(self, data: bytes, sync: bool) -> None:
        journal = self._journal
        if journal is None:
            raise OSError("journal is closed")
        journal.write(data)
        if sync:
            os.fsync(journal.fileno())

    async def _compact(self) -> None:
        """Snapshot the state (which already holds the batch's records), start a new journal."""
        try:
            snapshot = self.state.encode(self.gen + 1)
        except Exception as exc:  # the batch stays and is written to the journal as usual
            log.error("compaction failed (%s); retrying after the next batch", exc)
            return
        _, groups, flushed = self._take()  # covered by the snapshot
        self._busy = True
        writing = self._writing = flushed or asyncio.get_running_loop().create_future()
        try:
            await self._start_generation(snapshot)
        except Exception as exc:  # as in _write_batch: the writer must outlive it
            log.error("compaction failed (%s); retrying after the next batch", exc)
            _resolve(groups, writing, StoreError(f"snapshot write failed: {exc}"))
            return
        finally:
            self._writing = None
            self._busy = False
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
