"""The durable store: group commit, recovery after kill -9 at any instant, damage detection,
compaction, history partitions, the replay cache, TinyDB reads."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from tinydb import Query

from agent.common.journal import frame, scan, snapshot_bytes
from agent.node.errors import StoreCorrupt, StoreError, StoreLocked, StoreWriteFailed
from agent.node.store import HISTORY, META, OUTBOX, REPLAY, TASKS, DurableReplayCache, Op, Store
from agent.node.store import store as store_module
from agent.node.store.store import LEGACY_SNAPSHOT_MAGIC
from agent.protocol import ReplayRecord
from tests.support.faults import InjectedFaults


def _open(path: Path, **options: object) -> Store:
    return Store.open(path, **options)  # type: ignore[arg-type]


def _closed_and_reopened_alike(store: Store, path: Path, keys: set[str]) -> None:
    """`store` holds task rows `keys`; closed and opened again, it holds the same rows."""
    rows = dict(store.rows(TASKS))
    store.close()
    store = _open(path)
    assert dict(store.rows(TASKS)) == rows and set(rows) == keys
    store.close()


def test_commits_survive_a_reopen_and_callbacks_follow_durability(tmp_path: Path) -> None:
    store = _open(tmp_path)
    done: list[int] = []
    for i in range(100):
        store.commit([Op(TASKS, f"k/{i}", {"n": i, "body": b"\x00" * 10})], lambda i=i: done.append(i))
    assert store.flush(10)
    assert done == list(range(100))  # in commit order
    assert store.stats().batches < 100  # group commit: many commits per write
    store.commit_sync([Op(TASKS, "k/5", None)])
    store.close()
    store = _open(tmp_path)
    assert store.count(TASKS) == 99 and store.get(TASKS, "k/7") == {"n": 7, "body": b"\x00" * 10}
    assert store.get(TASKS, "k/5") is None
    store.close()


def test_a_row_changed_twice_in_one_group_commit_is_journaled_once(tmp_path: Path) -> None:
    """An attempt that starts and ends within one group commit: its "running" record (lazy,
    with the body) is replaced by the final change before it reaches the journal."""
    store = _open(tmp_path)
    entered, gate = threading.Event(), threading.Event()
    # The writer thread runs callbacks: this one holds it until the next commits are all queued,
    # so they are written as one batch.
    store.commit([Op(TASKS, "hold", {"n": 0})], lambda: (entered.set(), gate.wait(10)))
    assert entered.wait(10)
    body = b"b" * 500
    store.commit([Op(TASKS, "k/1", {"status": "queued", "body": body})])
    store.commit([Op(TASKS, "k/1", {"status": "running", "body": body})], sync=False)
    finished = {"status": "completed", "finished_at": time.time()}
    store.commit(
        [Op(OUTBOX, "k/1#1", {"payload": b"r"}), Op(TASKS, "k/1", None), Op(HISTORY, "k/1", finished)]
    )
    store.commit([Op(TASKS, "k/2", {"status": "running", "body": body})], sync=False)
    store.commit([Op(TASKS, "k/2", {"status": "queued", "body": body})])
    gate.set()
    assert store.flush(10)
    assert store.stats().superseded == 3
    [journal] = sorted((tmp_path / "state").glob("journal.*.log"))
    last = scan(journal.read_bytes()).values[-1]
    assert sorted(map(tuple, last), key=repr) == sorted(
        [
            (TASKS, "k/1", None),
            (OUTBOX, "k/1#1", {"payload": b"r"}),
            (TASKS, "k/2", {"status": "queued", "body": body}),
        ],
        key=repr,
    )
    expected = {table: dict(store.rows(table)) for table in (TASKS, OUTBOX)}
    store.close()
    store = _open(tmp_path)  # the journal replayed: the same rows as in memory before
    assert {table: dict(store.rows(table)) for table in (TASKS, OUTBOX)} == expected
    assert store.get(TASKS, "k/1") is None and store.get(TASKS, "k/2")["status"] == "queued"
    store.close()


def test_a_lazy_commit_waits_for_company_but_not_for_ever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync=False`: no write of its own while a commit that needs one follows within LAZY_S,
    written alone (no fsync) when none does, and at once when someone flushes."""
    monkeypatch.setattr(store_module, "LAZY_S", 60.0)  # longer than any test waits
    store = _open(tmp_path)
    store.commit_sync([Op(TASKS, "k/0", {"n": 0})])
    before = store.stats()
    store.commit([Op(TASKS, "k/1", {"status": "running"})], sync=False)
    time.sleep(0.2)  # time enough for a writer that would write it alone (not a timing assertion)
    assert store.stats().batches == before.batches  # it waits for company instead
    store.commit_sync([Op(TASKS, "k/2", {"n": 2})])
    after = store.stats()
    assert (after.batches, after.commits) == (before.batches + 1, before.commits + 2)
    store.commit([Op(TASKS, "k/3", {"status": "running"})], sync=False)
    assert store.flush(10)  # does not wait the 60 s
    monkeypatch.setattr(store_module, "LAZY_S", 0.05)
    flushed = store.stats().batches
    store.commit_sync([Op(TASKS, "k/4", {"n": 4})])  # the writer waits in a fresh LAZY_S from now on
    store.commit([Op(TASKS, "k/5", {"status": "running"})], sync=False)
    deadline = time.monotonic() + 10
    while store.stats().batches == flushed + 1:  # nobody follows: written alone, soon
        assert time.monotonic() < deadline, "a lazy commit was never written"
        time.sleep(0.01)
    _closed_and_reopened_alike(store, tmp_path, {f"k/{i}" for i in range(6)})


