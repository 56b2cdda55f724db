"""Ctrl-C for the demo alone, not for the `make` that started it.

A terminal sends SIGINT to its whole foreground process group. Under `make run` that group holds
make too, and GNU make, once interrupted, waits for its child and then kills itself with SIGINT
("make: *** [run] Interrupt", status 130) whatever the child did. So the demo moves into a
process group of its own and makes it the terminal's foreground group, as a shell does for a job;
Ctrl-C then reaches the demo and its live view only, the demo stops everything cleanly and exits
0, and make exits 0. The previous foreground group gets the terminal back on the way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator


def _set_foreground(fd: int, pgrp: int) -> None:
    # A process outside the foreground group gets SIGTTOU when it calls tcsetpgrp: ignore it meanwhile.
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, previous)


@contextlib.contextmanager
def own_foreground() -> Iterator[bool]:
    """Lead a new foreground process group while the block runs; yields whether it did.

    Does nothing without a controlling terminal (a test, a pipeline) or when this process leads
    its group already (started from a shell directly)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        yield False
        return
    try:
        previous = os.tcgetpgrp(fd)
        if os.getpgrp() == os.getpid() or previous != os.getpgrp():
            yield False
            return
        os.setpgid(0, 0)
        _set_foreground(fd, os.getpgrp())
        try:
            yield True
        finally:
            with contextlib.suppress(OSError):
                _set_foreground(fd, previous)
    finally:
        os.close(fd)
