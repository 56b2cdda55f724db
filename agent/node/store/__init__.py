"""The agent's durable state: TinyDB tables in memory, a checksummed journal with group commit,
snapshots and history partitions on disk (on the journal engine, `agent.common.journal`). See store.py."""

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
