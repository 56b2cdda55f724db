"""The durable store: one writer, a checksummed journal with group commit, snapshots, history partitions.

    store = Store.open(data_dir)                     # lock, snapshot + journal replayed, writer started
    store.commit([Op(TASKS, key, doc), ...], on_durable=callback)   # applied now, durable soon
    store.commit_sync(ops)                           # returns once on disk
    store.get(TASKS, key); store.rows(OUTBOX); store.db.table(TASKS).search(...)  (under store.lock)

Task records are read through TinyDB (`db`, state.py) by `intake/queries.py`: the `sys.*`
commands on the running store, and `edge-agent state` on a copy read from the files without
writing (`readonly.py`, through the journal engine's reader).

A commit is applied to the in-memory tables at once (readers see it) and handed to the writer
thread, which writes everything that arrived meanwhile as one journal frame and one fsync (group
commit), then calls the `on_durable` callbacks in commit order. Effects the outside world sees (an
MQTT acknowledgement, a result published) happen only in those callbacks. Every op sets a key to
a whole document or deletes it, so replaying an op twice changes nothing.

The cost of a commit is its own bytes plus one fsync, whatever the history: finished tasks leave
the tables (their final record goes to `history/YYYY-MM-DD.log`, dropped after `retention_days`),
replay rows are forgotten after their task's expiry, and when the journal passes `compact_bytes`
the live state is written as a new snapshot (temporary file, fsync, rename) and a new journal
starts. The files (`state/snapshot`, `state/journal.<generation>.log`, `state/LOCK`) are the
journal engine's (`agent.common.journal`): a batch is one frame, written whole or cut back, a
torn tail is cut at start, damage stops the start by name (`edge-agent store check` reports it).
A failed write fails the store: nothing more is acknowledged, and the agent stops.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from agent.common.journal import LEGACY_AGENT, OS, FileOps, JournalDirectory, Layout
from agent.common.journal.frames import unpack

from ..errors import StoreError
from .history import HistoryPartitions
from .state import HISTORY, META, SCHEMA_VERSION, StateDB, Tables, apply, empty_tables, load_snapshot, open_db

log = logging.getLogger(__name__)

#: How long a lazy commit (`sync=False`) may wait for a batch that is written anyway.
LAZY_S = 0.02
#: How long a patient commit (`urgent=False`) may wait: about the time a task takes from its
#: intake commit to its result's, on a slow day, so that both usually share one fsync.
PATIENT_S = 0.005
_URGENT, _DUE, _CLOSE = object(), object(), object()  # the writer's wake-up tokens
#: The snapshot header before the journal engine: magic, crc32, length (the generation in the body).
LEGACY_SNAPSHOT_MAGIC = b"EDGESNAP"
_LEGACY_SNAP_HEADER = struct.Struct("<8sIQ")


def _legacy_snapshot(data: bytes) -> tuple[bytes, int]:
    if len(data) < _LEGACY_SNAP_HEADER.size:
        raise ValueError(f"too short to be a snapshot ({len(data)} bytes)")
    magic, crc, length = _LEGACY_SNAP_HEADER.unpack_from(data)
    body = data[_LEGACY_SNAP_HEADER.size :]
    if magic != LEGACY_SNAPSHOT_MAGIC or length != len(body) or zlib.crc32(body) != crc:
        raise ValueError("bad magic, length or checksum")
    return body, int(unpack(body)["generation"])


LAYOUT = Layout(
    owner="agent",
    snapshot_name="snapshot",
    lock_name="LOCK",
    legacy_framing=LEGACY_AGENT,
    legacy_snapshot=_legacy_snapshot,
    check_command=lambda state_dir: f"edge-agent store check {state_dir.parent}",
)


class Op(NamedTuple):
    table: str
    key: str
    doc: Any  # None deletes the key; a document is never changed after it is committed


Callback = Callable[[], None]


class StoreStats(NamedTuple):
    generation: int
    journal_bytes: int
    commits: int
    batches: int
    compactions: int
    last_batch_s: float
    superseded: int = 0  # changes left out of the journal: a later one of the same batch replaced them
    compaction_failures: int = 0  # compactions that failed (the state stood; the journal kept growing)


def _latest_changes(ops: list[Op]) -> tuple[list[Any], list[Op]]:
    """History documents, and the journal's changes for one group commit: of several changes to
    one row, only the last.

    A batch is one journal record, replayed whole or not at all (a torn record is cut off), so
    the changes it replaces can never be seen on their own. What this saves: an attempt that
    starts and ends within one group commit writes its final record only, not also its
    "running" record with the task's body (the lazy commit of `Lifecycle.take`). The ops
    themselves are the journal's changes (msgpack writes a tuple as an array), and the loop
    unpacks them rather than reading the named fields: it runs for every op the agent commits."""
    history: list[Any] = []
    latest: dict[tuple[str, str], Op] = {}
    for op in ops:
        table, key, doc = op
        if table == HISTORY:
            history.append(doc)
        else:
            latest[table, key] = op  # rows are independent: the position does not matter
    return history, list(latest.values())


class Store:
    """See the module docstring. Thread-safe; one instance per data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        compact_bytes: int = 8 << 20,
        retention_days: int = 7,
        ops: FileOps = OS,
        around_callbacks: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.state_dir = self.data_dir / "state"
        self._fsync = fsync
        self._compact_bytes = compact_bytes
        self._compact_at = compact_bytes  # journal bytes that start the next compaction
        self._compaction_failures = 0
        self._journal = JournalDirectory(self.state_dir, LAYOUT, fsync=fsync, ops=ops)
        self._history = HistoryPartitions(self.data_dir / "history", retention_days, ops=ops)  # writer thread
        self.lock = threading.RLock()  # guards the tables: hold it to read several documents consistently
        self.tables: Tables = empty_tables()
        self._db: StateDB = open_db(self.tables)
        self._cond = threading.Condition(threading.Lock())  # durability progress, for flush()
        self._queue: list[tuple[list[Op], Callback | None, bool]] = []  # commits not yet written (under lock)
        self._urgent = False  # `_queue` holds a commit that wants its fsync or its callback now
        self._due = math.inf  # when the writer writes what `_queue` holds at the latest (monotonic)
        self._wake: queue.SimpleQueue[object] = queue.SimpleQueue()  # tokens for the writer (see commit)
        self._failure: BaseException | None = None
        self._writer: threading.Thread | None = None
        self._commits = self._batches = self._compactions = self._superseded = 0
        self._last_batch_s = 0.0
        self._durable_seq = 0  # commits written so far
        self._submitted_seq = 0
        #: Entered around the callbacks of each batch (the agent holds the socket writes of the
        #: results they publish until all have run: see `MqttLink.writes_held`).
        self._around_callbacks = around_callbacks

    @property
    def generation(self) -> int:
        return self._journal.generation

    # -- opening ------------------------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path, **options: Any) -> Store:
        store = cls(data_dir, **options)
        try:
            store._open()
        except BaseException:
            store._journal.close()
            raise
        return store

    def _open(self) -> None:
        for directory in (self.data_dir, self.history_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        recovery = self._journal.open()
        if recovery.snapshot is None:
            log.info("no state in %s: starting with an empty store", self.state_dir)
        else:
            load_snapshot(self.tables, recovery.snapshot, self.state_dir / LAYOUT.snapshot_name)
        for batch in recovery.batches:
            apply(self.tables, batch)
        self._history.prepare_latest()
        if recovery.needs_switch:  # an empty directory, or state of an older format: rewritten now
            self._journal.switch(self._serialise(self.generation + 1))
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._writer.start()

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, table: str, key: str) -> Any:
        return self.tables[table].get(key)

    def rows(self, table: str) -> list[tuple[str, Any]]:
        """A consistent copy of a table's (key, document) pairs."""
        with self.lock:
            return list(self.tables[table].items())

    def count(self, table: str) -> int:
        return len(self.tables[table])

    # -- writing ---------------------------------------------------------------------------------------

    @property
    def db(self) -> StateDB:
        """TinyDB over the tables, read-only (hold `lock` while querying: commits change them)."""
        return self._db

    def commit(
        self, ops: list[Op], on_durable: Callback | None = None, *, sync: bool = True, urgent: bool = True
    ) -> None:
        """Apply `ops` now; make them durable with the next group commit, then call `on_durable`.

        `urgent=False`: durable as any other, but the writer may wait up to `PATIENT_S` for an
        urgent commit to write it with. For a commit whose only waiter is not in a hurry: the
        intake's (its acknowledgements wait for it; the task runs meanwhile), which then usually
        shares the fsync of its own task's result.

        `sync=False` (and no callback): a lazy change, not worth an fsync of its own nor a write
        of its own. It goes with the next batch, which is at most `LAZY_S` later: a kill -9 within
        that time may lose it, a power cut may lose it until the next fsync. For changes whose loss
        only repeats harmless work, such as forgetting a result the broker acknowledged (it is
        re-sent, same bytes) or marking an attempt started (it is not counted). An attempt that
        ends before the batch is written then costs one journal entry, not two.
        """
        if self._failure is not None:
            raise StoreError(f"the store failed and accepts no more changes: {self._failure}")
        with self.lock:
            apply(self.tables, ops)
            self._submitted_seq += 1
            self._queue.append((ops, on_durable, sync))
            durable = sync or on_durable is not None
            if durable and urgent:
                if not self._urgent:  # one token per batch: the writer takes the whole queue
                    self._urgent = True
                    self._wake.put(_URGENT)
                return
            due = time.monotonic() + (PATIENT_S if durable else LAZY_S)
            if due < self._due:  # the writer waits for company until then (or for an urgent commit)
                self._due = due
                self._wake.put(_DUE)

    def commit_sync(self, ops: list[Op], timeout: float = 30.0) -> None:
        done = threading.Event()
        self.commit(ops, done.set)
        if not done.wait(timeout):
            raise StoreError(self._failure_text() or f"commit not durable within {timeout} s")

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything committed so far is durable."""
        with self.lock:
            target = self._submitted_seq
            if self._queue and not self._urgent:  # lazy changes only: written now, not in LAZY_S
                self._urgent = True
                self._wake.put(_URGENT)
        with self._cond:
            return (
                self._cond.wait_for(lambda: self._durable_seq >= target or self._failure is not None, timeout)
                and self._failure is None
            )

    def forget(self, table: str, keys: Iterable[str]) -> None:
        """Drop keys from memory without a journal record (expired replay rows: the next
        snapshot leaves them out, and a replayed journal brings back only rows that expire again)."""
        with self.lock:
            rows = self.tables[table]
            for key in keys:
                rows.pop(key, None)

    def _failure_text(self) -> str | None:
        return None if self._failure is None else f"the store failed: {self._failure}"

    # -- the writer thread -----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        closing = False
        while not closing:
            closing = self._wake.get() is _CLOSE
            if not closing and not self._urgent:  # lazy changes only: wait a little for company
                closing = self._wait_for_company()
            with self.lock:
                batch, self._queue = self._queue, []  # everything that arrived meanwhile: one group commit
                self._urgent = False
                self._due = math.inf
            if not batch:
                continue  # a token of a batch already written
            try:
                self._write_batch(batch)
            except BaseException as exc:  # disk full, I/O error: nothing more may be acknowledged
                log.critical("the store cannot write: %s", exc)
                with self._cond:
                    self._failure = exc
                    self._cond.notify_all()
                return
            self._run_callbacks(batch)
            with self._cond:
                self._durable_seq += len(batch)
                self._cond.notify_all()
            if self._journal.journal_bytes >= self._compact_at:
                self._compact_or_carry_on()

    def _compact_or_carry_on(self) -> None:
        """Compaction only bounds the journal: when it fails (a full disk, an I/O error) the state
        stands as it was, the journal keeps growing, and the next try waits for another
        `compact_bytes` of it. A failure that stops the journal too fails the store at its next
        batch; this one must not end the writer thread, which every later commit waits for."""
        try:
            self.compact()
        except Exception as exc:
            self._compact_at = self._journal.journal_bytes + self._compact_bytes
            self._compaction_failures += 1
            log.error(
                "store: compaction failed (%s); the state is intact and the journal keeps growing "
                "(%d bytes): free space in %s, the next try is after %d more bytes",
                exc,
                self._journal.journal_bytes,
                self.state_dir,
                self._compact_bytes,
            )

    def _run_callbacks(self, batch: list[tuple[list[Op], Callback | None, bool]]) -> None:
        """Each callback of a durable batch, inside `around_callbacks`. Nothing raised here may end
        the writer thread (every later commit would hang): a failure is logged, and the callbacks
        run even when entering `around_callbacks` failed."""
        around: contextlib.AbstractContextManager[None] | None = None
        try:
            around = self._around_callbacks()
            around.__enter__()
        except Exception:
            log.exception("store: entering around_callbacks failed; the callbacks run without it")
            around = None
        try:
            for _, callback, _ in batch:
                if callback is not None:
                    try:
                        callback()
                    except Exception:  # a failing callback is the caller's bug: log it, keep writing
                        log.exception("store commit callback failed")
        finally:
            if around is not None:
                try:
                    around.__exit__(None, None, None)
                except Exception:
                    log.exception("store: leaving around_callbacks failed")

    def _wait_for_company(self) -> bool:
        """Until `_due` (LAZY_S or PATIENT_S after a commit that may wait) for an urgent commit;
        True if the store is closing."""
        while not self._urgent:
            left = self._due - time.monotonic()  # inf: a token of a batch already written
            if left <= 0 or left == math.inf:
                return False
            try:
                if self._wake.get(timeout=left) is _CLOSE:
                    return True
            except queue.Empty:
                return False
        return False

    def _write_batch(self, batch: list[tuple[list[Op], Callback | None, bool]]) -> None:
        started = time.perf_counter()
        ops = [op for commit_ops, _, _ in batch for op in commit_ops]
        history, changes = _latest_changes(ops)
        if history:
            self._history.append(history)
        self._superseded += len(ops) - len(history) - len(changes)
        if not changes:  # commits made only to keep the order of their callbacks
            return
        sync = self._fsync and any(sync for _, _, sync in batch)
        self._journal.append(changes, sync=sync)
        self._commits += len(batch)
        self._batches += 1
        self._last_batch_s = time.perf_counter() - started

    # -- snapshots ---------------------------------------------------------------------------------------

    def _serialise(self, generation: int) -> bytes:
        with self.lock:
            doc = {
                "schema": SCHEMA_VERSION,
                "generation": generation,
                "created_at": time.time(),
                "tables": self.tables,
            }
            return msgpack.packb(doc, use_bin_type=True)  # type: ignore[no-any-return]

    def compact(self) -> None:
        """Write the live state as generation N+1 and start its journal (writer thread, or tests).

        Until the new snapshot is in place (an atomic rename), generation N and its journal stay
        the store's: a failure before that leaves everything as it was."""
        started = time.perf_counter()
        if self._fsync:  # the journal about to go holds them too
            self._history.sync()
        body = self._serialise(self.generation + 1)
        self._journal.switch(body)
        self._compactions += 1
        self._compact_at = self._compact_bytes
        log.info(
            "state compacted to generation %d (%d bytes) in %.1f ms",
            self.generation,
            len(body),
            (time.perf_counter() - started) * 1e3,
        )

    # -- history (history.py) ----------------------------------------------------------------------------

    @property
    def history_dir(self) -> Path:
        return self._history.directory

    @property
    def retention_days(self) -> int:
        return self._history.retention_days

    @retention_days.setter
    def retention_days(self, days: int) -> None:  # a reload
        self._history.retention_days = days

    def history_days(self) -> list[Path]:
        return self._history.days()

    def history(self) -> Iterator[Any]:
        """Finished task records, oldest day first."""
        return self._history.read()

    def expire_history(self, now: float | None = None) -> int:
        """Delete day partitions older than `retention_days`; returns how many."""
        return self._history.expire(now)

    # -- meta ----------------------------------------------------------------------------------------------

    def next_session(self) -> int:
        """The presence session counter, incremented and durable before it is returned."""
        with self.lock:
            meta = dict(self.get(META, "agent") or {})
            meta["session"] = int(meta.get("session", 0)) + 1
            self.commit([Op(META, "agent", meta)])
        self.flush()
        return int(meta["session"])

    # -- closing -------------------------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        return StoreStats(
            self.generation,
            self._journal.journal_bytes,
            self._commits,
            self._batches,
            self._compactions,
            self._last_batch_s,
            self._superseded,
            self._compaction_failures,
        )

    @property
    def failed(self) -> BaseException | None:
        return self._failure

    def close(self, timeout: float = 30.0) -> None:
        """Write what is pending, then release the files and the lock."""
        self._wake.put(_CLOSE)  # the writer writes everything committed before, then ends
        if self._writer is not None:
            self._writer.join(timeout)
        self._history.close()
        self._journal.close()
