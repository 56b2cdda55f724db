"""The agent's state read from its files without writing anything: what `edge-agent state` shows
an operator on a board, with the agent stopped or running.

    state = ReadOnlyState.read(data_dir)      # the snapshot, and the journal applied in memory
    with state.lock:
        state.db.table(TASKS).search(Query().status == "queued")   # as on `Store.db`
    state.history_days()                      # the partitions, read by the task queries

The tables are built as `Store.open` builds them (the snapshot loaded, each journal batch
applied), through the journal engine's reader (`agent.common.journal.reader`): no lock is taken
(but for an instant, to see whether the agent holds it), no torn tail is cut, no file is
created, migrated or compacted, so the files' bytes and times stay as they were. Damage stops the
reading as it stops a start, naming the file and `edge-agent store check`.

While the agent runs (`agent_running`: it holds `state/LOCK`) the files are read as they stand:
the view may be behind by the batch being written, and a compaction that replaces the files
between two reads is met by reading again.

Thread rules: built and read by one thread; nothing is shared with the agent's process.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from agent.common.journal import lock_held, read_directory

from ..errors import StoreCorrupt, StoreError
from .history import partitions
from .state import StateDB, Tables, apply, empty_tables, load_snapshot, open_db
from .store import LAYOUT

#: Reads of a running agent's files before giving up (a compaction moved them each time).
_ATTEMPTS, _PAUSE_S = 5, 0.1


class NoState(StoreError):
    """The directory holds no agent state (no `state/` in it)."""


class ReadOnlyState:
    """The tables read from a data directory (see the module docstring); the task queries'
    `TaskRecords`, as the running `Store` is."""

    def __init__(self, data_dir: Path, tables: Tables, *, agent_running: bool) -> None:
        self.data_dir = data_dir
        self.tables = tables
        self.agent_running = agent_running
        self.lock = threading.RLock()  # nothing changes the tables: held for the queries' sake
        self.db: StateDB = open_db(tables)

    @classmethod
    def read(cls, data_dir: Path) -> ReadOnlyState:
        """NoState without a state directory; StoreCorrupt (naming `edge-agent store check`) or
        StoreError when the files cannot be read as a start would read them."""
        state_dir = data_dir / "state"
        if not state_dir.is_dir():
            raise NoState(f"{data_dir} holds no agent state (no state/ directory; the [agent] data_dir?)")
        running = lock_held(state_dir, LAYOUT)
        attempt = 1
        while True:
            try:
                return cls(data_dir, _tables(state_dir), agent_running=running)
            except (StoreCorrupt, FileNotFoundError) as exc:  # beside a running agent: a compaction
                if not running or attempt == _ATTEMPTS:
                    if isinstance(exc, FileNotFoundError):
                        raise StoreError(f"{exc.filename} went away while it was read: try again") from None
                    raise
            attempt += 1
            time.sleep(_PAUSE_S)

    def history_days(self) -> list[Path]:
        return partitions(self.data_dir / "history")

    def flush(self, timeout: float = 0.0) -> bool:
        """Nothing is pending here: what the files hold is all there is."""
        return True


def _tables(state_dir: Path) -> Tables:
    tables = empty_tables()
    reading = read_directory(state_dir, LAYOUT)
    if reading.snapshot is not None:
        load_snapshot(tables, reading.snapshot, state_dir / LAYOUT.snapshot_name)
    for batch in reading.batches():
        apply(tables, batch)
    return tables
