"""The history: final records of finished tasks, one file per UTC day, dropped after retention.

Out of the state on purpose: the state's cost (snapshot, replay) must not grow with history
(issue 5's commit-cost target), so a finished task's record leaves the `tasks` table and is
appended here. Files are written by the store's writer thread only, framed as the journal
(`agent.common.journal`: whole frames or cut back, never a partial frame before later ones), and
not fsynced per batch: kill -9 keeps what write() handed to the kernel, and the store syncs them
(`sync`) before it drops a journal that also holds them. A partition is made ready for appends
when first opened: a torn tail cut off, a file of the old framing rewritten in the current one,
damage refused by name (`StoreCorrupt`, as for the journal).

Readers (`records`: the task queries of `sys.status`, `sys.list` and `edge-agent state`) decode
a partition a frame at a time, never holding a day whole, on any thread and beside the writer:
a frame being appended is a torn tail, simply not there yet, and nothing is changed.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.common.errors import StoreCorrupt
from agent.common.fileio import PRIVATE, atomic_file, write_atomic
from agent.common.journal import LEGACY_AGENT, MAGIC, OS, AppendFile, FileOps, frames

DAY = 86400.0


def day_of(at: float) -> str:
    """The UTC day (`YYYY-MM-DD`) of a Unix time: the name of its partition."""
    return _day_name(int(at // DAY))


@functools.lru_cache(maxsize=8)
def _day_name(day: int) -> str:
    return dt.datetime.fromtimestamp(day * DAY, tz=dt.timezone.utc).strftime("%Y-%m-%d")


def _damage_message(path: Path, size: int, damage: frames.Damage) -> str:
    offset, problem = damage
    return (
        f"{path}: {problem} at byte {offset} of {size}, with data after it that a crash cannot "
        f"leave. `edge-agent store check {path.parent.parent}` reports it; `--cut` keeps the "
        f"records before it"
    )


def _refuse_damage(path: Path, walk: frames.FrameWalk) -> None:
    if walk.damage is not None:
        raise StoreCorrupt(_damage_message(path, walk.size, walk.damage))


def records(path: Path) -> Iterator[Any]:
    """One day's records in order, decoded as they are read (see the module docstring);
    StoreCorrupt on damage, once the records before it were given."""
    with open(path, "rb") as f:
        walk = frames.FrameWalk(f, os.fstat(f.fileno()).st_size, LEGACY_AGENT)
        yield from walk.values()
    _refuse_damage(path, walk)


def partitions(directory: Path) -> list[Path]:
    """The partitions in `directory`, oldest day first."""
    return sorted(directory.glob("*.log"))


class HistoryPartitions:
    """`<directory>/YYYY-MM-DD.log`, framed as the journal."""

    def __init__(self, directory: Path, retention_days: int, *, ops: FileOps = OS) -> None:
        self.directory = directory
        self.retention_days = retention_days
        self._ops = ops
        self._open: tuple[str, AppendFile] | None = None  # (day, its file): the writer thread's only
        self._ready: set[Path] = set()  # partitions prepared for appends since the start

    def append(self, docs: list[Any]) -> None:
        """Final records, each to the partition of its `finished_at`."""
        by_day: dict[str, list[bytes]] = {}
        for doc in docs:
            by_day.setdefault(day_of(doc.get("finished_at") or time.time()), []).append(frames.frame(doc))
        for day, framed in by_day.items():
            self._file(day).append(b"".join(framed), sync=False)

    def _file(self, day: str) -> AppendFile:
        """The open partition of `day` (today's, nearly always: one open file, not one per batch)."""
        if self._open is None or self._open[0] != day:
            if self._open is not None:
                self._open[1].close()
            self._open = None
            path = self.directory / f"{day}.log"
            self._prepare(path)
            self._open = (day, AppendFile(path, ops=self._ops))
        return self._open[1]

    def _prepare(self, path: Path) -> None:
        """Make `path` ready for appends in the current framing (see the module docstring),
        reading it frame by frame: a day's partition may be large, and a start must not hold
        it in memory (nor decode it)."""
        if path in self._ready:
            return
        self._ready.add(path)
        if not path.exists():
            write_atomic(path, MAGIC, PRIVATE)
            return
        with open(path, "rb") as f:
            walk = frames.FrameWalk(f, os.fstat(f.fileno()).st_size, LEGACY_AGENT)
            if walk.framing is not frames.CURRENT or walk.valid_length < len(MAGIC):
                with atomic_file(path, PRIVATE) as out:  # the old framing (or a torn magic): rewritten
                    out.write(MAGIC)
                    for payload in walk.payloads():
                        out.write(frames.frame_bytes(payload))
                    _refuse_damage(path, walk)  # inside: a damaged file is not replaced
                return
            for _ in walk.payloads():
                pass
        _refuse_damage(path, walk)
        if walk.torn_bytes:
            with open(path, "r+b") as f:
                f.truncate(walk.valid_length)

    def prepare_latest(self) -> None:
        """At the store's start: the newest partition, where appends go on (so that damage there
        stops the start, not a write hours later)."""
        days = self.days()
        if days:
            self._prepare(days[-1])

    def sync(self) -> None:
        for path in self.days():
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def days(self) -> list[Path]:
        return partitions(self.directory)

    def read(self) -> Iterator[Any]:
        """Finished task records, oldest day first (a torn tail is simply not there yet)."""
        for path in self.days():
            yield from records(path)

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
            self._open[1].close()
            self._open = None
