"""The agent's durable state: TinyDB tables in memory, a checksummed journal with group commit,
snapshots and history partitions on disk (on the journal engine, `agent.common.journal`).

    store.py     the running store: one writer, group commit, compaction (`Store`)
    state.py     the tables and their read-only TinyDB (task records are queried through it)
    history.py   finished tasks' records, one file per UTC day, read a frame at a time
    readonly.py  the tables read from the files without writing (`edge-agent state`)
    jobstore.py, replay.py   APScheduler's jobs and the replay cache on the state
"""

from .replay import DurableReplayCache
from .state import HISTORY, JOBS, META, OUTBOX, REPLAY, SCHEMA_VERSION, TASKS, StateDB
from .store import Op, Store, StoreStats

__all__ = [
    "HISTORY",
    "JOBS",
    "META",
    "OUTBOX",
    "REPLAY",
    "SCHEMA_VERSION",
    "TASKS",
    "DurableReplayCache",
    "Op",
    "StateDB",
    "Store",
    "StoreStats",
]