def test_a_patient_commit_is_synced_with_the_next_urgent_one_or_alone_when_none_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`urgent=False`: durable like any commit, its callback once it is, but the writer waits up
    to PATIENT_S for an urgent commit to write it with (one fsync for both)."""
    monkeypatch.setattr(store_module, "PATIENT_S", 60.0)  # longer than any test waits
    store = _open(tmp_path)
    store.commit_sync([Op(TASKS, "k/0", {"n": 0})])
    before = store.stats()
    patient = threading.Event()
    store.commit([Op(TASKS, "k/1", {"n": 1})], patient.set, urgent=False)
    assert not patient.wait(0.2)  # time enough for a writer that would write it alone
    assert store.stats().batches == before.batches
    store.commit_sync([Op(TASKS, "k/2", {"n": 2})])
    assert patient.is_set()
    after = store.stats()
    assert (after.batches, after.commits) == (before.batches + 1, before.commits + 2)
    store.commit([Op(TASKS, "k/3", {"n": 3})], sync=False)  # lazy: LAZY_S, 20 ms
    store.commit([Op(TASKS, "k/4", {"n": 4})], patient.clear, urgent=False)
    assert store.flush(10)  # does not wait the 60 s
    assert not patient.is_set()
    monkeypatch.setattr(store_module, "PATIENT_S", 0.05)
    alone = threading.Event()
    store.commit([Op(TASKS, "k/5", {"n": 5})], alone.set, urgent=False)
    assert alone.wait(10), "a patient commit was never written"  # nobody follows: written alone
    _closed_and_reopened_alike(store, tmp_path, {f"k/{i}" for i in range(6)})


def test_the_callbacks_of_one_batch_run_inside_one_around_callbacks_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent holds the results' socket writes there: one write for a group commit's results."""
    monkeypatch.setattr(store_module, "PATIENT_S", 60.0)  # the patient commits wait for the urgent one
    events: list[str] = []

    @contextlib.contextmanager
    def around() -> Iterator[None]:
        events.append("enter")
        try:
            yield
        finally:
            events.append("exit")

    store = _open(tmp_path, around_callbacks=around)
    before = store.stats()
    store.commit([Op(TASKS, "k/1", {"n": 1})], lambda: events.append("k/1"), urgent=False)
    store.commit([Op(TASKS, "k/2", {"n": 2})], lambda: events.append("k/2"), urgent=False)
    store.commit([Op(TASKS, "k/3", {"n": 3})], lambda: [][0], urgent=False)  # fails: logged, the rest run
    store.commit([Op(TASKS, "k/4", {"n": 4})], lambda: events.append("k/4"))  # urgent: all four now
    assert store.flush(10)
    assert store.stats().batches == before.batches + 1
    assert events == ["enter", "k/1", "k/2", "k/4", "exit"]
    store.close()


