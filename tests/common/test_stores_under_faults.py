"""Both stores on the journal engine, under the same faults as the engine itself: a crash at
every byte of the last frames, a full disk in the middle of a batch, a bit flip in a middle
frame. What each must show: the state after a start is exactly a prefix of its committed
batches, holding every batch whose durability callback (the agent's `on_durable`, the broker's
PUBACK gate) ran; and damage is refused by name, never dropped."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from agent.node.errors import StoreCorrupt, StoreWriteFailed
from agent.node.store import TASKS, Op, Store
from broker.errors import StoreError
from broker.store import Store as BrokerStore
from tests.support.faults import InjectedFaults
from tests.support.stores import broker_state

BATCHES = 10


def _agent_doc(n: int) -> dict[str, object]:
    return {"n": n, "pad": b"p" * (n * 13 % 90)}


def _agent_batches(directory: Path, ops: InjectedFaults | None = None) -> tuple[Store, list[int]]:
    """BATCHES commits, each durable (its callback ran) before the next; the journal's size after each."""
    store = Store.open(directory, ops=ops) if ops else Store.open(directory)
    ends = []
    for n in range(BATCHES):
        store.commit_sync([Op(TASKS, f"k/{n}", _agent_doc(n)), Op(TASKS, f"k/{n - 1}", None)])
        ends.append(store.stats().journal_bytes)
    return store, ends


def _agent_rows(directory: Path) -> dict[str, object]:
    store = Store.open(directory)
    rows = dict(store.rows(TASKS))
    store.close()
    return rows


def test_the_agent_store_after_a_crash_at_every_byte_of_its_last_frames(tmp_path: Path) -> None:
    live = tmp_path / "live"
    store, ends = _agent_batches(live)
    for cut in range(ends[-4], ends[-1] + 1):
        crashed = tmp_path / f"cut-{cut}"
        shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("LOCK"))
        [journal] = (crashed / "state").glob("journal.*.log")
        with open(journal, "r+b") as f:
            f.truncate(cut)
        durable = sum(1 for end in ends if end <= cut)  # each of these had its callback run
        assert _agent_rows(crashed) == {f"k/{durable - 1}": _agent_doc(durable - 1)}, f"cut at {cut}"
        shutil.rmtree(crashed)
    store.close()


def test_the_agent_store_with_a_full_disk_mid_batch(tmp_path: Path) -> None:
    """ENOSPC after part of a batch's frame is on the disk: the store fails, acknowledges nothing
    of it, the frame is cut back, and a start finds every acknowledged batch."""
    ops = InjectedFaults(chunk=64, dsync=False)
    store, _ = _agent_batches(tmp_path, ops)
    ops.space = 100
    called: list[int] = []
    store.commit([Op(TASKS, "big", {"pad": b"x" * 1000})], lambda: called.append(1))
    assert not store.flush(10)
    assert called == [] and isinstance(store.failed, StoreWriteFailed)
    assert "No space left on device" in str(store.failed)
    store.close()
    assert _agent_rows(tmp_path) == {f"k/{BATCHES - 1}": _agent_doc(BATCHES - 1)}


# -- the broker's store ------------------------------------------------------------------------------


async def _broker_batches(
    directory: Path, ops: InjectedFaults | None = None
) -> tuple[BrokerStore, list[int]]:
    store = BrokerStore(directory, ops=ops) if ops else BrokerStore(directory)
    await store.open()
    ends = []
    for n in range(BATCHES):
        store.retain(f"r/{n}", b"v" * (n * 13 % 90), 1)
        store.clear_retained(f"r/{n - 1}")
        gate = store.accepted()  # a PUBLISH's PUBACK waits for this
        assert gate is not None
        await gate
        ends.append(store.journal_bytes)
    return store, ends


def _broker_retained(directory: Path) -> set[str]:
    return set(broker_state(directory).retained)


def test_the_broker_store_after_a_crash_at_every_byte_of_its_last_frames(tmp_path: Path) -> None:
    live = tmp_path / "live"

    async def fill() -> list[int]:
        store, ends = await _broker_batches(live)
        store._journal.close()  # no final snapshot: as a crash
        return ends

    ends = asyncio.run(fill())
    for cut in range(ends[-4], ends[-1] + 1):
        crashed = tmp_path / f"cut-{cut}"
        shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("lock"))
        [journal] = crashed.glob("journal.*.log")
        with open(journal, "r+b") as f:
            f.truncate(cut)
        durable = sum(1 for end in ends if end <= cut)  # each of these had its PUBACK sent
        assert _broker_retained(crashed) == {f"r/{durable - 1}"}, f"cut at {cut}"
        shutil.rmtree(crashed)


def test_the_broker_store_with_a_full_disk_mid_batch(tmp_path: Path) -> None:
    ops = InjectedFaults(chunk=64, dsync=False)
    crashed = tmp_path / "crashed"

    async def scenario() -> None:
        store, _ = await _broker_batches(tmp_path / "live", ops)
        ops.space = 100
        store.retain("big", b"x" * 1000, 1)
        gate = store.accepted()
        assert gate is not None
        with pytest.raises(StoreError, match="No space left on device"):
            await gate  # no PUBACK: the publisher sends it again
        assert store.stats.failures == 1
        ops.space = 1 << 50
        store.retain("after", b"y", 1)
        gate = store.accepted()
        assert gate is not None
        await gate
        shutil.copytree(tmp_path / "live", crashed, ignore=shutil.ignore_patterns("lock"))
        await store.close()

    asyncio.run(scenario())
    assert _broker_retained(crashed) == {f"r/{BATCHES - 1}", "big", "after"}  # "big": at least once


def test_the_broker_store_refuses_a_bit_flip_in_a_middle_frame(tmp_path: Path) -> None:
    """One flipped bit in the third of ten frames: the start is refused naming the file and the
    offset; the seven acknowledged frames after it are not dropped (before the engine, the broker
    read up to the flip with a warning, and forgot everything after it)."""

    async def fill() -> list[int]:
        store, ends = await _broker_batches(tmp_path)
        store._journal.close()  # no final snapshot: as a crash
        return ends

    ends = asyncio.run(fill())
    [journal] = tmp_path.glob("journal.*.log")
    data = bytearray(journal.read_bytes())
    data[ends[1] + 16] ^= 0x01
    journal.write_bytes(bytes(data))
    with pytest.raises(
        StoreCorrupt, match=rf"{journal.name}: a frame with a wrong checksum at byte {ends[1]}"
    ):
        _broker_retained(tmp_path)
    assert journal.read_bytes() == bytes(data)
