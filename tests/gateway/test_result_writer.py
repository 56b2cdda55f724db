"""Results written in groups and acknowledged to the broker only once durable (a real SQLite
record; the acknowledgement is what paho's manual ack would send)."""

from __future__ import annotations

from pathlib import Path

from agent.protocol import Result
from gateway.nodes import FleetView
from gateway.records import Submitted, TaskRecords
from gateway.resultwriter import ResultWriter


def result(task_id: str) -> Result:
    return Result(task_id, "node-1", "stats", "completed", 1, 1, 1.0, 1.1, 1.2, 0.1, {"mean": 1.0}, None)


def test_results_share_commits_and_each_is_acknowledged_after_its_commit(tmp_path: Path) -> None:
    records = TaskRecords.open(tmp_path)
    records.submitted_many(
        [Submitted(f"t{n}", "c", "stats", "node-1", 5, 2e9, "e/t", b"x") for n in range(300)]
    )
    acked: list[str] = []
    seen_at_ack: list[str | None] = []
    writer = ResultWriter(records, FleetView())

    def ack_of(task_id: str) -> object:
        def ack() -> None:
            row = records.get(task_id)  # durable before the broker hears of it
            seen_at_ack.append(row.status if row else None)
            acked.append(task_id)

        return ack

    for n in range(300):
        writer.put(result(f"t{n}"), ack_of(f"t{n}"))  # type: ignore[arg-type]
    writer.start()
    writer.stop()
    assert sorted(acked) == sorted(f"t{n}" for n in range(300))
    assert set(seen_at_ack) == {"completed"}
    assert writer.batches < 10, writer.batches  # grouped: not one commit per result


def test_a_failed_commit_acknowledges_nothing(tmp_path: Path) -> None:
    records = TaskRecords.open(tmp_path)
    records.close()  # every write now fails
    acked: list[int] = []
    writer = ResultWriter(records, FleetView())
    writer.start()
    writer.put(result("t1"), lambda: acked.append(1))
    writer.stop()
    assert acked == [] and writer.batches == 0  # the broker delivers it again


def test_a_task_read_back_before_its_result_is_written_says_what_the_answer_said(tmp_path: Path) -> None:
    """`?wait` answers with the verified result before its commit; a GET right after must not say
    the task is still `published` (it did, now and then, under load: test_api's read-back)."""
    records = TaskRecords.open(tmp_path)
    records.submitted(Submitted("t1", "c", "stats", "node-1", 5, 2e9, "e/t", b"x"))
    records.published("t1")
    writer = ResultWriter(records, FleetView())  # not started: the result stays queued
    first = result("t1")
    again = Result(
        "t1",
        "node-1",
        "stats",
        "failed",
        2,
        1,
        2.0,
        2.1,
        2.2,
        0.1,
        None,
        {"code": "kernel_error", "message": "m"},
    )
    writer.put(first, lambda: None)
    assert records.get("t1").status == "published"  # type: ignore[union-attr]
    row = writer.read("t1")
    assert row is not None and row.status == "completed" and row.error is None
    assert [(a.run, a.status, a.result) for a in row.answers] == [(1, "completed", {"mean": 1.0})]
    writer.put(again, lambda: None)
    queued = writer.read("t1")
    assert queued is not None and (queued.status, queued.error) == ("failed", again.error)
    assert [(a.run, a.status) for a in queued.answers] == [(1, "completed"), (2, "failed")]
    assert writer.read("nobody") is None
    writer.start()
    writer.stop()
    written = records.get("t1")
    assert written is not None and (written.status, written.answers) == (queued.status, queued.answers)
    assert writer.read("t1") == written  # nothing left queued


def test_a_result_whose_commit_failed_is_not_shown_as_written(tmp_path: Path) -> None:
    records = TaskRecords.open(tmp_path)
    records.submitted(Submitted("t1", "c", "stats", "node-1", 5, 2e9, "e/t", b"x"))
    writer = ResultWriter(records, FleetView())
    writer.put(result("t1"), lambda: None)
    records.close()  # the commit fails: the broker delivers the result again later
    writer.start()
    writer.stop()
    reopened = TaskRecords.open(tmp_path)
    assert ResultWriter(reopened, FleetView()).read("t1").status == "submitted"  # type: ignore[union-attr]
    assert writer._unwritten == {}  # nothing kept for a result the broker sends again
