"""The agent's state as TinyDB tables, held in memory and made durable by the store's journal.

TinyDB gives the documents and their queries (`Query()`, `search`, `get`): operators' tools and the
`sys.*` commands read task records through it. It does not write: its storage rewrites a whole
file per change (NOTES.md), so `StateStorage.write` refuses, and every change goes through
`Store.commit` (one writer, a journal, group commit). Document ids are the natural keys
(`"{kid}/{task id}"`), not TinyDB's counters.

Tables: `tasks` (one record per accepted task that has not finished), `outbox` (results and
rejections not yet acknowledged by the broker: their bodies, signed on the way out), `jobs` (the
APScheduler job store), `meta` (schema, presence session). The replay cache is a table of compact
rows (`[kid, nonce, id, body id, forget_after]`) beside them: at 1,000 tasks a second it holds
hundreds of thousands of entries, and a dict per entry would cost three times the memory.
"""

from __future__ import annotations

from typing import Any

from tinydb import Storage, TinyDB
from tinydb.table import Table

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


class KeyedTable(Table):
    """A TinyDB table whose document ids are the store's string keys."""

    document_id_class = str  # type: ignore[assignment]


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
