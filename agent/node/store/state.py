"""The agent's state as TinyDB tables, held in memory and made durable by the store's journal.

TinyDB gives the documents and their queries (`Query()`, `search`, `get`): the `sys.status` and
`sys.list` commands and `edge-agent state` read task records through it (`intake/queries.py`:
`search` on the `tasks` table, and the same `Query` called on each history record). The tables
are the running store's (`Store.db`, read under `Store.lock`) or a copy read from the files
without writing (`readonly.py`). TinyDB does not write: its storage rewrites a whole file per
change (NOTES.md), so `StateStorage.write` refuses, and every change goes through `Store.commit`
(one writer, a journal, group commit). Document ids are the natural keys (`"{kid}/{task id}"`),
not TinyDB's counters. Query results are not cached: the tables change with nearly every commit,
and a cache would hold copies of the documents between queries.

Tables: `tasks` (one record per accepted task that has not finished), `outbox` (results and
rejections not yet acknowledged by the broker: their bodies, signed on the way out), `jobs` (the
APScheduler job store), `meta` (schema, presence session). The replay cache is a table of compact
rows (`[kid, nonce, id, body id, forget_after]`) beside them: at 1,000 tasks a second it holds
hundreds of thousands of entries, and a dict per entry would cost three times the memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tinydb import Storage, TinyDB
from tinydb.table import Table

from agent.common.journal.frames import unpack

from ..errors import StoreError

#: 2: outbox rows hold the unsigned `body` (schema 1: the signed `payload`, still read). An agent
#: of schema 1 refuses state of schema 2 with a clear error instead of a KeyError.
SCHEMA_VERSION = 2
TASKS, OUTBOX, JOBS, META, REPLAY = "tasks", "outbox", "jobs", "meta", "replay"
TABLES = (TASKS, OUTBOX, JOBS, META, REPLAY)
#: Ops on this pseudo-table are not state: they append a finished task's record to its day's partition.
HISTORY = "history"

Tables = dict[str, dict[str, Any]]


def empty_tables() -> Tables:
    return {name: {} for name in TABLES}


def load_snapshot(tables: Tables, body: bytes, source: Path) -> None:
    """Fill `tables` from a snapshot's body; StoreError for state of a newer schema."""
    doc = unpack(body)
    schema = doc.get("schema")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise StoreError(
            f"{source}: state schema {schema!r} is newer than this agent's ({SCHEMA_VERSION}); run the "
            "agent version that wrote it, or move the data directory away"
        )
    for name in TABLES:
        tables[name].update(doc["tables"].get(name, {}))


def apply(tables: Tables, ops: Iterable[tuple[str, str, Any]]) -> None:
    """A batch of changes (`Store.commit`'s, or the journal's on replay): each sets a key to a
    whole document or deletes it (None); history ops are not state (they go to the partitions)."""
    for table, key, doc in ops:
        if table == HISTORY:
            continue
        rows = tables[table]
        if doc is None:
            rows.pop(key, None)
        else:
            rows[key] = doc


class KeyedTable(Table):
    """A TinyDB table whose document ids are the store's string keys, without a query cache."""

    document_id_class = str  # type: ignore[assignment]

    def __init__(self, storage: Storage, name: str, cache_size: int = 0, persist_empty: bool = False) -> None:
        super().__init__(storage, name, cache_size, persist_empty)  # TinyDB's default: 10 queries cached


class StateStorage(Storage):
    """TinyDB's window on the live tables: reads see the state, writes are refused."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def read(self) -> Tables:
        return self._tables

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        raise StoreError("the state is written through Store.commit (one writer, journaled), not TinyDB")

    def close(self) -> None:
        pass


class StateDB(TinyDB):
    table_class = KeyedTable
    default_table_name = TASKS


def open_db(tables: Tables) -> StateDB:
    return StateDB(tables, storage=StateStorage)
