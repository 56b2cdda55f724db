"""The on-disk store: replay, torn tails, corruption, compaction, the directory lock."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from broker.errors import CorruptStore, StoreError
from broker.records import StoreState
from broker.store import SNAPSHOT, Store


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


def _state(path: Path) -> StoreState:
    async def load() -> StoreState:
        store = Store(path)
        state = await store.open()
        await store.close()
        return state

    return run(load())  # type: ignore[return-value]


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
    with pytest.raises(CorruptStore, match="move it aside"):
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
