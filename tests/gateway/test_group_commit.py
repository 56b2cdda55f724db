"""The submitter's group commit: concurrent requests share transactions (and their fsync), each
still learns its own outcome, on a real SQLite record."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.errors import DuplicateTask
from gateway.records import Submitted, TaskRecords
from gateway.submit import GroupCommit


def task(task_id: str) -> Submitted:
    return Submitted(task_id, "webapp", "stats", "node-1", 5, 2e9, "edge/tasks/node-1", task_id.encode())


def test_concurrent_records_share_commits_and_a_duplicate_fails_alone(tmp_path: Path) -> None:
    records = TaskRecords.open(tmp_path)
    records.submitted(task("taken"))
    batches: list[int] = []

    def commit(batch: list[Submitted]) -> list[DuplicateTask | None]:
        batches.append(len(batch))
        return records.submitted_many(batch)

    async def main() -> list[BaseException | None]:
        group = GroupCommit(commit)
        ids = [f"t{n}" for n in range(200)] + ["taken"]
        outcomes = await asyncio.gather(*(group.add(task(i)) for i in ids), return_exceptions=True)
        return list(outcomes)

    outcomes = asyncio.run(main())
    assert sum(batches) == 201 and len(batches) < 20, batches  # shared, not one commit per request
    assert outcomes[:200] == [None] * 200
    assert isinstance(outcomes[200], DuplicateTask)
    assert records.counts() == {"submitted": 201}
    assert all(records.get(f"t{n}") is not None for n in range(200))


def test_a_failed_transaction_fails_every_request_of_it(tmp_path: Path) -> None:
    def broken(batch: list[Submitted]) -> list[DuplicateTask | None]:
        raise OSError("disk gone")

    async def main() -> None:
        await GroupCommit(broken).add(task("x"))

    with pytest.raises(OSError, match="disk gone"):
        asyncio.run(main())
