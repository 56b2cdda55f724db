"""The task queries as they were before they went through TinyDB (agent/intake/queries.py at
8ae7f1d): dict scans of the `tasks` table, and each history day read and decoded whole.

Frozen here as the reference the TinyDB path is compared with (tests/agent/test_task_queries.py):
the same state must give the same answers, order and ties included. Do not "fix" it.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.common.errors import StoreCorrupt, StoreError
from agent.common.journal import LEGACY_AGENT, frames
from agent.node.store import TASKS, Store
from agent.node.tasks.lifecycle import Lifecycle

LIVE_STATUSES = ("queued", "scheduled", "running")
FINISHED_STATUSES = ("completed", "abandoned", "expired", "cancelled")


def describe(record: dict[str, Any], lifecycle: Lifecycle | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": record["id"],
        "kid": record["kid"],
        "kernel": record["kernel"],
        "status": record["status"],
        "priority": record["priority"],
        "run": max(1, record["run"]),
        "attempts": record["attempt"],
        "received_at": record["received_at"],
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "last_error": record.get("last_error"),
    }
    if lifecycle is not None:
        plan = lifecycle.plan(record["key"])
        if record["status"] == "scheduled":
            view["waiting_for"] = record["wait"]
            view["next_at"] = lifecycle.next_at(record["key"], record)
        if record.get("cancel"):
            view["cancel_requested"] = record["cancel"]
        trace = plan.trace if plan is not None else None
    else:
        trace = record.get("trace")
    if trace is not None:
        view["trace"] = trace
    return view


def _contains(path: Path, needle: bytes) -> bool:
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(needle) != -1
    except (OSError, ValueError):
        return False


def _read_partition(path: Path) -> list[Any]:
    data = path.read_bytes()
    scan = frames.scan(data, LEGACY_AGENT)
    if scan.damage is not None:
        raise StoreCorrupt(f"{path}: {scan.damage}")
    return scan.values


class LegacyQueries:
    def __init__(self, store: Store, lifecycle: Lifecycle) -> None:
        self.store = store
        self.lifecycle = lifecycle

    def find(self, task_id: str, kid: str | None = None) -> list[dict[str, Any]]:
        live = [
            describe(record, self.lifecycle)
            for _, record in self.store.rows(TASKS)
            if record["id"] == task_id and (kid is None or record["kid"] == kid)
        ]
        if live and kid is not None:
            return live
        found = {view["kid"]: view for view in live}
        for day in self._history(task_id.encode()):
            for record in day:
                if record.get("id") == task_id and (kid is None or record.get("kid") == kid):
                    found.setdefault(record["kid"], describe(record))
            if kid is not None and found:
                break
        return sorted(found.values(), key=lambda view: view["received_at"], reverse=True)

    def matching(self, status: str | None, kid: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        views = []
        if status is None or status in LIVE_STATUSES:
            views = [
                describe(record, self.lifecycle)
                for _, record in self.store.rows(TASKS)
                if (status is None or record["status"] == status) and (kid is None or record["kid"] == kid)
            ]
        if status is None or status in FINISHED_STATUSES:
            found = 0
            for path in reversed(self._history_days()):
                for record in self._day(path):
                    if (status is None or record.get("status") == status) and (
                        kid is None or record.get("kid") == kid
                    ):
                        views.append(describe(record))
                        found += 1
                if found > limit:
                    break
        views.sort(key=lambda view: view["received_at"], reverse=True)
        return views[:limit], len(views) > limit

    def _history_days(self) -> list[Path]:
        self.store.flush(10.0)
        return self.store.history_days()

    def _history(self, needle: bytes) -> Iterator[list[dict[str, Any]]]:
        for path in reversed(self._history_days()):
            if _contains(path, needle):
                yield self._day(path)

    @staticmethod
    def _day(path: Path) -> list[dict[str, Any]]:
        try:
            values = _read_partition(path)
        except FileNotFoundError:
            return []
        except (StoreError, OSError):
            return []
        return [value for value in reversed(values) if isinstance(value, dict)]
