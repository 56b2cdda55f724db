"""The gateway's durable record of the tasks it submitted: SQLite in WAL mode, `tasks.sqlite3`.

    records = TaskRecords.open(data_dir)
    records.submitted(Submitted(...))          # committed (fsync) before the task is published
    records.published(task_id)                 # the broker's PUBACK
    records.answered(result, payload_sha256)   # a verified result: one row per (node, run)
    records.refused(payload_sha256, code, message)  # a rejects report (checks 1-3 at the agent)
    row = records.get(task_id); rows, cursor = records.page(status=..., node=..., limit=50)
    records.priorities([task_id, ...])         # {task_id: priority} of ours among them (the dashboard)

A task's row is written before its 202 is answered, with `synchronous=FULL`: a gateway killed the
moment after answers for every task it accepted after a restart, and its persistent MQTT session
brings the results that arrived meanwhile. A task's status follows its latest answer; the
results of every run and node are kept in `results` (a task for `all` has one per agent).

Thread rules: one connection, shared by the HTTP loop's worker threads and the MQTT network
thread under one lock (SQLite serializes writers anyway); every method is one transaction.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from agent.protocol import Result

from .errors import ApiError, DuplicateTask, StoreError

FILE = "tasks.sqlite3"
SCHEMA_VERSION = 2
#: Statuses a task has before its agent answers; every other is the status of a result (PROTOCOL 7)
#: or `refused` (a rejects report: the agent could not authenticate it, PROTOCOL 5).
PENDING = ("submitted", "published")
_IN_MAX = 500  # ids per `IN (...)` query

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    kernel TEXT NOT NULL,
    target TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    trace TEXT,
    payload_sha256 BLOB NOT NULL,
    error TEXT,
    topic TEXT NOT NULL,
    payload BLOB,
    params_summary TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_time ON tasks (submitted_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tasks_by_sha ON tasks (payload_sha256);
CREATE INDEX IF NOT EXISTS tasks_unpublished ON tasks (status) WHERE status = 'submitted';
CREATE TABLE IF NOT EXISTS results (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    node TEXT NOT NULL,
    run INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    received_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    duration_ms REAL,
    result BLOB,
    error TEXT,
    answered_at REAL NOT NULL,
    PRIMARY KEY (task_id, node, run)
);
"""


#: What turns a database of schema N-1 into N (`PRAGMA user_version`), applied in order at open.
#: 2: `params_summary` (issue 19: the shapes of a task's arrays, for the dashboard's detail view).
MIGRATIONS = {2: ["ALTER TABLE tasks ADD COLUMN params_summary TEXT"]}


@dataclass(frozen=True)
class Submitted:
    id: str
    client: str
    kernel: str
    target: str
    priority: int
    expires_at: float
    topic: str
    payload: bytes
    trace: str | None = None
    submitted_at: float | None = None  # default: when it is written
    params_summary: dict[str, Any] | None = None  # preview.params_summary of the task's params


@dataclass(frozen=True)
class Answer:
    """One result of a task, as stored (the result value as MessagePack, decoded on reading)."""

    node: str
    run: int
    attempt: int
    status: str
    received_at: float
    started_at: float | None
    finished_at: float | None
    duration_ms: float | None
    result: Any
    error: dict[str, str] | None

    @classmethod
    def of(cls, result: Result) -> Answer:
        """A verified result as the record keeps it (its value as the protocol library decoded it)."""
        return cls(
            result.node,
            result.run,
            result.attempt,
            result.status,
            result.received_at,
            result.started_at,
            result.finished_at,
            result.duration_ms,
            result.result,
            result.error,
        )


@dataclass(frozen=True)
class TaskRow:
    id: str
    client: str
    kernel: str
    target: str
    priority: int
    status: str
    submitted_at: float
    updated_at: float
    expires_at: float
    trace: str | None
    error: dict[str, str] | None
    answers: tuple[Answer, ...] = ()
    params_summary: dict[str, Any] | None = None

    @property
    def pending(self) -> bool:
        return self.status in PENDING