@pytest.mark.parametrize("fails_on", ["enter", "exit"])
def test_a_failing_around_callbacks_neither_skips_callbacks_nor_stops_the_writer(
    tmp_path: Path, fails_on: str, caplog: pytest.LogCaptureFixture
) -> None:
    @contextlib.contextmanager
    def around() -> Iterator[None]:
        if fails_on == "enter":
            raise OSError("enter failed")
        yield
        raise OSError("exit failed")

    store = _open(tmp_path, around_callbacks=around)
    for n in range(3):  # the writer is still there after the first failure
        done = threading.Event()
        store.commit([Op(TASKS, f"k/{n}", {"n": n})], done.set)
        assert done.wait(10), f"commit {n}: callback never ran"
    assert f"{fails_on} failed" in caplog.text
    store.close()


def test_a_synced_batch_after_synced_ones_is_one_system_call(tmp_path: Path) -> None:
    ops = InjectedFaults()
    store = _open(tmp_path, ops=ops)
    store.commit_sync([Op(TASKS, "k/1", {"n": 1})])
    ops.calls.clear()
    store.commit_sync([Op(TASKS, "k/2", {"n": 2})])
    store.commit([Op(TASKS, "k/3", {"n": 3})], sync=False)
    assert store.flush(10)  # a lazy batch alone: written, not synced
    store.commit_sync([Op(TASKS, "k/4", {"n": 4})])  # so this one syncs the whole file
    store.commit_sync([Op(TASKS, "k/5", {"n": 5})])
    assert ops.calls == ["pwritev", "write", "write", "fdatasync", "pwritev"]
    store.close()
    store = _open(tmp_path)
    assert sorted(key for key, _ in store.rows(TASKS)) == [f"k/{i}" for i in range(1, 6)]
    store.close()


def test_a_kernel_without_pwritev2_flags_gets_write_and_fdatasync(tmp_path: Path) -> None:
    ops = InjectedFaults(dsync=False)
    store = _open(tmp_path, ops=ops)
    for i in range(3):
        store.commit_sync([Op(TASKS, f"k/{i}", {"n": i})])
    assert store.failed is None and "pwritev" not in ops.calls
    store.close()
    store = _open(tmp_path)
    assert store.count(TASKS) == 3
    store.close()


@pytest.mark.parametrize(
    ("synced_before", "failing"),
    [(True, "pwritev"), (False, "write"), (False, "fdatasync")],
    ids=["append-dsync", "write", "fdatasync"],
)
def test_a_failed_write_stops_the_store_and_acknowledges_nothing(
    tmp_path: Path, synced_before: bool, failing: str
) -> None:
    """A journal write or sync that fails (EIO, as a dying disk gives): no callback runs, every
    later commit is refused, the journal is cut back to its last whole frame, and what was
    durable before is there after a restart. Both ways of appending: after a synced batch
    (pwritev2 with RWF_DSYNC) and after a lazy one (write, then fdatasync)."""
    ops = InjectedFaults()
    store = _open(tmp_path, ops=ops)
    store.commit_sync([Op(TASKS, "k/0", {"n": 0})])
    if not synced_before:
        store.commit([Op(TASKS, "k/lazy", {"n": 0})], sync=False)
        assert store.flush(10)
    size = _journal(tmp_path).stat().st_size
    ops.fail[failing] = errno.EIO  # once: cutting back works
    called: list[int] = []
    store.commit([Op(TASKS, "k/1", {"n": 1})], lambda: called.append(1))
    assert not store.flush(10)
    assert called == [] and isinstance(store.failed, StoreWriteFailed)
    assert "cut back to its last whole frame" in str(store.failed)
    assert _journal(tmp_path).stat().st_size == size
    with pytest.raises(StoreError, match="accepts no more changes"):
        store.commit([Op(TASKS, "k/2", {"n": 2})])
    store.close()
    store = _open(tmp_path)
    assert store.get(TASKS, "k/0") == {"n": 0} and store.get(TASKS, "k/1") is None
    store.close()


def test_a_journal_that_cannot_be_cut_back_refuses_every_append(tmp_path: Path) -> None:
    """fdatasync fails for good (the disk is gone): the journal cannot be put back to its last
    whole frame either, so it refuses all appends; what was durable before is still there."""
    ops = InjectedFaults()
    store = _open(tmp_path, ops=ops)
    store.commit_sync([Op(TASKS, "k/0", {"n": 0})])
    store.commit([Op(TASKS, "k/lazy", {"n": 0})], sync=False)
    assert store.flush(10)
    ops.fail["fdatasync"], ops.persistent = errno.EIO, True
    called: list[int] = []
    store.commit([Op(TASKS, "k/1", {"n": 1})], lambda: called.append(1))
    assert not store.flush(10)
    failure = store.failed
    assert called == [] and isinstance(failure, StoreWriteFailed) and failure.broken
    assert "cutting it back to byte" in str(failure)
    store.close()
    store = _open(tmp_path)  # k/1 may be there or not: it was never acknowledged
    assert store.get(TASKS, "k/0") == {"n": 0}
    store.close()


