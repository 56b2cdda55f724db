"""Stores written before the journal engine are read by it, then rewritten in its format.

The files in tests/fixtures/legacy_stores/ were written by the code of commit b3e4052 (the two
framings the engine replaced), by tests/fixtures/legacy_stores/make.py, which says what they
hold; these tests open copies of them with today's stores."""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.common.journal import MAGIC, SNAPSHOT_MAGIC, scan
from agent.node.store import META, OUTBOX, TASKS, Op, Store
from tests.support.stores import broker_state

FIXTURES = Path(__file__).parents[1] / "fixtures" / "legacy_stores"


def _is_current(directory: Path, snapshot: str) -> bool:
    [journal] = directory.glob("journal.*.log")
    return (directory / snapshot).read_bytes().startswith(SNAPSHOT_MAGIC) and journal.read_bytes().startswith(
        MAGIC
    )


def test_an_agent_state_of_the_old_format_is_read_whole_and_rewritten(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "agent", tmp_path, dirs_exist_ok=True)
    store = Store.open(tmp_path)
    assert store.get(META, "agent") == {"session": 3}  # from the old snapshot
    assert sorted(key for key, _ in store.rows(TASKS)) == [f"dev-1/t{i}" for i in range(1, 5)]  # journal
    assert store.get(TASKS, "dev-1/t3") == {"id": "t3", "status": "queued", "body": b"\x03" * 20}
    assert store.get(OUTBOX, "dev-1/t0/1") == {"topic": "edge/results/n/t0", "body": b"r0"}
    assert [doc["id"] for doc in store.history()] == ["t0"]  # a history partition of the old framing
    assert _is_current(tmp_path / "state", "snapshot")
    finished = {"id": "t1", "status": "completed", "finished_at": 1764900001.0}  # the same day's partition
    store.commit_sync([Op(TASKS, "dev-1/t1", None), Op("history", "dev-1/t1", finished)])
    store.close()
    store = Store.open(tmp_path)
    assert store.count(TASKS) == 3 and store.get(META, "agent") == {"session": 3}
    assert [doc["id"] for doc in store.history()] == ["t0", "t1"]
    [partition] = (tmp_path / "history").glob("*.log")
    assert scan(partition.read_bytes()).framing.magic == MAGIC  # rewritten before the append
    store.close()


def test_a_broker_store_of_the_old_format_is_read_whole_and_rewritten(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "broker", tmp_path, dirs_exist_ok=True)
    state = broker_state(tmp_path)
    session = state.sessions["node-1"]
    assert session.username == "node-1" and session.subscriptions == {"edge/tasks/node-1": 1}
    assert [state.messages[seq] for seq in session.pending] == [
        ("edge/tasks/node-1", b"task-1"),
        ("edge/tasks/node-1", b"task-2"),
    ]  # task-0 was acknowledged (its A record)
    assert state.retained == {
        "edge/presence/node-1": (b"online", 1),
        "edge/presence/node-2": (b"offline", 1),  # a record framed alone, as before batches
    }
    assert _is_current(tmp_path, "snapshot.msgpack")
    assert broker_state(tmp_path).retained == state.retained
