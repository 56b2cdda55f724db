"""What survives a broker restart: persistent sessions, their queued messages, retained messages.

Layout of the data directory (one writer: the running broker holds `lock` with flock)::

    snapshot.msgpack        the whole durable state at generation G (written atomically)
    journal.<G>.log         every change since that snapshot (framing: broker/records.py)

Every change is applied to the in-memory `StoreState` and appended to a buffer; one writer
task writes and fsyncs the buffer in batches (group commit) and then resolves the batch's
`barrier()` futures, so a PUBACK or SUBACK waits for one fsync shared with everything that
arrived meanwhile. When the journal passes `compact_bytes`, and at every start, the state is
written as snapshot G+1 and journal G+1 starts empty: start-up time and disk use follow the
live state, not history. A torn last record (a crash mid-write) is cut off at start; anything
else unreadable stops the broker with `CorruptStore` rather than forget what it acknowledged.

`MemoryStore` has the same interface and keeps nothing (persistence off).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
from pathlib import Path
from typing import BinaryIO

from agent.fileio import PRIVATE, fsync_dir, write_atomic

from .errors import CorruptStore, StoreError
from .records import Record, StoreState, encode_record, read_records

log = logging.getLogger("broker.store")

SNAPSHOT = "snapshot.msgpack"
LOCK = "lock"
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

    def queued(self, client_id: str, seq: int, qos: int, retain: bool) -> None:
        return None

    def done(self, client_id: str, seq: int) -> None:
        return None


class Store(MemoryStore):
    """The on-disk store; see the module docstring."""

    enabled = True

    def __init__(self, data_dir: Path, *, fsync: bool = True, compact_bytes: int = 16 << 20) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.fsync = fsync
        self.compact_bytes = compact_bytes
        self.gen = 0
        self.journal_bytes = 0
        self._lock_fd: int | None = None
        self._journal: BinaryIO | None = None
        self._buffer: list[bytes] = []
        self._next: asyncio.Future[None] | None = None  # resolved when the buffer is durable
        self._writing: asyncio.Future[None] | None = None  # resolved when the batch being written is
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

    def barrier(self) -> asyncio.Future[None] | None:
        """A future done when everything recorded so far is on disk (None: already is)."""
        if self._buffer:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            return self._next
        return self._writing

    def _append(self, rec: Record) -> None:
        self.state.apply(rec)
        self._buffer.append(encode_record(rec))
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._buffer:
                await self._write_batch()
            if self._closing:
                return
            if self.journal_bytes > self.compact_bytes:
                await self._compact()

    async def _write_batch(self) -> None:
        data = b"".join(self._buffer)
        self._buffer.clear()
        waiter, self._next = self._next, None
        self._writing = waiter
        try:
            # Only a batch someone waits for (a PUBACK, SUBACK or CONNACK) needs its fsync; one of
            # acknowledgements and deletions alone rides on the next fsync (losing it in a crash
            # means a redelivery, never a loss).
            await asyncio.to_thread(self._write, data, waiter is not None)
        except OSError as exc:
            log.error("journal write failed (%s): the messages it held are not acknowledged", exc)
            if waiter is not None and not waiter.done():
                waiter.set_exception(StoreError(f"journal write failed: {exc}"))
                waiter.exception()  # retrieved here: publishers see a missing PUBACK, not a traceback
        else:
            self.journal_bytes += len(data)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        finally:
            self._writing = None

    def _write(self, data: bytes, sync: bool) -> None:
        journal = self._journal
        if journal is None:
            raise OSError("journal is closed")
        journal.write(data)
        if sync and self.fsync:
            os.fsync(journal.fileno())

    async def _compact(self) -> None:
        """Snapshot the state (which already holds the buffered records), start a new journal."""
        snapshot = self.state.encode(self.gen + 1)
        self._buffer.clear()  # covered by the snapshot
        waiter, self._next = self._next, None
        self._writing = waiter
        try:
            await self._start_generation(snapshot)
        except OSError as exc:
            log.error("compaction failed (%s); retrying after the next batch", exc)
            if waiter is not None and not waiter.done():
                waiter.set_exception(StoreError(f"snapshot write failed: {exc}"))
                waiter.exception()
            return
        finally:
            self._writing = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        log.info("store compacted: generation %d, %d bytes of snapshot", self.gen, len(snapshot))

    # -- changes ----------------------------------------------------------------------------------

    def retain(self, topic: str, payload: bytes, qos: int) -> None:
        self._append(["R", topic, payload, qos])

    def clear_retained(self, topic: str) -> None:
        if topic in self.state.retained:
            self._append(["r", topic])

    def session_opened(self, client_id: str, username: str | None) -> None:
        known = self.state.sessions.get(client_id)
        if known is None or known.username != username:
            self._append(["S", client_id, username])

    def session_deleted(self, client_id: str) -> None:
        if client_id in self.state.sessions:
            self._append(["s", client_id])

    def subscribed(self, client_id: str, topic_filter: str, qos: int) -> None:
        self._append(["B", client_id, topic_filter, qos])

    def unsubscribed(self, client_id: str, topic_filter: str) -> None:
        self._append(["b", client_id, topic_filter])

    def message(self, topic: str, payload: bytes) -> int:
        seq = self.state.next_seq
        self._append(["M", seq, topic, payload])
        return seq

    def queued(self, client_id: str, seq: int, qos: int, retain: bool) -> None:
        self._append(["Q", client_id, seq, qos, retain])

    def done(self, client_id: str, seq: int) -> None:
        self._append(["A", client_id, seq])
