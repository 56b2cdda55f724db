"""The live view: `edge-watch` in the foreground, and knowing when it is ready.

On a terminal edge-watch draws its table there itself. Anywhere else (a pipe, a log, a test) it
prints lines, and the demo passes them through its own stdout: the first line naming the agent
(its retained presence) proves the view is subscribed, so the device starts only then and no
result of its opening burst goes unseen.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from .processes import Child

TTY_SETTLE_S = 2.0  # a table on a terminal cannot tell us it subscribed: give it this long
LINES_WAIT_S = 15.0  # a view that names no agent by then: go on without it


def watch_command(dashboard: Path, fmt: str) -> list[str]:
    """`edge-watch` beside this Python (the venv's console script), else the same as a module."""
    options = ["--config", str(dashboard)] + ([] if fmt == "auto" else ["--format", fmt])
    edge_watch = shutil.which("edge-watch", path=str(Path(sys.executable).parent))
    if edge_watch is not None:
        return [edge_watch, *options]
    return [sys.executable, "-m", "agent.tools.watch", *options]


def _forward(source: IO[bytes], node: str, ready: threading.Event, closed: Callable[[], None]) -> None:
    """Copy the view's lines to our stdout; `closed()` once nobody reads it (`make run | head`)."""
    out = sys.stdout.buffer
    try:
        for line in source:
            out.write(line)
            out.flush()
            if node.encode() in line:
                ready.set()
    except BrokenPipeError:
        closed()
        for _ in source:  # keep the view from blocking on a full pipe until it is stopped
            pass
    finally:
        source.close()
        ready.set()  # it ended: nobody waits for it any longer


def _later(seconds: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


def start_view(
    argv: list[str], env: Mapping[str, str], node: str, closed: Callable[[], None]
) -> tuple[Child, threading.Event]:
    """Start the view in this process group (Ctrl-C reaches it); the event is set once it is ready,
    `closed()` is called when our stdout is a pipe that nobody reads any more."""
    ready = threading.Event()
    if sys.stdout.isatty():
        proc = subprocess.Popen(argv, env=dict(env))
        _later(TTY_SETTLE_S, ready.set)
    else:
        sys.stdout.flush()
        proc = subprocess.Popen(argv, env=dict(env), stdout=subprocess.PIPE, stderr=None)
        assert proc.stdout is not None
        threading.Thread(target=_forward, args=(proc.stdout, node, ready, closed), daemon=True).start()
        _later(LINES_WAIT_S, ready.set)
    return Child("watch", proc, None, own_group=False), ready
