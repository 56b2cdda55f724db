"""The gateway's task record: a real SQLite file in WAL mode, results per node and run, pages,
and a record that survives the process being killed right after a commit."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agent.protocol import Result
from gateway.errors import ApiError, StoreError
from gateway.records import Submitted, TaskRecords, iter_pages


def submitted(task_id: str, target: str = "node-1", client: str = "webapp") -> Submitted:
    return Submitted(task_id, client, "stats", target, 5, 2e9, "edge/tasks/node-1", task_id.encode())


def result(
    task_id: str, node: str = "node-1", run: int = 1, status: str = "completed", value: object = None
) -> Result:
    error = None if status == "completed" else {"code": "invalid_params", "message": "no"}
    return Result(task_id, node, "stats", status, run, 1, 1.0, 1.1, 1.2, 0.1, value, error)


def test_a_task_goes_from_submitted_to_its_results(tmp_path: Path) -> None:
    records = TaskRecords.open(tmp_path)
    records.submitted(submitted("t1", target="all"))
    assert records.get("t1").status == "submitted"  # type: ignore[union-attr]
    records.submitted(submitted("t0"))
    assert records.unpublished() == [("t1", "edge/tasks/node-1", b"t1"), ("t0", "edge/tasks/node-1", b"t0")]
    records.published("t1")
    assert records.get("t1").pending  # type: ignore[union-attr]
    assert records.unpublished() == [("t0", "edge/tasks/node-1", b"t0")]  # acknowledged: not again
    assert records.answered(result("t1", "node-1", value=np.arange(3.0)))
    assert records.answered(result("t1", "node-2", value={"mean": 2.5}))
    assert records.answered(result("t1", "node-2", value={"mean": 2.5}))  # a re-published duplicate
    row = records.get("t1")
    assert row is not None and row.status == "completed" and not row.pending
    assert [(a.node, a.result) for a in row.answers] == [
        ("node-1", [0.0, 1.0, 2.0]),
        ("node-2", {"mean": 2.5}),
    ]
    assert not records.answered(result("not-ours"))
    assert records.get("not-ours") is None
    records.submitted(submitted("t2"))
    assert records.answered(result("t2", status="rejected"))
    assert records.get("t2").error == {"code": "invalid_params", "message": "no"}  # type: ignore[union-attr]
    assert records.counts() == {"completed": 1, "rejected": 1, "submitted": 1}


def test_a_rejects_report_ends_the_task_it_names_by_digest(tmp_path: Path) -> None:
    records = TaskRecords.open(tmp_path)
    records.submitted(submitted("t1"))
    assert (
        records.refused(hashlib.sha256(b"t1").digest(), "bad_signature", "signature does not verify") == "t1"
    )
    assert records.refused(b"\0" * 32, "bad_signature", "x") is None
    row = records.get("t1")
    assert (
        row is not None
        and row.status == "refused"
        and row.error
        == {
            "code": "bad_signature",
            "message": "signature does not verify",
        }
    )


def test_pages_newest_first_with_filters_and_an_opaque_cursor(tmp_path: Path) -> None:
    records = TaskRecords.open(tmp_path)
    for n in range(7):
        records.submitted(submitted(f"t{n}", client="a" if n % 2 else "b"), now=1000.0 + n)
    records.answered(result("t3", node="node-9"))
    first, cursor = records.page(limit=3)
    assert [r.id for r in first] == ["t6", "t5", "t4"] and cursor is not None
    assert [r.id for r in iter_pages(records, limit=3)] == [f"t{n}" for n in range(6, -1, -1)]
    assert [r.id for r in iter_pages(records, client="a", limit=2)] == ["t5", "t3", "t1"]
    assert [r.id for r in records.page(node="node-9")[0]] == ["t3"]
    assert [r.id for r in records.page(status="completed")[0]] == ["t3"]
    with pytest.raises(ApiError) as bad:
        records.page(cursor="bm90IGpzb24")
    assert (bad.value.status, bad.value.code, bad.value.field) == (400, "invalid_cursor", "cursor")


def test_what_was_committed_survives_a_kill_9_right_after(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import hashlib, os, signal
        from gateway.records import Submitted, TaskRecords
        records = TaskRecords.open(__import__("pathlib").Path({str(tmp_path)!r}))
        for n in range(50):
            records.submitted(Submitted(f"k{{n}}", "c", "stats", "n1", 5, 2e9, "edge/tasks/n1", bytes([n])))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL
    records = TaskRecords.open(tmp_path)
    assert len(list(iter_pages(records, limit=20))) == 50


def test_a_record_of_a_newer_gateway_is_refused(tmp_path: Path) -> None:
    TaskRecords.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / "tasks.sqlite3")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError) as exc:
        TaskRecords.open(tmp_path)
    assert "newer gateway (schema 99)" in str(exc.value)


#: The record as the gateway of issue 18 wrote it (schema 1), with one task and its result.
SCHEMA_1 = """
CREATE TABLE tasks (id TEXT PRIMARY KEY, client TEXT NOT NULL, kernel TEXT NOT NULL, target TEXT NOT NULL,
    priority INTEGER NOT NULL, status TEXT NOT NULL, submitted_at REAL NOT NULL, updated_at REAL NOT NULL,
    expires_at REAL NOT NULL, trace TEXT, payload_sha256 BLOB NOT NULL, error TEXT, topic TEXT NOT NULL,
    payload BLOB);
CREATE INDEX tasks_by_time ON tasks (submitted_at DESC, id DESC);
CREATE INDEX tasks_by_sha ON tasks (payload_sha256);
CREATE INDEX tasks_unpublished ON tasks (status) WHERE status = 'submitted';
CREATE TABLE results (task_id TEXT NOT NULL REFERENCES tasks (id), node TEXT NOT NULL, run INTEGER NOT NULL,
    attempt INTEGER NOT NULL, status TEXT NOT NULL, received_at REAL NOT NULL, started_at REAL,
    finished_at REAL, duration_ms REAL, result BLOB, error TEXT, answered_at REAL NOT NULL,
    PRIMARY KEY (task_id, node, run));
INSERT INTO tasks VALUES ('old-1', 'webapp', 'stats', 'node-1', 3, 'completed', 100.0, 101.0, 2e9, NULL,
    X'00', NULL, 'edge/tasks/node-1', NULL);
INSERT INTO results VALUES ('old-1', 'node-1', 1, 1, 'completed', 100.5, 100.6, 100.7, 0.1, X'2a', NULL,
    101.0);
PRAGMA user_version=1;
"""


def test_a_record_of_the_previous_schema_is_migrated_and_keeps_its_tasks(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "tasks.sqlite3")
    db.executescript(SCHEMA_1)
    db.close()
    records = TaskRecords.open(tmp_path)
    old = records.get("old-1")
    assert old is not None and old.status == "completed" and old.priority == 3
    assert old.params_summary is None and old.answers[0].result == 42
    summary = {"signal": {"shape": [3], "dtype": "float64"}}
    records.submitted(replace(submitted("new-1"), params_summary=summary))
    assert records.get("new-1").params_summary == summary  # type: ignore[union-attr]
    records.close()
    again = TaskRecords.open(tmp_path)  # opened again: nothing to migrate, nothing lost
    assert again.get("new-1").params_summary == summary  # type: ignore[union-attr]
    assert [r.id for r in iter_pages(again)] == ["new-1", "old-1"]
    again.close()
    db = sqlite3.connect(tmp_path / "tasks.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()
