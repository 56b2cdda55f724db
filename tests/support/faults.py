"""Faults injected into the journal engine's system calls (`agent.common.journal.FileOps`).

The kernel's own faults are used where a process can have them (RLIMIT_FSIZE gives real short
writes and EFBIG); the rest (a full disk, a dying one) come from here, failing exactly as the
kernel would: a write that takes only part of its bytes, ENOSPC, EIO on a sync."""

from __future__ import annotations

import errno
import os

from agent.common.journal import FileOps


class InjectedFaults(FileOps):
    """Records each call's name in `calls`.

    - `chunk`: at most this many bytes per write (short writes);
    - `space`: bytes the disk still takes, then ENOSPC;
    - `fail[name] = errno`: the call `name` ("write", "pwritev", "fdatasync", "ftruncate")
      raises once, or every time while `persistent`;
    - `dsync = False`: a kernel without pwritev2 RWF_APPEND|RWF_DSYNC.
    """

    def __init__(self, *, chunk: int = 1 << 30, space: int = 1 << 50, dsync: bool = True) -> None:
        self.chunk = chunk
        self.space = space
        self.dsync = dsync
        self.fail: dict[str, int] = {}
        self.persistent = False
        self.calls: list[str] = []
        self.short_writes = 0

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        code = self.fail.get(name) if self.persistent else self.fail.pop(name, None)
        if code is not None:
            raise OSError(code, os.strerror(code))

    def _take(self, wanted: int) -> int:
        if self.space <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        take = min(wanted, self.chunk, self.space)
        self.short_writes += take < wanted
        self.space -= take
        return take

    def write(self, fd: int, data: memoryview) -> int:
        self._enter("write")
        return os.write(fd, data[: self._take(len(data))])

    def append_dsync(self, fd: int, data: bytes) -> int:
        if not self.dsync:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        self._enter("pwritev")
        return super().append_dsync(fd, data[: self._take(len(data))])

    def fdatasync(self, fd: int) -> None:
        self._enter("fdatasync")
        super().fdatasync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self._enter("ftruncate")
        super().ftruncate(fd, size)
