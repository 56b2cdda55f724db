"""The history: final records of finished tasks, one file per UTC day, dropped after retention.

Out of the state on purpose: the state's cost (snapshot, replay) must not grow with history
(issue 5's commit-cost target), so a finished task's record leaves the `tasks` table and is
appended here. Files are written by the store's writer thread only, and not fsynced per batch:
kill -9 keeps what write() handed to the kernel, and the store syncs them (`sync`) before it drops
a journal that also holds them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import records

DAY = 86400.0


def day_of(at: float) -> str:
    """The UTC day (`YYYY-MM-DD`) of a Unix time: the name of its partition."""
    return _day_name(int(at // DAY))


@functools.lru_cache(maxsize=8)
def _day_name(day: int) -> str:
    return dt.datetime.fromtimestamp(day * DAY, tz=dt.timezone.utc).strftime("%Y-%m-%d")


class HistoryPartitions:
    """`<directory>/YYYY-MM-DD.log`, framed as the journal (`records.frame`)."""

    def __init__(self, directory: Path, retention_days: int) -> None:
        self.directory = directory
        self.retention_days = retention_days
        self._open: tuple[str, Any] | None = None  # (day, its file): the writer thread's only

    def append(self, docs: list[Any]) -> None:
        """Final records, each to the partition of its `finished_at`."""
        by_day: dict[str, list[bytes]] = {}
        for doc in docs:
            by_day.setdefault(day_of(doc.get("finished_at") or time.time()), []).append(records.frame(doc))
        for day, framed in by_day.items():
            self._file(day).write(b"".join(framed))

    def _file(self, day: str) -> Any:
        """The open partition of `day` (today's, nearly always: one open file, not one per batch)."""
        if self._open is None or self._open[0] != day:
            if self._open is not None:
                self._open[1].close()
            self._open = (day, open(self.directory / f"{day}.log", "ab", buffering=0))  # noqa: SIM115
        return self._open[1]

    def sync(self) -> None:
        for path in self.days():
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def days(self) -> list[Path]:
        return sorted(self.directory.glob("*.log"))

    def read(self) -> Iterator[Any]:
        """Finished task records, oldest day first."""
        for path in self.days():
            yield from records.iter_values(path)

    def expire(self, now: float | None = None) -> int:
        """Delete the partitions older than `retention_days`; returns how many."""
        cutoff = day_of((now or time.time()) - self.retention_days * DAY)
        removed = 0
        for path in self.days():
            if path.stem < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def close(self) -> None:
        """At the store's close (the writer has ended)."""
        if self._open is not None:
            with contextlib.suppress(OSError):
                self._open[1].close()
            self._open = None
