"""`edge-agent store check` and `edge-broker --check-store`: the report of damage a crash cannot
leave, and `--cut`, the explicit repair. Real files, the real console scripts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from agent.node.errors import StoreCorrupt
from agent.node.store import TASKS, Op, Store
from broker.store import Store as BrokerStore
from tests.support.stores import broker_state


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_edge_agent_store_check_reports_damage_and_cut_lets_the_agent_start(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    ends = []
    for i in range(5):
        store.commit_sync([Op(TASKS, f"k/{i}", {"n": i})])
        ends.append(store.stats().journal_bytes)
    store.close()
    [journal] = (tmp_path / "state").glob("journal.*.log")
    _flip(journal, ends[1] + 20)  # in the third frame: two follow it

    healthy = _run("agent", "store", "check", str(tmp_path))  # the snapshot and history are fine...
    assert healthy.returncode == 1, healthy.stdout + healthy.stderr
    assert f"{journal}" in healthy.stdout and "damaged" in healthy.stdout
    assert (
        f"a frame with a wrong checksum at byte {ends[1]} of {ends[-1]}; 2 good frames before it"
        in healthy.stdout
    )
    assert f"edge-agent store check {tmp_path} --cut" in healthy.stdout
    with pytest.raises(StoreCorrupt, match=f"edge-agent store check {tmp_path}"):
        Store.open(tmp_path)

    cut = _run("agent", "store", "check", str(tmp_path), "--cut")
    assert cut.returncode == 0, cut.stdout + cut.stderr
    assert f"cut at byte {ends[1]}, {ends[-1] - ends[1]} bytes dropped (2 frames kept)" in cut.stdout
    assert len(list((tmp_path / "state").glob("journal.*.log.damaged-*"))) == 1
    store = Store.open(tmp_path)
    assert sorted(key for key, _ in store.rows(TASKS)) == ["k/0", "k/1"]
    store.close()
    assert _run("agent", "store", "check", str(tmp_path)).returncode == 0


def test_edge_agent_store_check_refuses_to_cut_beside_a_running_agent(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.commit_sync([Op(TASKS, "k/0", {"n": 0})])
    store.commit_sync([Op(TASKS, "k/1", {"n": 1})])
    [journal] = (tmp_path / "state").glob("journal.*.log")
    _flip(journal, 8 + 12 + 2)
    done = _run("agent", "store", "check", str(tmp_path), "--cut")
    store.close()
    assert done.returncode == 1 and "is in use by another agent" in done.stderr
    assert not list((tmp_path / "state").glob("*.damaged-*"))


def test_edge_agent_store_check_says_what_a_directory_without_state_is(tmp_path: Path) -> None:
    done = _run("agent", "store", "check", str(tmp_path))
    assert done.returncode == 2 and "holds no agent state" in done.stderr


def test_edge_broker_check_store_reports_damage_and_cut_lets_the_broker_start(tmp_path: Path) -> None:
    async def fill() -> list[int]:
        store = BrokerStore(tmp_path)
        await store.open()
        ends = []
        for n in range(4):
            store.retain(f"r/{n}", b"kept", 1)
            barrier = store.barrier()
            assert barrier is not None
            await barrier
            ends.append(store.journal_bytes)
        store._journal.close()  # a crash: no final snapshot
        return ends

    ends = asyncio.run(fill())
    [journal] = tmp_path.glob("journal.*.log")
    _flip(journal, ends[1] + 20)
    report = _run("broker", "--check-store", "--data-dir", str(tmp_path))
    assert report.returncode == 1, report.stdout + report.stderr
    assert "damaged" in report.stdout and f"at byte {ends[1]}" in report.stdout
    assert f"edge-broker --check-store --data-dir {tmp_path} --cut" in report.stdout
    cut = _run("broker", "--check-store", "--data-dir", str(tmp_path), "--cut")
    assert cut.returncode == 0, cut.stdout + cut.stderr

    assert set(broker_state(tmp_path).retained) == {"r/0", "r/1"}