def test_one_agent_per_data_directory(tmp_path: Path) -> None:
    store = _open(tmp_path)
    with pytest.raises(StoreLocked):
        _open(tmp_path)
    store.close()
    _open(tmp_path).close()


def test_tinydb_reads_the_tables_and_refuses_to_write(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.commit([Op(TASKS, "a/1", {"state": "queued"}), Op(TASKS, "a/2", {"state": "running"})])
    task = Query()
    with store.lock:
        assert [d.doc_id for d in store.db.table(TASKS).search(task.state == "queued")] == ["a/1"]
    store.commit([Op(TASKS, "a/2", {"state": "queued"})])
    with store.lock:  # no query cache: a query sees every commit before it
        assert len(store.db.table(TASKS).search(task.state == "queued")) == 2
    with pytest.raises((StoreError, TypeError)):
        store.db.table(TASKS).truncate()
    store.close()


def _journal(path: Path) -> Path:
    [journal] = sorted((path / "state").glob("journal.*.log"))
    return journal


def test_a_torn_last_record_is_cut_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _open(tmp_path)
    store.commit_sync([Op(TASKS, "k/1", {"n": 1})])
    store.close()
    whole = frame([[TASKS, "k/2", {"n": 2}]])
    with _journal(tmp_path).open("ab") as f:
        f.write(whole[:-3])  # the last write of a crash
    store = _open(tmp_path)
    assert store.get(TASKS, "k/1") == {"n": 1} and store.get(TASKS, "k/2") is None
    assert "torn by a crash" in caplog.text
    store.commit_sync([Op(TASKS, "k/3", {"n": 3})])  # appends after the cut
    store.close()
    store = _open(tmp_path)
    assert store.get(TASKS, "k/3") == {"n": 3}
    store.close()


def test_zero_fill_after_the_last_record_is_a_crash_not_damage(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.commit_sync([Op(TASKS, "k/1", {"n": 1})])
    store.close()
    with _journal(tmp_path).open("ab") as f:
        f.write(b"\0" * 4096)
    store = _open(tmp_path)
    assert store.get(TASKS, "k/1") == {"n": 1}
    store.close()


def test_damage_before_the_end_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.commit_sync([Op(TASKS, "k/1", {"n": 1})])
    store.commit_sync([Op(TASKS, "k/2", {"n": 2})])
    store.close()
    journal = _journal(tmp_path)
    data = bytearray(journal.read_bytes())
    data[8 + 12 + 1] ^= 0xFF  # in the first frame's payload (after the magic and its header): one follows
    journal.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupt, match=r"journal\.1\.log: a frame with a wrong checksum at byte 8 of"):
        _open(tmp_path)


def test_a_damaged_or_missing_snapshot_is_an_error_not_an_empty_start(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.commit_sync([Op(TASKS, "k/1", {"n": 1})])
    store.close()
    snapshot = tmp_path / "state" / "snapshot"
    good = snapshot.read_bytes()
    snapshot.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(StoreCorrupt, match="snapshot"):
        _open(tmp_path)
    snapshot.unlink()
    with pytest.raises(StoreCorrupt, match="snapshot is missing"):
        _open(tmp_path)
    snapshot.write_bytes(good)
    assert _open(tmp_path).get(TASKS, "k/1") == {"n": 1}


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "before-the-engine"])
def test_state_of_a_newer_schema_is_refused(tmp_path: Path, legacy: bool) -> None:
    import struct
    import zlib

    import msgpack

    (tmp_path / "state").mkdir()
    body = msgpack.packb({"schema": 99, "generation": 0, "tables": {}})
    header = struct.pack("<8sIQ", LEGACY_SNAPSHOT_MAGIC, zlib.crc32(body), len(body))
    snapshot = header + body if legacy else snapshot_bytes(0, body)
    (tmp_path / "state" / "snapshot").write_bytes(snapshot)
    with pytest.raises(StoreError, match="schema 99 is newer"):
        _open(tmp_path)


