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
