"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Write to a temporary file in the same directory, fsync it, rename it over the target, then
fsync the directory so the rename itself survives a power cut. Private files are created
0600 from the first byte (never chmod-ed after the fact).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PRIVATE = 0o600
PUBLIC = 0o644


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike[str], mode: int = PUBLIC, *, sync_dir: bool = True
) -> Iterator[BinaryIO]:
    """A file to write that replaces `path` atomically when the block ends without an error
    (and is removed when it raises): for contents written in pieces."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(target.parent)


def write_atomic(
    path: str | os.PathLike[str], data: bytes | str, mode: int = PUBLIC, *, sync_dir: bool = True
) -> None:
    """Replace `path` with `data` atomically, with permission bits `mode`."""
    with atomic_file(path, mode, sync_dir=sync_dir) as f:
        f.write(data.encode() if isinstance(data, str) else data)