def test_compaction_bounds_the_journal_and_keeps_the_state(tmp_path: Path) -> None:
    store = _open(tmp_path, compact_bytes=16 << 10)
    for i in range(400):
        store.commit([Op(TASKS, f"k/{i % 50}", {"n": i, "pad": b"x" * 200})])
        if i % 10 == 0:
            store.flush()
    assert store.flush()
    stats = store.stats()
    assert stats.compactions >= 2 and stats.journal_bytes < 20 << 10
    store.close()
    assert len(list((tmp_path / "state").glob("journal.*.log"))) == 1
    store = _open(tmp_path)
    assert store.count(TASKS) == 50 and store.get(TASKS, "k/49") == {"n": 399, "pad": b"x" * 200}
    store.close()


#: Run in a process of its own: RLIMIT_FSIZE applies to every file of the process that sets it.
_FULL_AT_COMPACTION = """
import json, logging, resource, sys
from pathlib import Path
from agent.node.store import TASKS, Op, Store

logging.basicConfig(level=logging.INFO)
store = Store.open(Path(sys.argv[1]), compact_bytes=16 << 10)
for i in range(250):  # 250 KiB of state: its snapshot will not fit under the limit below
    store.commit([Op(TASKS, f"k/{i}", {"n": i, "pad": b"x" * 1000})])
assert store.flush()  # the compaction it starts is over before the writer takes the next commit:
store.commit_sync([Op(TASKS, "k/0", {"n": 0, "pad": b"x" * 1000})])
generation = store.stats().generation
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (200 << 10, hard))  # no file may pass 200 KiB: EFBIG
for i in range(40):  # 40 KiB of journal: two compactions are due, and fail
    store.commit_sync([Op(TASKS, f"k/{i}", {"n": 1000 + i, "pad": b"y" * 1000})])
failed = store.stats()
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
for i in range(40, 60):
    store.commit_sync([Op(TASKS, f"k/{i}", {"n": 1000 + i, "pad": b"y" * 1000})])
print(json.dumps({"before": generation, "failed": list(failed), "after": list(store.stats()),
                  "store_failed": repr(store.failed)}))
store.close()
"""


