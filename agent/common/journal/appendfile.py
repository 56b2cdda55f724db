"""An append-only file of frames that is never left with a partial frame in the middle.

`AppendFile.append(data, sync)` writes every byte (a short write is followed by another, until
all is out or the kernel reports an error) and, when `sync`, makes them durable. When anything
fails (a full disk, `RLIMIT_FSIZE`, an I/O error on the write or on the sync) the file is cut
back to where it ended before the append and that cut is synced, so that the next append does
not land behind partial bytes; if even that fails, the file is *broken* and refuses every
further append. Either way `StoreWriteFailed` is raised and the caller acknowledges nothing of
what it tried to write.

The system calls go through `FileOps`, which tests replace to inject short writes, ENOSPC and
EIO. One thread appends to a file at a time (the owning store's writer).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import NoReturn

from agent.common.fileio import PRIVATE

from ..errors import StoreWriteFailed

#: pwritev2 flags for "append these bytes and make them durable" in one system call (Linux 4.16+).
APPEND_DSYNC = os.RWF_APPEND | os.RWF_DSYNC if hasattr(os, "RWF_APPEND") and hasattr(os, "RWF_DSYNC") else 0
_UNSUPPORTED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS})  # an older kernel


class FileOps:
    """The system calls of an append; a test subclass injects faults."""

    def write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, data)

    def append_dsync(self, fd: int, data: bytes) -> int:
        """Append and sync in one call; raises OSError(EINVAL...) where the kernel cannot."""
        if not APPEND_DSYNC:
            raise OSError(errno.ENOSYS, "no pwritev2 RWF_APPEND|RWF_DSYNC")
        return os.pwritev(fd, [data], 0, APPEND_DSYNC)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)


OS = FileOps()


class AppendFile:
    """See the module docstring."""

    def __init__(self, path: Path, *, fsync: bool = True, ops: FileOps = OS) -> None:
        self.path = path
        self._fsync = fsync
        self._ops = ops
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, PRIVATE)
        self.size = os.fstat(self._fd).st_size  # where the last whole append ended
        self._unsynced = self.size > 0  # a killed process's writes may not be synced yet
        self._append_dsync = True  # False once the kernel has refused it
        self.broken: str | None = None  # why the file refuses appends

    def append(self, data: bytes, *, sync: bool) -> None:
        """Write all of `data` at the end; durable on return when `sync` (and fsync is on)."""
        if self.broken is not None:
            raise StoreWriteFailed(f"{self.path} refuses appends: {self.broken}", broken=True)
        sync = sync and self._fsync
        try:
            self._append(data, sync)
        except OSError as exc:
            self._cut_back(exc, len(data))
        self.size += len(data)

    def _append(self, data: bytes, sync: bool) -> None:
        written = 0
        if sync and not self._unsynced and self._append_dsync:
            try:
                written = self._ops.append_dsync(self._fd, data)
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                self._append_dsync = False
            if written == len(data):
                return
        self._write_all(memoryview(data)[written:])
        if sync:
            self._ops.fdatasync(self._fd)
        self._unsynced = not sync

    def _write_all(self, data: memoryview) -> None:
        while data:
            written = self._ops.write(self._fd, data)
            if written <= 0:  # the kernel reports the error on the next call; a 0 would loop
                raise OSError(errno.ENOSPC, "the file system accepted no more bytes")
            data = data[written:]

    def _cut_back(self, exc: OSError, length: int) -> NoReturn:
        """Put the file back to `size` after a failed append, durably, or mark it broken."""
        what = f"appending {length} bytes to {self.path} failed: {exc.strerror or exc}"
        try:
            self._ops.ftruncate(self._fd, self.size)
            if self._fsync:
                self._ops.fdatasync(self._fd)
        except OSError as cut_exc:
            self.broken = f"{what}, and cutting it back to byte {self.size} failed too: {cut_exc.strerror}"
            raise StoreWriteFailed(self.broken, broken=True) from exc
        self._unsynced = False
        raise StoreWriteFailed(
            f"{what}; the file was cut back to its last whole frame (byte {self.size})"
        ) from exc

    def sync(self) -> None:
        """Make every append so far durable (after appends with `sync=False`)."""
        if self._unsynced and self._fsync and self.broken is None:
            self._ops.fdatasync(self._fd)
            self._unsynced = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
