"""A state directory read without writing: what `JournalDirectory.open` recovers, for tools that
run instead of the owning store or beside it (`edge-agent state`).

    running = lock_held(directory, layout)       # the owner runs: the files may move on meanwhile
    reading = read_directory(directory, layout)  # the snapshot's body, and the journal after it
    for batch in reading.batches(): ...          # decoded a frame at a time; StoreCorrupt at damage

Nothing is created, cut, removed or locked (but for an instant, to see whether the owner holds
the lock): a torn tail stays where it is and is not read (the owner may be writing that very
frame), a journal older than the snapshot is passed over, an old format is read as it is. Damage
is refused as `open` refuses it, with the same message. Beside a running owner a compaction may
replace the files between two reads (`FileNotFoundError`, or a newer journal met as
`StoreCorrupt`): read again.

Thread rules: none shared; each call opens and closes its own files.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import StoreCorrupt
from . import frames
from .directory import (
    Layout,
    damage_message,
    holds_no_frame,
    journal_files,
    missing_snapshot,
    newer_journal,
    read_snapshot,
)


def lock_held(directory: Path, layout: Layout) -> bool:
    """Whether the owner holds the directory's lock now. A shared lock is tried and let go at
    once: an owner starting in that very instant finds the directory in use. No lock file is
    created where there is none."""
    try:
        fd = os.open(directory / layout.lock_name, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing lets go of a lock it got
    return False


class Reading(NamedTuple):
    directory: Path
    layout: Layout
    snapshot: bytes | None  # the snapshot's body; None in a directory without one
    generation: int
    legacy: bool  # the snapshot is of an old format (the owner rewrites it at its next start)
    journal: Path | None  # the journal that follows the snapshot, if there is one

    def batches(self) -> Iterator[Any]:
        """The journal's batches in order, decoded as they are read; a torn tail is not there."""
        if self.journal is None:
            return
        with open(self.journal, "rb") as f:
            walk = frames.FrameWalk(f, os.fstat(f.fileno()).st_size, self.layout.legacy_framing)
            intact = 0
            for batch in walk.values():
                intact += 1
                yield batch
        if walk.damage is not None:
            raise StoreCorrupt(
                damage_message(self.journal, walk.size, walk.damage, intact, self.layout, self.directory)
            )


def read_directory(directory: Path, layout: Layout) -> Reading:
    """The snapshot and which journal follows it, as `JournalDirectory.open` would find them;
    StoreCorrupt where it would refuse to start."""
    snapshot_path = directory / layout.snapshot_name
    journals = journal_files(directory)
    if not snapshot_path.exists():
        if journals:
            raise missing_snapshot(snapshot_path, journals)
        return Reading(directory, layout, None, 0, False, None)
    body, generation, legacy = read_snapshot(snapshot_path, layout)
    journal = None
    for number, path in journals:
        if number == generation:
            journal = path
        elif number > generation and not holds_no_frame(path):
            raise newer_journal(path, snapshot_path, generation)
    return Reading(directory, layout, body, generation, legacy, journal)
