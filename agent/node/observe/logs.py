"""The agent's log lines: JSON lines for collectors, text for a terminal, each tagged with its task.

    setup_logging(config)                          # once, in `edge-agent run`
    log.warning("attempt failed", extra=task_extra(task_id, trace))
    with task_context(task_id, trace):             # every line of this thread inside the block
        ...

A line about a task carries the task's `id` and its W3C `traceparent` (PROTOCOL 4 `trace`), so a
log collector joins the agent's lines to the trace the issuer started. `[log] format = "auto"`
(the default) writes JSON when stderr is not a terminal (systemd, containers, files) and text when
a person watches it. JSON fields: `ts` (ISO 8601 UTC), `level`, `logger`, `message`, `node`, and
`task`, `trace`, `exc` when there are any.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import IO, Any

from ..config import Config

#: The task the current thread (or asyncio task) works on: (task id, traceparent or None).
_TASK: ContextVar[tuple[str, str | None] | None] = ContextVar("edge_agent_task", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def task_extra(task_id: str | None, trace: str | None = None) -> dict[str, Any]:
    """`extra=` of a log call about one task (wins over `task_context`)."""
    return {"task": task_id, "trace": trace}


@contextlib.contextmanager
def task_context(task_id: str, trace: str | None = None) -> Iterator[None]:
    """Tag every line this thread logs inside the block with the task."""
    token = _TASK.set((task_id, trace))
    try:
        yield
    finally:
        _TASK.reset(token)


class TaskFilter(logging.Filter):
    """Sets `record.task` and `record.trace` (from `extra=`, else the task context, else None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task", None) is None:
            current = _TASK.get()
            record.task, record.trace = current if current is not None else (None, None)
        elif not hasattr(record, "trace"):
            record.trace = None
        return True


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.node is not None:
            doc["node"] = self.node
        task = getattr(record, "task", None)
        if task is not None:
            doc["task"] = task
            trace = getattr(record, "trace", None)
            if trace is not None:
                doc["trace"] = trace
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [task=... trace=...]` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        task = getattr(record, "task", None)
        if task is None:
            return text
        trace = getattr(record, "trace", None)
        tag = f" [task={task}" + (f" trace={trace}]" if trace else "]")
        first, newline, rest = text.partition("\n")  # after the message, before a traceback
        return first + tag + newline + rest


def wants_json(fmt: str, stream: IO[str]) -> bool:
    """`auto`: JSON unless a person is watching (the stream is a terminal)."""
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return not (isatty is not None and isatty())
    return fmt == "json"


def setup_logging(config: Config, stream: IO[str] | None = None) -> logging.Handler:
    """The root logger's one handler, from `[log]`; returns it."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskFilter())
    if wants_json(config.log.format, stream):
        handler.setFormatter(JsonFormatter(config.node))
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log.level.upper())
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    return handler
