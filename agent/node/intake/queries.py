"""Reading task records for `sys.status`, `sys.list` and `edge-agent state`: one TinyDB query
over the live tables, then over the history partitions.

A task's record is in the `tasks` table while it has a future and in `history/YYYY-MM-DD.log`
once it finished (store.py). One TinyDB `Query` selects in both: `search` on the `tasks` table (a
read-only TinyDB over the tables, store/state.py), and the same query called on each history
record as it is decoded, a frame at a time (`store.history.records`): a day's file can hold tens
of MB, and it is never held whole; `sys.list` keeps only the `limit` newest matches of a day.
Both are shown the same way (`describe`).

The answers (tests/agent/test_task_queries.py holds them to what they were before TinyDB):
- `find`: the live record of each issuer, else its newest finished one; newest received first.
  The history is read newest day first; a day's file that does not contain the id (a byte
  search, at memory speed) is not decoded; with `kid` the first day that has the task ends it.
- `matching`: the live matches, then whole history days, newest first, until more than `limit`
  finished matches were read; of those the `limit` newest received (ties: live first, then
  newer days, later records), and whether more matched.
A damaged history day is logged and left out (never fatal here).

Who reads: the agent's `Control` (the running `Store`, its lifecycle for what only the running
agent knows: plans and timers) and `edge-agent state` (`store.readonly.ReadOnlyState` and
`StoredDetails`: the same from the stored rows). Thread rules: any thread; the tables are read
under the store's lock, the history files without one.
"""

from __future__ import annotations

import functools
import heapq
import logging
import mmap
import operator
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tinydb import Query, where
from tinydb.queries import QueryInstance
from tinydb.table import Document

from agent.protocol import Limits, ProtocolError, Task, unpackb

from ..errors import StoreError
from ..store import JOBS, TASKS, StateDB
from ..store.history import records
from ..store.state import Tables

log = logging.getLogger(__name__)

LIVE_STATUSES = ("queued", "scheduled", "running")
FINISHED_STATUSES = ("completed", "abandoned", "expired", "cancelled")
STATUSES = LIVE_STATUSES + FINISHED_STATUSES
DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 100, 1000  # sys.list's `limit` (edge-agent state: no maximum)
#: The timer a scheduled record waits for, by its `wait` (the lifecycle's job ids: `Lifecycle.next_at`).
_TIMER = {"start": "start", "retry": "retry", "next": "run"}

T = TypeVar("T")
Record = dict[str, Any]
#: ((-received_at, source, position), record): `source` 0 for the live table, else the day's
#: place, newest first; `position` in the table, or minus the place in the day's file. Sorting by
#: it is the sort by `received_at`, newest first, of the records in the order they used to be read.
Ranked = tuple[tuple[float, int, int], Record]


class TaskRecords(Protocol):
    """Where the records are: the agent's `Store`, or `ReadOnlyState` read from its files."""

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    @property
    def db(self) -> StateDB: ...

    def history_days(self) -> list[Path]: ...

    def flush(self, timeout: float = ...) -> bool: ...


class Traced(Protocol):
    @property
    def trace(self) -> str | None: ...


class LiveDetails(Protocol):
    """What a live record's view holds besides the record: the agent's `Lifecycle`, or `StoredDetails`."""

    def plan(self, key: str) -> Traced | None: ...

    def next_at(self, key: str, record: Record) -> float | None: ...


class StoredDetails:
    """`LiveDetails` from the stored rows, for a reader without the running agent: the trace from
    the task's signed body (what the lifecycle's plan is decoded from), the next fire time from
    its timer's row in `jobs` (the job store commits every change APScheduler makes)."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def plan(self, key: str) -> Traced | None:
        body = (self._tables[TASKS].get(key) or {}).get("body")
        if not isinstance(body, bytes):
            return None
        try:
            return Task.from_body(unpackb(body, Limits(max_payload=max(1, len(body)))))
        except ProtocolError:  # accepted once, so not expected: the view goes without its trace
            return None

    def next_at(self, key: str, record: Record) -> float | None:
        if record["status"] != "scheduled":
            return None
        job = self._tables[JOBS].get(f"{_TIMER[record['wait']]}:{key}")
        return None if job is None else float(job["next_run_time"])


def describe(record: Record, live: LiveDetails | None = None) -> dict[str, Any]:
    """The public view of a task record (live when `live` is given, else from the history)."""
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
    if live is not None:
        plan = live.plan(record["key"])
        if record["status"] == "scheduled":
            view["waiting_for"] = record["wait"]  # start (run_at), retry (back-off), next (recurring run)
            view["next_at"] = live.next_at(record["key"], record)
        if record.get("cancel"):
            view["cancel_requested"] = record["cancel"]
        trace = plan.trace if plan is not None else None
    else:
        trace = record.get("trace")
    if trace is not None:
        view["trace"] = trace
    return view


def condition(**fields: str | None) -> QueryInstance:
    """The TinyDB query for records whose `fields` are as given (None: any)."""
    tests = [where(name) == value for name, value in fields.items() if value is not None]
    return functools.reduce(operator.and_, tests) if tests else Query().noop()


def _contains(path: Path, needle: bytes) -> bool:
    """A byte search through the file's pages (no copy on the heap); False if it is gone or empty."""
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(needle) != -1
    except (OSError, ValueError):  # expired and deleted meanwhile, or empty (mmap refuses length 0)
        return False


