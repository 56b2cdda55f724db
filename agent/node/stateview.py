"""`edge-agent state DATA_DIR`: the task records of an agent's data directory, read without
writing anything, for an operator on the board (the agent stopped, or running).

    edge-agent state /var/lib/edge-agent                     # the 100 newest received, as a table
    edge-agent state /var/lib/edge-agent --status abandoned --limit 20
    edge-agent state /var/lib/edge-agent --id a41f09 --json  # one JSON document per record

The records are those `sys.status` and `sys.list` answer (PROTOCOL 8, the same `TaskQueries` on
TinyDB), read from the files by `store.readonly.ReadOnlyState`: the snapshot and the journal
applied in memory, the history partitions a frame at a time. Nothing is locked, cut, migrated or
compacted. While the agent runs the view may be behind by the batch it is writing (said on
stderr). Exit status: 0 shown; 1 the state cannot be read (damage: the message names `edge-agent
store check`), or `--id` matches no task; 2 no state in DATA_DIR.

Thread rules: one thread (the command's).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from .errors import StoreCorrupt, StoreError
from .intake.queries import StoredDetails, TaskQueries
from .store.readonly import NoState, ReadOnlyState

EXIT_OK, EXIT_FAILED, EXIT_NO_STATE = 0, 1, 2
_COLUMNS = ("RECEIVED (UTC)", "STATUS", "ID", "KID", "KERNEL", "RUN", "ATTEMPTS", "WHEN (UTC)", "LAST ERROR")
_ERROR_WIDTH = 60


def show(
    data_dir: Path,
    *,
    status: str | None,
    task_id: str | None,
    kid: str | None,
    limit: int,
    as_json: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Print the records asked for (see the module docstring); returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="edge-agent: %(message)s", stream=err)
    try:
        state = ReadOnlyState.read(data_dir)
    except NoState as exc:
        print(f"edge-agent: {exc}", file=err)
        return EXIT_NO_STATE
    except (StoreError, OSError) as exc:
        print(f"edge-agent: cannot read the state: {_what_to_do(exc, data_dir)}", file=err)
        return EXIT_FAILED
    if state.agent_running:
        print(
            "edge-agent: the agent is running (state/LOCK is held): this view is read-only and may be "
            "behind by the batch it is writing",
            file=err,
        )
    queries = TaskQueries(state, StoredDetails(state.tables))
    more = False
    if task_id is not None:
        views = queries.find(task_id, kid)
        if not views:
            who = f"of {kid!r}" if kid is not None else "of any issuer"
            print(f"edge-agent: no task {task_id!r} {who}: not live, and not in the history", file=err)
            return EXIT_FAILED
    else:
        views, more = queries.matching(status, kid, limit)
    if as_json:
        for view in views:
            print(json.dumps(view), file=out)
    else:
        print(table(views) if views else "no task matches", file=out)
    if more:
        print(
            f"more tasks match than the {limit} shown: a larger --limit, or --status / --kid to narrow",
            file=err if as_json else out,
        )
    return EXIT_OK


def _what_to_do(exc: StoreError | OSError, data_dir: Path) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc)
    if isinstance(exc, StoreCorrupt) and "store check" not in text:
        text += f" (`edge-agent store check {data_dir}` lists every state file and what is wrong with it)"
    return text


def _time(at: Any) -> str:
    if not isinstance(at, (int, float)):
        return "-"
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _when(view: dict[str, Any]) -> str:
    """The time that says most about the task now."""
    if view.get("finished_at") is not None:
        return f"finished {_time(view['finished_at'])}"
    if view["status"] == "scheduled":
        return f"{view['waiting_for']} at {_time(view.get('next_at'))}"
    if view.get("started_at") is not None:
        return f"started {_time(view['started_at'])}"
    return "-"


def _error(view: dict[str, Any]) -> str:
    error = view.get("last_error")
    if not isinstance(error, dict):
        return "-"
    text = f"{error.get('code')}: {error.get('message')}"
    return text if len(text) <= _ERROR_WIDTH else text[: _ERROR_WIDTH - 3] + "..."


def row(view: dict[str, Any]) -> tuple[str, ...]:
    status = view["status"] + (" (cancel requested)" if view.get("cancel_requested") else "")
    return (
        _time(view["received_at"]),
        status,
        view["id"],
        view["kid"],
        view["kernel"],
        str(view["run"]),
        str(view["attempts"]),
        _when(view),
        _error(view),
    )


def table(views: list[dict[str, Any]]) -> str:
    """Aligned columns, a header first; newest received first, as the views come."""
    rows = [_COLUMNS, *(row(view) for view in views)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
