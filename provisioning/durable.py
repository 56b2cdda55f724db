"""Writing many new files and making them durable together, with one flush instead of one per file.

`add --count 1000` writes 4,000 small files. An fsync per file costs a disk cache flush each
(~3 ms on this VM's disk: 12 s for the batch); `syncfs(2)` commits the file system's journal
once. Every file written here has a new name (files carry their generation, see material.py),
so no reader can see a half-written one: the registry, written atomically afterwards, is what
makes them part of the fleet. Where `syncfs` is missing, each file and directory is fsynced.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

from agent.common.fileio import fsync_dir


def write_new(path: Path, data: bytes | str, mode: int) -> None:
    """Create `path` with permission bits `mode` from the first byte (a stale leftover is replaced)."""
    payload = data.encode() if isinstance(data, str) else data
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


@cache
def _syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        syncfs: Callable[[int], int] = libc.syncfs
        return syncfs
    except (OSError, AttributeError):
        return None


def make_durable(root: Path, paths: Iterable[Path]) -> None:
    """Everything written under `root` (at least `paths`, files and directories) survives a power cut."""
    syncfs = _syncfs()
    if syncfs is not None:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        if path.is_dir():
            fsync_dir(path)
        else:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