def _by_rank(item: Ranked) -> tuple[float, int, int]:
    return item[0]


Day = Iterator[tuple[int, Record]]  # (place in the file, record) of one day's matches, oldest first


def _newest_by_issuer(day: Day) -> dict[str, Record]:
    """The newest match of each issuer in one day, in the order a reading from the day's newest
    record back meets them."""
    last: dict[str, tuple[int, Record]] = {}
    for index, record in day:
        last[record["kid"]] = (index, record)
    newest_first = sorted(last.items(), key=lambda item: item[1][0], reverse=True)
    return {kid: record for kid, (_, record) in newest_first}


def _newest_received(day: Day, *, source: int, limit: int) -> tuple[list[Ranked], int]:
    """The `limit` newest received of one day's matches (`source`: the day's place, newest
    first), and how many matched: no more than `limit` of them held at a time."""
    count = 0

    def ranked() -> Iterator[Ranked]:
        nonlocal count
        for index, record in day:
            count += 1
            yield (-record["received_at"], source, -index), record

    best = heapq.nsmallest(limit, ranked(), _by_rank)
    return best, count


class TaskQueries:
    """Finds and lists task records (see the module docstring); safe on any thread."""

    def __init__(self, store: TaskRecords, live: LiveDetails) -> None:
        self.store = store
        self.live = live

    def find(self, task_id: str, kid: str | None = None) -> list[dict[str, Any]]:
        """Every task `task_id` (of `kid`, if given): one record per issuer, live ones first."""
        query = condition(id=task_id, kid=kid)
        live = [describe(record, self.live) for record in self._live(query)]
        if live and kid is not None:  # (kid, id) names one task: no need to read the history
            return live
        found = {view["kid"]: view for view in live}
        for path in self._history_days():
            if not _contains(path, task_id.encode()):
                continue
            for issuer, record in (self._read_day(path, query, _newest_by_issuer) or {}).items():
                found.setdefault(issuer, describe(record))  # newest day first: the first one wins
            if kid is not None and found:
                break  # without `kid`, every day is read: another issuer may have used the id
        return sorted(found.values(), key=lambda view: view["received_at"], reverse=True)

    def matching(self, status: str | None, kid: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Matching records, newest (by `received_at`) first, at most `limit`; and whether more matched."""
        query = condition(status=status, kid=kid)
        best: list[Ranked] = []
        matched = 0
        if status is None or status in LIVE_STATUSES:
            live = self._live(query)
            matched = len(live)
            ranked = (((-record["received_at"], 0, i), record) for i, record in enumerate(live))
            best = heapq.nsmallest(limit, ranked, _by_rank)
        if status is None or status in FINISHED_STATUSES:
            found = 0
            for source, path in enumerate(self._history_days(), start=1):
                newest = functools.partial(_newest_received, source=source, limit=limit)
                day_best, count = self._read_day(path, query, newest) or ([], 0)
                best = heapq.nsmallest(limit, best + day_best, _by_rank)
                found += count
                if found > limit:  # whole days are read: enough of them to fill `limit`
                    break
            matched += found
        views = [describe(record, self.live if rank[1] == 0 else None) for rank, record in best]
        return views, matched > limit

    # -- reading ------------------------------------------------------------------------------------------

    def _live(self, query: QueryInstance) -> list[Document]:
        """The live records matching `query`, in the table's order (copies: safe after the lock)."""
        with self.store.lock:
            return self.store.db.table(TASKS).search(query)

    def _history_days(self) -> list[Path]:
        """Newest day first."""
        if not self.store.flush(10.0):  # finished tasks leave the table at once, reach their file later
            log.warning("history may lack the newest finished tasks: the store is not flushing")
        return list(reversed(self.store.history_days()))

    @staticmethod
    def _read_day(path: Path, query: QueryInstance, use: Callable[[Day], T]) -> T | None:
        """`use` of the records of one day that match `query`; None if the file is gone
        (expired meanwhile) or damaged (logged: a day is used whole or not at all)."""
        day = enumerate(records(path))
        try:
            return use((index, value) for index, value in day if isinstance(value, dict) and query(value))
        except FileNotFoundError:
            return None
        except (StoreError, OSError) as exc:
            log.error("history file %s unreadable: %s", path, exc)
            return None
