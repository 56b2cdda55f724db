"""The on-disk store: replay, torn tails, corruption, compaction, the directory lock."""

from __future__ import annotations

import asyncio
import errno
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import msgpack
import pytest

from agent.common.journal import LEGACY_BROKER, scan
from broker.errors import CorruptStore, StoreError
from broker.store import ACK_WAIT_CAP, SNAPSHOT, Store
from tests.support.faults import InjectedFaults
from tests.support.stores import broker_state


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _fill(store: Store) -> None:
    await store.open()
    store.session_opened("c1", "alice")
    store.subscribed("c1", "a/#", 1)
    seq = store.message("a/b", b"payload")
    store.queued("c1", seq, 1, False)
    seq2 = store.message("a/c", b"second")
    store.queued("c1", seq2, 1, True)
    store.done("c1", seq)
    store.retain("r/x", b"kept", 1)
    store.retain("r/y", b"gone", 0)
    store.clear_retained("r/y")
    barrier = store.barrier()
    assert barrier is not None
    await barrier


_state = broker_state


def test_state_survives_close_and_reopen(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(tmp_path)
        await _fill(store)
        await store.close()

    run(scenario())
    state = _state(tmp_path)
    session = state.sessions["c1"]
    assert session.username == "alice" and session.subscriptions == {"a/#": 1}
    assert [state.messages[seq] for seq in session.pending] == [("a/c", b"second")]
    assert list(session.pending.values()) == [(1, True)]
    assert state.retained == {"r/x": (b"kept", 1)}


def _crash_copy(source: Path, target: Path) -> None:
    """What a crash right now would leave: the files as they are, no final snapshot."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("lock"))


def test_journal_is_replayed_after_a_crash(tmp_path: Path) -> None:
    crashed = tmp_path / "crashed"

    async def scenario() -> None:
        store = Store(tmp_path / "live")
        await _fill(store)
        _crash_copy(tmp_path / "live", crashed)
        await store.close()

    run(scenario())
    state = _state(crashed)
    assert list(state.sessions["c1"].pending) and state.retained == {"r/x": (b"kept", 1)}


def test_a_torn_last_record_is_cut_off(tmp_path: Path) -> None:
    crashed = tmp_path / "crashed"

    async def scenario() -> None:
        store = Store(tmp_path / "live")
        await _fill(store)
        store.retain("r/z", b"new", 1)
        barrier = store.barrier()
        assert barrier is not None
        await barrier
        _crash_copy(tmp_path / "live", crashed)
        await store.close()

    run(scenario())
    [journal] = crashed.glob("journal.*.log")
    journal.write_bytes(journal.read_bytes()[:-3])  # the last write was torn by a power cut
    state = _state(crashed)
    assert "r/z" not in state.retained and state.retained["r/x"] == (b"kept", 1)
    assert _state(crashed).retained == state.retained  # and the cut is final, not repeated


def test_a_corrupt_snapshot_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / SNAPSHOT).write_bytes(b"\x93not a snapshot")
    with pytest.raises(CorruptStore, match=r"snapshot\.msgpack: not a valid snapshot .* move it aside"):
        _state(tmp_path)


def test_compaction_bounds_the_journal(tmp_path: Path) -> None:
    async def churn() -> int:
        store = Store(tmp_path, fsync=False, compact_bytes=4096)
        await store.open()
        store.session_opened("c1", None)
        for _ in range(300):
            seq = store.message("t", b"x" * 100)
            store.queued("c1", seq, 1, False)
            written = store.accepted()  # on disk before it is acknowledged: M, Q, then A
            assert written is not None
            await written
            store.done("c1", seq)
        generation = store.gen
        await store.close()
        return generation

    generation = run(churn())
    assert isinstance(generation, int) and generation > 3  # compacted along the way
    assert sum(p.stat().st_size for p in tmp_path.glob("journal.*.log")) < 8192
    assert _state(tmp_path).sessions["c1"].pending == {}


def test_one_broker_per_data_directory(tmp_path: Path) -> None:
    async def two() -> None:
        first = Store(tmp_path)
        await first.open()
        try:
            with pytest.raises(StoreError, match="in use"):
                await Store(tmp_path).open()
        finally:
            await first.close()

    run(two())


# -- group commit with cancellation (broker/journal.py) ---------------------------------------


def _journal_records(data_dir: Path) -> list[list[object]]:
    [journal] = data_dir.glob("journal.*.log")
    found = scan(journal.read_bytes(), LEGACY_BROKER)
    assert found.valid_length == journal.stat().st_size
    return [rec for batch in found.values for rec in batch]


async def _subscribed(store: Store, *client_ids: str) -> None:
    await store.open()
    for client_id in client_ids:
        store.session_opened(client_id, None)
        store.subscribed(client_id, "t/#", 1)
    barrier = store.barrier()
    assert barrier is not None
    await barrier


def test_an_entry_acknowledged_before_its_batch_is_written_leaves_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(tmp_path, ack_wait_s=10)  # never due here: only the acknowledgement ends it
        await _subscribed(store, "c1")
        seq = store.message("t/a", b"body")
        store.queued("c1", seq, 1, False, sent=True)
        accepted = store.accepted()
        assert accepted is not None and not accepted.done()  # no PUBACK yet: not safe yet
        store.done("c1", seq)
        assert accepted.done() and accepted.exception() is None  # safe: delivered
        await asyncio.sleep(0.05)  # give the writer every chance to write something
        assert [rec[0] for rec in _journal_records(tmp_path)] == ["S", "B"]
        assert store.stats.cancelled == 1 and seq not in store.state.messages
        await store.close()

    run(scenario())


def test_a_body_is_written_for_the_session_that_did_not_acknowledge(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(tmp_path, ack_wait_s=0.02)
        await _subscribed(store, "c1", "c2")
        seq = store.message("t/a", b"body")
        store.queued("c1", seq, 1, False, sent=True)
        store.queued("c2", seq, 1, False, sent=True)
        accepted = store.accepted()
        assert accepted is not None
        store.done("c1", seq)
        assert not accepted.done()  # c2 has it still
        await accepted  # written when ack_wait passed without another acknowledgement
        kinds = [rec[:2] for rec in _journal_records(tmp_path)]
        assert kinds[-2:] == [["M", seq], ["Q", "c2"]]  # c1's entry was cancelled
        store.done("c2", seq)  # now written: an A follows
        await store.close()

    run(scenario())
    assert _state(tmp_path).sessions["c2"].pending == {}


def test_a_torn_last_batch_is_cut_off_whole(tmp_path: Path) -> None:
    crashed = tmp_path / "crashed"

    async def scenario() -> None:
        store = Store(tmp_path / "live")
        await store.open()
        store.retain("r/a", b"first", 1)
        await _written(store)
        store.retain("r/b", b"second", 1)
        store.retain("r/c", b"third", 1)  # one batch with r/b
        await _written(store)
        _crash_copy(tmp_path / "live", crashed)
        await store.close()

    run(scenario())
    [journal] = crashed.glob("journal.*.log")
    journal.write_bytes(journal.read_bytes()[:-1])
    assert _state(crashed).retained == {"r/a": (b"first", 1)}  # neither half of the torn batch


async def _written(store: Store) -> None:
    barrier = store.barrier()
    assert barrier is not None
    await barrier


def test_a_journal_framed_record_by_record_is_still_read(tmp_path: Path) -> None:
    frames = [["S", "c1", "alice"], ["M", 1, "t/a", b"old"], ["Q", "c1", 1, 1, False]]
    data = b""
    for rec in frames:  # the framing before batches: one record per frame
        body = msgpack.packb(rec, use_bin_type=True)
        data += struct.pack(">II", len(body), zlib.crc32(body)) + body
    (tmp_path / "journal.1.log").write_bytes(data)
    empty = {"format": 1, "gen": 1, "next_seq": 1, "retained": [], "messages": [], "sessions": []}
    (tmp_path / SNAPSHOT).write_bytes(msgpack.packb(empty))  # a snapshot of that time: bare msgpack
    state = _state(tmp_path)
    assert state.messages == {1: ("t/a", b"old")} and list(state.sessions["c1"].pending) == [1]


@pytest.mark.parametrize("failing", ["write", "fdatasync"])
def test_a_failed_write_fails_the_publish_waiting_for_it(tmp_path: Path, failing: str) -> None:
    """EIO on the write, or on the fdatasync after it (a dying disk): no PUBACK."""
    ops = InjectedFaults(dsync=False)

    async def scenario() -> None:
        store = Store(tmp_path, ops=ops)
        await _subscribed(store, "c1")
        ops.fail[failing] = errno.EIO
        seq = store.message("t/a", b"body")
        store.queued("c1", seq, 1, False)  # offline: written at once
        accepted = store.accepted()
        assert accepted is not None
        with pytest.raises(StoreError, match=r"journal write failed: appending .* Input/output error"):
            await accepted
        await store.close()

    run(scenario())


def test_after_a_failed_write_the_next_is_a_snapshot_and_nothing_is_lost(tmp_path: Path) -> None:
    """A batch that cannot be written (ENOSPC) fails the PUBACKs waiting for it, so the publishers
    send again, and the writer goes on. Its records are in the broker's memory but in no file: the
    next write is a new generation (a snapshot of everything), never an append that would leave
    the journal without them. A crash copy taken then holds both messages."""
    ops = InjectedFaults()
    crashed = tmp_path / "crashed"

    async def scenario() -> None:
        store = Store(tmp_path / "live", ops=ops)
        await _subscribed(store, "c1")
        generation = store.gen
        for expected in (StoreError, None):
            ops.space = 0 if expected else 1 << 50
            seq = store.message("t/a", b"body")
            store.queued("c1", seq, 1, False)  # offline: written at once
            accepted = store.accepted()
            assert accepted is not None
            if expected is None:
                await asyncio.wait_for(accepted, 5)  # the writer is still there
            else:
                with pytest.raises(StoreError, match="No space left on device"):
                    await asyncio.wait_for(accepted, 5)  # a dead writer would leave it pending
        assert store.gen == generation + 1  # the second write was a switch, not an append
        _crash_copy(tmp_path / "live", crashed)
        await store.close()

    run(scenario())
    assert len(_state(crashed).sessions["c1"].pending) == 2


def test_every_batch_gets_its_full_wait_for_acknowledgements(tmp_path: Path) -> None:
    """The wait is timed from a batch's own first hot entry: one that was entirely cancelled
    leaves no deadline behind that would make the next batch be written at once."""

    async def scenario() -> None:
        store = Store(tmp_path, ack_wait_s=0.2)
        await _subscribed(store, "c1")
        for _ in range(2):
            seq = store.message("t/a", b"body")
            store.queued("c1", seq, 1, False, sent=True)
            accepted = store.accepted()
            assert accepted is not None
            await asyncio.sleep(0.01)
            assert not accepted.done()  # neither written nor acknowledged yet
            store.done("c1", seq)
            assert accepted.done()
            await asyncio.sleep(0.3)  # past the first entry's deadline
        assert store.stats.cancelled == 2
        assert [rec[0] for rec in _journal_records(tmp_path)] == ["S", "B"]
        await store.close()

    run(scenario())


def test_acknowledgements_that_keep_coming_hold_a_batch_at_most_the_cap(tmp_path: Path) -> None:
    """A subscriber that never acknowledges, beside one whose acknowledgements keep cancelling:
    its entry is written at the latest ACK_WAIT_CAP x ack_wait after it was sent."""

    async def scenario() -> None:
        store = Store(tmp_path, ack_wait_s=0.01)
        await _subscribed(store, "slow", "quick")
        seq = store.message("t/a", b"body")
        store.queued("slow", seq, 1, False, sent=True)
        held = store.accepted()
        assert held is not None
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not held.done() and loop.time() - start < 5:
            other = store.message("t/b", b"x")
            store.queued("quick", other, 1, False, sent=True)
            store.accepted()
            await asyncio.sleep(0.002)
            store.done("quick", other)  # progress: the batch keeps waiting, up to the cap
        await held
        waited = loop.time() - start
        assert 0.01 < waited < 0.01 * ACK_WAIT_CAP + 1.0
        assert ["Q", "slow", seq, 1, False] in _journal_records(tmp_path)
        await store.close()

    run(scenario())


def test_records_after_a_cancelled_group_are_waited_for(tmp_path: Path) -> None:
    """Records that no caller waited for (a retained message sent after a SUBACK) form a group
    that cancellation completes; what is recorded next must not join that finished group."""

    async def scenario() -> None:
        store = Store(tmp_path, ack_wait_s=10)
        await _subscribed(store, "c1", "c2")
        waiting = store.message("t/w", b"in flight to c2")
        store.queued("c2", waiting, 1, False, sent=True)  # keeps the batch from being empty
        assert store.accepted() is not None
        retained = store.message("t/r", b"retained")
        store.queued("c1", retained, 1, True, sent=True)  # no accepted(): nobody waits for it
        store.done("c1", retained)  # cancelled: its group is done
        seq = store.message("t/a", b"next")
        store.queued("c2", seq, 1, False)  # c2 offline: must be on disk before the PUBACK
        accepted = store.accepted()
        assert accepted is not None and not accepted.done()
        await accepted
        assert ["Q", "c2", seq, 1, False] in _journal_records(tmp_path)
        await store.close()

    run(scenario())


#: RLIMIT_FSIZE applies to the whole process: in one of its own. Old and new APIs alike.
_SHORT_WRITE = """
import asyncio, json, resource, sys
from pathlib import Path
from broker.store import Store

async def main():
    store = Store(Path(sys.argv[1]))
    await store.open()
    store.session_opened("c1", "alice")
    store.subscribed("c1", "t/#", 1)
    await store.barrier()
    acknowledged = []

    async def publish(body):
        seq = store.message("t/a", body)
        store.queued("c1", seq, 1, False)  # offline: written at once
        try:
            await asyncio.wait_for(store.accepted(), 5)
        except Exception as exc:
            print(exc, file=sys.stderr)
            return
        acknowledged.append(body.decode()[:8])

    for n in range(3):
        await publish(b"before-%d" % n)
    [journal] = Path(sys.argv[1]).glob("journal.*.log")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (journal.stat().st_size + 100, hard))
    await publish(b"big-0000" + b"x" * 2000)  # 100 bytes fit: a short write, then EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
    for n in range(3):
        await publish(b"after-%d" % n)
    print(json.dumps(acknowledged))
    # a crash: no close (it would write a snapshot of everything)

asyncio.run(main())
"""


def test_a_short_write_is_never_acknowledged_and_never_cuts_later_records(tmp_path: Path) -> None:
    """Under RLIMIT_FSIZE the kernel writes part of a batch and returns the short count. That
    PUBLISH must get no PUBACK (it did: fsync succeeded), and the batches written once there is
    space again must not land behind the partial frame (they did, and the next start cut them all
    with it). After a crash every acknowledged message is there."""
    done = subprocess.run(
        [sys.executable, "-c", _SHORT_WRITE, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    acknowledged = json.loads(done.stdout)
    assert "big-0000" not in acknowledged and "File too large" in done.stderr
    assert acknowledged[-1] == "after-2"
    state = _state(tmp_path)
    kept = sorted(state.messages[seq][1].decode()[:8] for seq in state.sessions["c1"].pending)
    assert [body for body in acknowledged if body not in kept] == []