def test_a_compaction_that_fails_for_want_of_space_leaves_the_state_and_the_writer_going(
    tmp_path: Path,
) -> None:
    """A full disk during compaction: every commit still becomes durable on the old journal, the
    state stays readable, and the next compaction once there is space succeeds. (It used to end
    the writer thread, and every later commit waited for ever.)"""
    done = subprocess.run(
        [sys.executable, "-c", _FULL_AT_COMPACTION, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    failed = store_module.StoreStats(*report["failed"])
    after = store_module.StoreStats(*report["after"])
    assert report["store_failed"] == "None"
    assert failed.generation == report["before"] and failed.compaction_failures == 2
    assert "compaction failed ([Errno 27] File too large)" in done.stderr
    assert after.generation == report["before"] + 1 and after.compaction_failures == 2
    assert not list((tmp_path / "state").glob(".snapshot.*"))  # no temporary file left behind
    store = _open(tmp_path)
    assert store.count(TASKS) == 250
    assert [store.get(TASKS, f"k/{i}")["n"] for i in (0, 39, 59, 60)] == [1000, 1039, 1059, 60]
    store.close()


def test_a_journal_left_by_an_interrupted_compaction_is_removed(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.commit_sync([Op(TASKS, "k/1", {"n": 1})])
    old = _journal(tmp_path)
    old_bytes = old.read_bytes()
    store.compact()
    store.close()
    [new] = (tmp_path / "state").glob("journal.*.log")
    assert new != old
    old.write_bytes(old_bytes)  # as if the unlink had not happened
    store = _open(tmp_path)
    assert list((tmp_path / "state").glob("journal.*.log")) == [new]
    assert store.get(TASKS, "k/1") == {"n": 1}
    store.close()


def test_finished_tasks_go_to_day_partitions_and_expire(tmp_path: Path) -> None:
    store = _open(tmp_path, retention_days=2)
    now = time.time()
    old = now - 5 * 86400
    store.commit([Op(TASKS, "k/1", {"n": 1})])
    store.commit_sync(
        [
            Op(HISTORY, "k/1", {"key": "k/1", "finished_at": now}),
            Op(HISTORY, "k/0", {"key": "k/0", "finished_at": old}),
            Op(TASKS, "k/1", None),
        ]
    )
    assert store.count(TASKS) == 0
    assert sorted(doc["key"] for doc in store.history()) == ["k/0", "k/1"]
    assert store.expire_history(now) == 1
    assert [doc["key"] for doc in store.history()] == ["k/1"]
    store.compact()  # the snapshot holds live state only
    assert store.count(TASKS) == 0
    store.close()


def test_the_replay_cache_survives_a_restart_and_forgets_expired_rows(tmp_path: Path) -> None:
    store = _open(tmp_path)
    cache = DurableReplayCache(store)
    now = time.time()
    live = ReplayRecord("dev", b"n" * 16, "t1", b"s" * 64, now + 100)
    stale = ReplayRecord("dev", b"m" * 16, "t2", b"z" * 64, now - 1)
    for record in (live, stale):
        assert cache.claim(record) is None
    assert cache.claim(live._replace(task_id="other")) == live  # same nonce
    assert cache.claim(live._replace(nonce=b"q" * 16)) == live  # same id
    store.commit_sync([cache.row_op("dev", live.nonce), cache.row_op("dev", stale.nonce)])
    peeked = ReplayRecord("dev", b"u" * 16, "t3", b"y" * 64, now + 100)
    assert cache.peek().claim(peeked) is None and cache.peek().claim(live) == live
    assert cache.by_nonce("dev", b"u" * 16) is None  # a peek claims nothing
    store.close()
    store = _open(tmp_path)
    cache = DurableReplayCache(store)
    assert cache.by_nonce("dev", b"n" * 16) == live and cache.by_id("dev", "t1") == live
    assert cache.expire(now) == 0  # nothing proves the time yet: the floor of the clock is 0
    cache.observe(now, 0.0)  # a task issued `now` passed check 5 (see store/replay.py)
    assert cache.expire(now) == 1 and cache.by_id("dev", "t2") is None
    assert store.count(REPLAY) == 1
    store.close()


def test_the_session_counter_is_durable(tmp_path: Path) -> None:
    store = _open(tmp_path)
    assert [store.next_session() for _ in range(3)] == [1, 2, 3]
    store.close()
    store = _open(tmp_path)
    assert store.next_session() == 4 and store.get(META, "agent")["session"] == 4
    store.close()


# --- kill -9 at any instant ----------------------------------------------------------------------------

_WRITER = """
import sys, threading
from pathlib import Path
from agent.node.store import Op, Store, TASKS, HISTORY
store = Store.open(Path(sys.argv[1]), compact_bytes=int(sys.argv[2]))
start = len(store.tables[TASKS])
lock = threading.Lock()
def durable(i):
    with lock:
        sys.stdout.write(f"{i}\\n"); sys.stdout.flush()
i = int(sys.argv[3])
while True:
    ops = [Op(TASKS, f"k/{i}", {"n": i, "pad": b"p" * 300})]
    if i % 3 == 0:
        ops.append(Op(HISTORY, f"k/{i}", {"key": f"k/{i}", "finished_at": 1.7e9}))
    store.commit(ops, lambda i=i: durable(i))
    i += 1
"""


def _read_ints(stream: IO[bytes], into: list[int]) -> None:
    into.extend(int(line) for line in stream)


@pytest.mark.parametrize("compact_bytes", [1 << 30, 32 << 10])
def test_kill_9_at_any_instant_loses_nothing_that_was_durable(tmp_path: Path, compact_bytes: int) -> None:
    """A writer commits as fast as it can and prints each commit once durable; it is killed at
    random moments (during compactions too, with a small `compact_bytes`); every printed commit
    must be there after each restart."""
    import random

    rng = random.Random(7)
    next_key = 0
    for _round in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(compact_bytes), str(next_key)],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        durable: list[int] = []
        reader = threading.Thread(target=_read_ints, args=(proc.stdout, durable))
        reader.start()
        deadline = time.monotonic() + 30
        while len(durable) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join()
        proc.stdout.close()
        assert durable, "the writer made no progress"
        store = _open(tmp_path)
        missing = [i for i in durable if store.get(TASKS, f"k/{i}") != {"n": i, "pad": b"p" * 300}]
        assert not missing, f"acknowledged but lost: {missing[:10]}"
        next_key = max(durable) + 10_000
        store.close()


#: RLIMIT_FSIZE applies to the whole process: in one of its own. Old and new APIs alike.
_SHORT_WRITE = """
import json, resource, sys
from pathlib import Path
from agent.node.store import TASKS, Op, Store
from agent.node.errors import StoreError

store = Store.open(Path(sys.argv[1]), compact_bytes=1 << 30)
acknowledged = []
for i in range(5):
    store.commit_sync([Op(TASKS, f"k/{i}", {"n": i})])
    acknowledged.append(f"k/{i}")
store.commit([Op(TASKS, "lazy", {"n": 0})], sync=False)  # an unsynced batch: the next append is a write()
assert store.flush()
[journal] = Path(sys.argv[1], "state").glob("journal.*.log")
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (journal.stat().st_size + 100, hard))
try:  # 100 bytes of it fit: the kernel writes them (a short write), the next write gets EFBIG
    store.commit_sync([Op(TASKS, "big", {"pad": b"x" * 1000})], timeout=5)
    acknowledged.append("big")
except StoreError as exc:
    print(exc, file=sys.stderr)
print(json.dumps(acknowledged))
store.close()
"""


def test_a_short_write_is_never_acknowledged_and_never_cuts_later_records(tmp_path: Path) -> None:
    """Under RLIMIT_FSIZE the kernel writes part of a batch and returns the short count. That
    batch must not be acknowledged (it was: the rest was never written, fdatasync succeeded, the
    callback ran, and the next start cut the partial record as a torn tail), and nothing may be
    appended behind it. Every acknowledged commit is there after a start, and commits go on."""
    done = subprocess.run(
        [sys.executable, "-c", _SHORT_WRITE, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    acknowledged = json.loads(done.stdout)
    assert "big" not in acknowledged and "File too large" in done.stderr
    store = _open(tmp_path)
    assert [key for key in acknowledged if store.get(TASKS, key) is None] == []
    store.commit_sync([Op(TASKS, "after", {"n": 1})])
    store.close()
    store = _open(tmp_path)
    assert store.get(TASKS, "after") == {"n": 1} and store.get(TASKS, "k/4") == {"n": 4}
    store.close()


def test_a_start_checks_todays_history_without_holding_it_in_memory(tmp_path: Path) -> None:
    """A busy day's partition is large (here 50,000 finished tasks, ~40 MB): the start walks it
    frame by frame to find a torn tail, and must neither read it whole nor decode it. (It did
    both: RSS after every restart grew with the day's history, the soak's finding.)"""
    import tracemalloc

    store = _open(tmp_path)
    doc = {"key": "k", "body": b"b" * 700, "status": "completed", "received_at": time.time()}
    for filled in range(0, 50_000, 5_000):
        ops = [Op(HISTORY, f"h/{filled + i}", {**doc, "finished_at": time.time()}) for i in range(5_000)]
        store.commit_sync([*ops, Op(TASKS, "live", doc)])
    store.close()
    size = sum(p.stat().st_size for p in (tmp_path / "history").glob("*.log"))
    tracemalloc.start()
    try:
        reopened = _open(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    reopened.close()
    assert size > 30_000_000
    assert peak < 8_000_000, (
        f"opening the store took {peak / 1e6:.0f} MB with {size / 1e6:.0f} MB of history today"
    )


def test_damage_in_todays_history_stops_the_start_and_a_torn_tail_is_cut(tmp_path: Path) -> None:
    store = _open(tmp_path)
    now = time.time()
    for i in range(3):
        store.commit_sync([Op(HISTORY, f"h/{i}", {"key": f"h/{i}", "finished_at": now})])
    store.close()
    [partition] = (tmp_path / "history").glob("*.log")
    good = partition.read_bytes()
    partition.write_bytes(good + frame({"key": "torn", "finished_at": now})[:-2])  # a crash's last write
    store = _open(tmp_path)
    assert [doc["key"] for doc in store.history()] == ["h/0", "h/1", "h/2"]
    assert partition.read_bytes() == good  # cut before anything is appended behind it
    store.close()
    damaged = bytearray(good)
    damaged[8 + 12 + 1] ^= 0x20  # the first record's payload: two follow it
    partition.write_bytes(bytes(damaged))
    with pytest.raises(StoreCorrupt, match=rf"{partition.name}: a frame with a wrong checksum at byte 8 of"):
        _open(tmp_path)
    assert partition.read_bytes() == bytes(damaged)
