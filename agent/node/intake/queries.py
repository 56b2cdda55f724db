"""Reading task records for `sys.status` and `sys.list`: live tasks, then the history partitions.

A task's record is in the `tasks` table while it has a future and in `history/YYYY-MM-DD.log`
once it finished (store.py). Both are shown the same way (`describe`). The history is read newest
day first; a day's file that does not contain the id asked for (a byte search, at memory speed) is
not decoded, so `sys.status` costs little more than reading the files once.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..store import TASKS, Store
from ..store.history import read_partition
from ..tasks.lifecycle import Lifecycle

log = logging.getLogger(__name__)

LIVE_STATUSES = ("queued", "scheduled", "running")
FINISHED_STATUSES = ("completed", "abandoned", "expired", "cancelled")
STATUSES = LIVE_STATUSES + FINISHED_STATUSES


def describe(record: dict[str, Any], lifecycle: Lifecycle | None = None) -> dict[str, Any]:
    """The public view of a task record (live when `lifecycle` is given, else from the history)."""
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
            view["waiting_for"] = record["wait"]  # start (run_at), retry (back-off), next (recurring run)
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
    """A byte search through the file's pages (no copy on the heap); False if it is gone or empty."""
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(needle) != -1
    except (OSError, ValueError):  # expired and deleted meanwhile, or empty (mmap refuses length 0)
        return False


class TaskQueries:
    """Finds and lists task records; safe on any thread (the store's tables are read under its lock)."""

    def __init__(self, store: Store, lifecycle: Lifecycle) -> None:
        self.store = store
        self.lifecycle = lifecycle

    def find(self, task_id: str, kid: str | None = None) -> list[dict[str, Any]]:
        """Every task `task_id` (of `kid`, if given): one record per issuer, live ones first."""
        live = [
            describe(record, self.lifecycle)
            for _, record in self.store.rows(TASKS)
            if record["id"] == task_id and (kid is None or record["kid"] == kid)
        ]
        if live and kid is not None:  # (kid, id) names one task: no need to read the history
            return live
        found = {view["kid"]: view for view in live}
        for day in self._history(task_id.encode()):
            for record in day:
                if record.get("id") == task_id and (kid is None or record.get("kid") == kid):
                    found.setdefault(record["kid"], describe(record))  # newest first: the first one wins
            if kid is not None and found:
                break  # without `kid`, every day is read: another issuer may have used the id
        return sorted(found.values(), key=lambda view: view["received_at"], reverse=True)

    def matching(self, status: str | None, kid: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Matching records, newest (by `received_at`) first, at most `limit`; and whether more matched.

        Finished tasks come from whole history days, newest first, until `limit` are found."""
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

    # -- the history --------------------------------------------------------------------------------------

    def _history_days(self) -> list[Path]:
        if not self.store.flush(10.0):  # finished tasks leave the table at once, reach their file later
            log.warning("history may lack the newest finished tasks: the store is not flushing")
        return self.store.history_days()

    def _history(self, needle: bytes) -> Iterator[list[dict[str, Any]]]:
        """The records of each day whose file contains `needle`, newest day and record first."""
        for path in reversed(self._history_days()):
            if _contains(path, needle):
                yield self._day(path)

    @staticmethod
    def _day(path: Path) -> list[dict[str, Any]]:
        """One day's records, newest first; a damaged file is logged and skipped (never fatal here)."""
        try:
            values = read_partition(path)
        except FileNotFoundError:
            return []
        except (StoreError, OSError) as exc:
            log.error("history file %s unreadable: %s", path, exc)
            return []
        return [value for value in reversed(values) if isinstance(value, dict)]
