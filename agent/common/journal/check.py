"""`store check`: what a state directory holds and where it is damaged, read without writing;
and `--cut`, the explicit repair that keeps the frames before the damage.

The stores refuse to start on damage a crash cannot explain (frames.py). An operator then runs
`edge-agent store check DATA_DIR` or `edge-broker --check-store`, which call `check` and print
`describe`: for each file its frames, a torn tail the next start will cut, or the damage with
its offset. `cut_damage` (their `--cut`) copies each damaged file to `<name>.damaged-<time>` and
truncates it at its last good frame: the records after the damage are given up, knowingly.
It takes the directory's lock, so it cannot run beside the agent or broker that owns it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from agent.common.journal import frames

from ..errors import StoreCorrupt
from .directory import JournalDirectory, Layout, journal_files, read_snapshot


class FileReport(NamedTuple):
    path: Path
    state: str  # ok | torn tail | damaged | stale | orphan | unreadable
    frames: int
    detail: str
    cut_at: int | None = None  # where --cut truncates a damaged file


def check(directory: Path, layout: Layout, also: Iterable[Path] = ()) -> list[FileReport]:
    """Reports on the snapshot, the journals, and `also` (other files of frames: the agent's
    history partitions), without changing anything."""
    reports: list[FileReport] = []
    generation = _check_snapshot(directory, layout, reports)
    for number, path in journal_files(directory) if directory.is_dir() else []:
        if generation is not None and number < generation:
            reports.append(FileReport(path, "stale", 0, "older than the snapshot: removed at the next start"))
        elif generation is not None and number > generation:
            reports.append(FileReport(path, "orphan", 0, "newer than the snapshot: the start is refused"))
        else:
            reports.append(_check_frames(path, layout.legacy_framing))
    reports.extend(_check_frames(path, layout.legacy_framing) for path in also)
    return reports


def _check_snapshot(directory: Path, layout: Layout, reports: list[FileReport]) -> int | None:
    path = directory / layout.snapshot_name
    if not path.exists():
        return None
    try:
        body, generation, legacy = read_snapshot(path, layout)
    except StoreCorrupt as exc:
        reports.append(FileReport(path, "unreadable", 0, str(exc)))
        return None
    form = "an old format, rewritten at the next start" if legacy else "current format"
    reports.append(FileReport(path, "ok", 1, f"generation {generation}, {len(body)} bytes, {form}"))
    return generation


def _check_frames(path: Path, legacy: frames.Framing) -> FileReport:
    data = path.read_bytes()
    scan = frames.scan(data, legacy)
    count = len(scan.values)
    if scan.damage is not None:
        offset, problem = scan.damage
        detail = (
            f"{problem} at byte {offset} of {len(data)}; {count} good frames before it ({scan.framing.name})"
        )
        return FileReport(path, "damaged", count, detail, cut_at=offset)
    if scan.torn_bytes:
        detail = f"{scan.torn_bytes} bytes torn by a crash at byte {scan.valid_length}: cut at the next start"
        return FileReport(path, "torn tail", count, detail)
    return FileReport(path, "ok", count, f"{len(data)} bytes ({scan.framing.name})")


def describe(reports: list[FileReport]) -> str:
    width = max((len(str(r.path)) for r in reports), default=0)
    lines = [f"{r.path!s:<{width}}  {r.state:<10}  {r.frames:>7} frames  {r.detail}" for r in reports]
    return "\n".join(lines) if lines else "no state files"


def damaged(reports: list[FileReport]) -> bool:
    return any(r.state in ("damaged", "orphan", "unreadable") for r in reports)


def cut_damage(directory: Path, layout: Layout, reports: list[FileReport]) -> list[str]:
    """Truncate each damaged file at its last good frame, after saving a copy; returns what was
    done. Holds the directory's lock meanwhile (raises StoreLocked while its owner runs)."""
    owner = JournalDirectory(directory, layout)
    owner.lock()  # the lock only: opening would refuse the damage
    try:
        done = []
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for report in reports:
            if report.cut_at is None:
                continue
            copy = report.path.with_name(f"{report.path.name}.damaged-{stamp}")
            shutil.copy2(report.path, copy)
            size = report.path.stat().st_size
            with open(report.path, "r+b") as f:
                f.truncate(report.cut_at)
                os.fsync(f.fileno())
            done.append(
                f"{report.path}: cut at byte {report.cut_at}, {size - report.cut_at} bytes dropped "
                f"({report.frames} frames kept); the whole file is saved as {copy.name}"
            )
        return done
    finally:
        owner.close()