class TaskRecords:
    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def open(cls, data_dir: Path) -> TaskRecords:
        path = data_dir / FILE
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # durable before the 202: a commit survives power loss
            db.execute("PRAGMA foreign_keys=ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path} was written by a newer gateway (schema {version}); upgrade this one"
                )
            _migrate(db, version)
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the task record {path}: {exc}") from None
        return cls(db, path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing -----------------------------------------------------------------------------------

    def submitted(self, task: Submitted, now: float | None = None) -> None:
        """Raises `DuplicateTask` when the id is taken (ids are unique per issuer: PROTOCOL 4)."""
        error = self.submitted_many([task], now)[0]
        if error is not None:
            raise error

    def submitted_many(
        self,
        tasks: list[Submitted],
        now: float | None = None,
        published: list[str] = (),  # type: ignore[assignment]
    ) -> list[DuplicateTask | None]:
        """Several tasks in one durable transaction (one fsync: the group commit of concurrent
        requests), with the PUBACKs noted since the last one (`published`); per task None, or
        `DuplicateTask` for an id already taken (the others are kept)."""
        at = time.time() if now is None else now
        outcome: list[DuplicateTask | None] = []
        with self._lock:
            try:
                with _transaction(self._db):
                    for task in tasks:
                        if self._db.execute("SELECT 1 FROM tasks WHERE id = ?", (task.id,)).fetchone():
                            outcome.append(DuplicateTask(task.id))
                            continue
                        when = task.submitted_at or at
                        self._db.execute(
                            _INSERT,
                            (
                                task.id,
                                task.client,
                                task.kernel,
                                task.target,
                                task.priority,
                                when,
                                when,
                                task.expires_at,
                                task.trace,
                                hashlib.sha256(task.payload).digest(),
                                task.topic,
                                task.payload,
                                None if task.params_summary is None else json.dumps(task.params_summary),
                            ),
                        )
                        outcome.append(None)
                    self._mark_published(published, at)
            except sqlite3.Error as exc:
                raise StoreError(f"task record {self.path}: {exc}") from None
        return outcome

    def _mark_published(self, task_ids: Sequence[str], at: float) -> None:
        self._db.executemany(
            "UPDATE tasks SET status = 'published', payload = NULL, updated_at = ?"
            " WHERE id = ? AND status = 'submitted'",
            [(at, task_id) for task_id in task_ids],
        )

    def published(self, task_id: str) -> None:
        self.published_many([task_id])

    def published_many(self, task_ids: list[str]) -> None:
        """The broker has these tasks (PUBACK): still pending, but no longer only ours; the payload,
        kept until then for a restart to publish again, is dropped. Not synced (synchronous=NORMAL
        for this one commit): losing it in a power cut only means one harmless publish again."""
        with self._lock:
            try:
                self._db.execute("PRAGMA synchronous=NORMAL")
                try:
                    with _transaction(self._db):
                        self._mark_published(task_ids, time.time())
                finally:
                    self._db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise StoreError(f"task record {self.path}: {exc}") from None

    def unpublished(self) -> list[tuple[str, str, bytes]]:
        """(id, topic, payload) of every task recorded but never acknowledged by the broker (a
        gateway that stopped in between): published again at start. The agent acknowledges a
        copy it already has and runs nothing twice (PROTOCOL 4, check 6)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload FROM tasks WHERE status = 'submitted' ORDER BY submitted_at"
            ).fetchall()
        return [(str(i), str(t), bytes(p)) for i, t, p in rows if p is not None]

    def answered(self, result: Result) -> bool:
        """Store a verified result of one of our tasks; False when the task is not ours."""
        return self.answered_many([result])[0]

    def answered_many(self, results: Sequence[Result]) -> list[bool]:
        """Several verified results in one durable transaction (the results that arrived while the
        previous commit ran); per result whether its task is ours (others are not stored)."""
        now = time.time()
        stored: list[bool] = []
        with self._lock:
            try:
                with _transaction(self._db):
                    for result in results:
                        stored.append(self._answer(result, now))
            except sqlite3.Error as exc:
                raise StoreError(f"task record {self.path}: {exc}") from None
        return stored

    def _answer(self, result: Result, now: float) -> bool:
        """(under the lock, in a transaction)"""
        if self._db.execute("SELECT 1 FROM tasks WHERE id = ?", (result.id,)).fetchone() is None:
            return False
        error = json.dumps(result.error) if result.error is not None else None
        packed = msgpack.packb(result.result, use_bin_type=True, default=_array)
        self._db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                result.id,
                result.node,
                result.run,
                result.attempt,
                result.status,
                result.received_at,
                result.started_at,
                result.finished_at,
                result.duration_ms,
                packed,
                error,
                now,
            ),
        )
        self._db.execute(
            "UPDATE tasks SET status = ?, error = ?, updated_at = ? WHERE id = ?",
            (result.status, error, now, result.id),
        )
        return True

    def refused(self, payload_sha256: bytes, code: str, message: str) -> str | None:
        """A rejects report for a payload we published: the task ends `refused`; its id, or None."""
        error = json.dumps({"code": code, "message": message})
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT id FROM tasks WHERE payload_sha256 = ?", (payload_sha256,)
                ).fetchone()
                if row is None:
                    return None
                self._db.execute(
                    "UPDATE tasks SET status = 'refused', error = ?, updated_at = ? WHERE id = ?",
                    (error, time.time(), row[0]),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"task record {self.path}: {exc}") from None
        return str(row[0])

    # -- reading -----------------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRow | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                return None
            answers = self._db.execute(
                f"SELECT {_ANSWER_COLUMNS} FROM results WHERE task_id = ? ORDER BY answered_at, node, run",
                (task_id,),
            ).fetchall()
        return _row(row, tuple(_answer(a) for a in answers))

    def page(
        self,
        *,
        status: str | None = None,
        node: str | None = None,
        client: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[TaskRow], str | None]:
        """Newest first; `cursor` is the opaque value of the previous page (None: the first)."""
        where: list[str] = []
        args: list[object] = []
        for column, value in (("status", status), ("client", client)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if node is not None:
            where.append("(target = ? OR id IN (SELECT task_id FROM results WHERE node = ?))")
            args += [node, node]
        if cursor is not None:
            at, task_id = _uncursor(cursor)
            where.append("(submitted_at < ? OR (submitted_at = ? AND id < ?))")
            args += [at, at, task_id]
        sql = f"SELECT {_COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY submitted_at DESC, id DESC LIMIT ?"
        with self._lock:
            rows = [_row(r) for r in self._db.execute(sql, (*args, limit + 1)).fetchall()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (_cursor(rows[-1]) if more else None)

    def priorities(self, task_ids: Sequence[str]) -> dict[str, int]:
        """The priority of each of `task_ids` this gateway submitted (the others are absent)."""
        found: dict[str, int] = {}
        for start in range(0, len(task_ids), _IN_MAX):
            chunk = list(task_ids[start : start + _IN_MAX])
            marks = ", ".join("?" * len(chunk))
            with self._lock:
                try:
                    rows = self._db.execute(
                        f"SELECT id, priority FROM tasks WHERE id IN ({marks})", chunk
                    ).fetchall()
                except sqlite3.Error as exc:
                    raise StoreError(f"task record {self.path}: {exc}") from None
            found.update((str(i), int(p)) for i, p in rows)
        return found

    def ping(self) -> None:
        """One trivial query: raises StoreError when the database cannot answer (/health)."""
        with self._lock:
            try:
                self._db.execute("SELECT 1 FROM tasks LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"task record {self.path}: {exc}") from None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                str(s): int(n)
                for s, n in self._db.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status")
            }


_INSERT = (
    "INSERT INTO tasks (id, client, kernel, target, priority, status, submitted_at, updated_at, expires_at,"
    " trace, payload_sha256, topic, payload, params_summary)"
    " VALUES (?, ?, ?, ?, ?, 'submitted', ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = (
    "id, client, kernel, target, priority, status, submitted_at, updated_at, expires_at, trace, error,"
    " params_summary"
)
_ANSWER_COLUMNS = (
    "node, run, attempt, status, received_at, started_at, finished_at, duration_ms, result, error"
)


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """A database of an older schema brought to this one in one transaction (a new one, version
    0, is made whole by `_SCHEMA`)."""
    if version == 0:
        return
    with _transaction(db):
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={step}")


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")


def _array(value: object) -> object:
    """Arrays of a result (ndarray ext 1, decoded by the protocol library) stored as nested lists."""
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise TypeError(f"cannot store a {type(value).__name__}")
    return tolist()


def _row(row: tuple[Any, ...], answers: tuple[Answer, ...] = ()) -> TaskRow:
    (task_id, client, kernel, target, priority, status, submitted_at, updated_at, expires_at, trace, error,
     summary) = row  # fmt: skip
    return TaskRow(
        task_id,
        client,
        kernel,
        target,
        priority,
        status,
        submitted_at,
        updated_at,
        expires_at,
        trace,
        error=json.loads(error) if error else None,
        answers=answers,
        params_summary=json.loads(summary) if summary else None,
    )


def _answer(row: tuple[Any, ...]) -> Answer:
    node, run, attempt, status, received_at, started_at, finished_at, duration_ms, result, error = row
    return Answer(
        node,
        run,
        attempt,
        status,
        received_at,
        started_at,
        finished_at,
        duration_ms,
        result=msgpack.unpackb(result, raw=False) if result is not None else None,
        error=json.loads(error) if error else None,
    )


def _cursor(row: TaskRow) -> str:
    return base64.urlsafe_b64encode(json.dumps([row.submitted_at, row.id]).encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[float, str]:
    try:
        at, task_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(at), str(task_id)
    except (ValueError, TypeError) as exc:
        raise ApiError(
            400, "invalid_cursor", f"the cursor is not one this API gave: {exc}", field="cursor"
        ) from None


def iter_pages(records: TaskRecords, **filters: Any) -> Iterator[TaskRow]:
    """Every row matching `filters`, page by page (tests and exports)."""
    cursor: str | None = None
    while True:
        rows, cursor = records.page(cursor=cursor, **filters)
        yield from rows
        if cursor is None:
            return
