"""A state directory: one snapshot, the journal that follows it, and the lock of its one writer.

    journal = JournalDirectory(path, AGENT_LAYOUT)
    recovery = journal.open()       # lock; snapshot + journal read; a torn tail cut; damage refused
    if recovery.needs_switch:       # an empty directory, or files of the old format
        journal.switch(owner_state_bytes)
    journal.append(batch, sync=True)        # one frame per group commit (appendfile.py)
    journal.switch(owner_state_bytes)       # compaction: snapshot G+1, journal G+1, G removed

Generations: snapshot G holds everything up to the start of `journal.G.log`. A switch creates
journal G+1 (its magic synced, then the directory), writes snapshot G+1 atomically (temporary
file, fsync, rename, directory fsync: the rename is the switch), and only then removes journal G.
A crash anywhere in between leaves either generation G whole or G+1 whole; at the next start a
journal older than the snapshot is removed, so is an empty one newer than it (a switch that did
not reach its rename), and one newer than it that holds frames is refused (the snapshot was
replaced by an older one).

The snapshot file is `SNAPSHOT_MAGIC | u64 generation | u32 crc32 | u64 length | body`; the body
is the owner's (the engine never decodes it). Old snapshots (the agent's `EDGESNAP` header, the
broker's bare MessagePack) are read through `Layout.legacy_snapshot`, and a directory read in an
old format asks its owner to switch (`Recovery.needs_switch`), after which everything is current.

Thread rules: `open`, `append`, `switch`, `sync` and `close` are called by one thread at a time
(the owning store's writer, or its opener before the writer starts).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from agent.common.fileio import PRIVATE, fsync_dir, write_atomic
from agent.common.journal import frames

from ..errors import StoreCorrupt, StoreError, StoreLocked
from .appendfile import OS, AppendFile, FileOps

log = logging.getLogger(__name__)

SNAPSHOT_MAGIC = b"EDGESNP2"
_SNAPSHOT_HEADER = struct.Struct("<8sQIQ")  # magic, generation, crc32(generation, body), length
_JOURNAL_NAME = re.compile(r"journal\.(\d+)\.log")
_NO_SNAPSHOT_REMEDY = (
    "restore the directory from a backup, or move it aside to start empty (losing what it held)"
)


@dataclass(frozen=True)
class Layout:
    """What differs between the stores built on the engine: names, old formats, messages."""

    owner: str  # "agent", "broker": in messages
    snapshot_name: str
    lock_name: str
    legacy_framing: frames.Framing  # the framing of journals without the magic
    #: (body, generation) of a snapshot file without `SNAPSHOT_MAGIC`; raises ValueError.
    legacy_snapshot: Callable[[bytes], tuple[bytes, int]]
    #: The command that reports damage in a directory (given its path); `--cut` added repairs.
    check_command: Callable[[Path], str]


class Cut(NamedTuple):
    path: Path
    offset: int
    length: int


class Recovery(NamedTuple):
    snapshot: bytes | None  # the snapshot's body; None in an empty directory
    generation: int
    batches: list[Any]  # the journal's frames after the snapshot, in order
    cuts: list[Cut]  # torn tails cut off
    needs_switch: bool  # no snapshot yet, or files of an old format: `switch` before `append`


def snapshot_bytes(generation: int, body: bytes) -> bytes:
    crc = zlib.crc32(body, zlib.crc32(struct.pack("<Q", generation)))
    return _SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, generation, crc, len(body)) + body


def read_snapshot(path: Path, layout: Layout) -> tuple[bytes, int, bool]:
    """(body, generation, legacy) of a snapshot file; StoreCorrupt when it is not one."""
    data = path.read_bytes()
    if data.startswith(SNAPSHOT_MAGIC):
        if len(data) >= _SNAPSHOT_HEADER.size:
            _, generation, crc, length = _SNAPSHOT_HEADER.unpack_from(data)
            body = data[_SNAPSHOT_HEADER.size :]
            if length == len(body) and zlib.crc32(body, zlib.crc32(struct.pack("<Q", generation))) == crc:
                return body, generation, False
        raise StoreCorrupt(
            f"{path}: not a valid snapshot (length or checksum wrong; snapshots are replaced "
            f"atomically, so a crash cannot do this); {_NO_SNAPSHOT_REMEDY}"
        )
    try:
        body, generation = layout.legacy_snapshot(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreCorrupt(f"{path}: not a valid snapshot ({exc}); {_NO_SNAPSHOT_REMEDY}") from None
    return body, generation, True


def journal_files(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.iterdir():
        match = _JOURNAL_NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def damage_message(
    path: Path, size: int, damage: frames.Damage, intact: int, layout: Layout, directory: Path
) -> str:
    """Damage in a journal, the `intact` frames before it, and what to do."""
    offset, problem = damage
    command = layout.check_command(directory)
    return (
        f"{path}: {problem} at byte {offset} of {size}, with {size - offset} bytes after it that a "
        f"crash cannot leave (the {intact} frames before it are intact). The {layout.owner} "
        f"will not start and drop them unseen. `{command}` reports the damage; `{command} --cut` keeps "
        "the frames before it, drops the rest and saves a copy of the file; or restore the directory "
        "from a backup."
    )


def missing_snapshot(snapshot_path: Path, journals: list[tuple[int, Path]]) -> StoreCorrupt:
    names = ", ".join(p.name for _, p in journals)
    return StoreCorrupt(f"{snapshot_path} is missing but {names} exist: the state cannot be rebuilt")


def newer_journal(path: Path, snapshot_path: Path, generation: int) -> StoreCorrupt:
    return StoreCorrupt(
        f"{path} is newer than {snapshot_path.name} (generation {generation}): "
        "the snapshot was replaced by an older one; restore the directory from a backup"
    )


def holds_no_frame(path: Path) -> bool:
    """An empty journal (or only its magic): what a switch that did not reach its rename leaves."""
    data = path.read_bytes()
    return len(data) <= len(frames.MAGIC) and frames.MAGIC.startswith(data)


class JournalDirectory:
    """See the module docstring."""

    def __init__(self, directory: Path, layout: Layout, *, fsync: bool = True, ops: FileOps = OS) -> None:
        self.directory = directory
        self.layout = layout
        self.fsync = fsync
        self._ops = ops
        self.generation = 0
        self._journal: AppendFile | None = None
        self._lock_fd: int | None = None

    @property
    def journal_path(self) -> Path:
        return self.directory / f"journal.{self.generation}.log"

    @property
    def journal_bytes(self) -> int:
        return self._journal.size if self._journal is not None else 0

    # -- opening -----------------------------------------------------------------------------

    def open(self) -> Recovery:
        """Lock the directory and read it (see the module docstring). On failure nothing is held."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot use {self.directory}: {exc.strerror}") from None
        self.lock()
        try:
            return self._recover()
        except BaseException:
            self.close()
            raise

    def lock(self) -> None:
        """Take the directory's lock (StoreLocked while another process holds it)."""
        path = self.directory / self.layout.lock_name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
        except OSError as exc:
            raise StoreError(f"cannot use {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreLocked(
                f"{self.directory} is in use by another {self.layout.owner} ({path.name} is held)"
            ) from None
        self._lock_fd = fd

    def _recover(self) -> Recovery:
        snapshot_path = self.directory / self.layout.snapshot_name
        journals = journal_files(self.directory)
        if not snapshot_path.exists():
            if journals:
                raise missing_snapshot(snapshot_path, journals)
            return Recovery(None, 0, [], [], needs_switch=True)
        body, self.generation, legacy = read_snapshot(snapshot_path, self.layout)
        batches: list[Any] = []
        cuts: list[Cut] = []
        for generation, path in journals:
            if generation < self.generation:  # a switch finished but had not yet removed it
                path.unlink()
            elif generation > self.generation:
                if holds_no_frame(path):  # made by a switch that failed or crashed before its rename
                    path.unlink()
                    continue
                raise newer_journal(path, snapshot_path, self.generation)
            else:
                scan = self._read_journal(path, cuts)
                batches = scan.values
                legacy = legacy or scan.framing is not frames.CURRENT
        if not legacy:
            self._journal = self._open_journal(self.journal_path)
        return Recovery(body, self.generation, batches, cuts, needs_switch=legacy)

    def _read_journal(self, path: Path, cuts: list[Cut]) -> frames.Scan:
        data = path.read_bytes()
        scan = frames.scan(data, self.layout.legacy_framing)
        if scan.damage is not None:
            raise StoreCorrupt(
                damage_message(path, len(data), scan.damage, len(scan.values), self.layout, self.directory)
            )
        if scan.torn_bytes:
            log.warning("%s: cutting off %d bytes of a frame torn by a crash", path, scan.torn_bytes)
            with open(path, "r+b") as f:
                f.truncate(scan.valid_length)
                if self.fsync:
                    os.fsync(f.fileno())
            cuts.append(Cut(path, scan.valid_length, scan.torn_bytes))
        return scan

    def _open_journal(self, path: Path) -> AppendFile:
        journal = AppendFile(path, fsync=self.fsync, ops=self._ops)
        if journal.size == 0:  # new, or only its magic torn off by a crash
            try:
                journal.append(frames.MAGIC, sync=True)
            except BaseException:
                journal.close()
                path.unlink(missing_ok=True)  # empty (cut back): no journal rather than a stray one
                raise
            if self.fsync:
                fsync_dir(self.directory)
        return journal

    # -- writing -----------------------------------------------------------------------------

    def append(self, value: object, *, sync: bool) -> int:
        """One frame holding `value` (a batch); returns its size. Raises StoreWriteFailed."""
        if self._journal is None:
            raise StoreError(
                f"{self.directory}: the journal is not open (switch after a recovery in an old format)"
            )
        data = frames.frame(value)
        self._journal.append(data, sync=sync)
        return len(data)

    def sync(self) -> None:
        if self._journal is not None:
            self._journal.sync()

    def switch(self, snapshot_body: bytes) -> None:
        """Start generation G+1 from `snapshot_body` (see the module docstring). On failure
        generation G stands as it was, and its journal takes appends as before.

        Journal G+1 is made (its magic synced) before snapshot G+1 is renamed in: the rename is
        the switch, and once it is done there must be nothing left to fail but cleaning up."""
        generation = self.generation + 1
        new_path = self.directory / f"journal.{generation}.log"
        new_path.unlink(missing_ok=True)  # a failed switch's
        journal = self._open_journal(new_path)
        try:
            write_atomic(
                self.directory / self.layout.snapshot_name, snapshot_bytes(generation, snapshot_body), PRIVATE
            )
        except BaseException:
            journal.close()
            with contextlib.suppress(OSError):
                new_path.unlink()
            raise
        old, self._journal, self.generation = self._journal, journal, generation
        if old is not None:
            old.close()
        with contextlib.suppress(OSError):  # the new generation stands: what is left is tidying up
            for number, path in journal_files(self.directory):
                if number < generation:
                    path.unlink(missing_ok=True)
            if self.fsync:
                fsync_dir(self.directory)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
