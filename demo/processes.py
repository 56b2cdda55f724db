"""The demo's child processes: started in sessions of their own, stopped one by one, never orphaned.

Each child (broker, agent, device) gets its own session, so the terminal's Ctrl-C reaches only
the demo's orchestrator and the live view, and the orchestrator stops the rest in order (device,
then agent so that it publishes its offline presence while the broker is up, then broker). Their
pids are kept in `.demo/pids`: a demo killed with `kill -9` leaves children behind, and the next
run stops them before it removes the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.common.fileio import write_atomic

from .errors import DemoError

POLL_S = 0.1


class Interrupted(Exception):
    """A stop signal arrived while the demo was still starting."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path | None
    own_group: bool = True  # started in a session of its own (the live view is not)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        if self.log is None or not self.log.exists():
            return ""
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "\n".join(f"    {line}" for line in text)

    def where(self) -> str:
        """Where to read what happened, for an error message."""
        if self.log is None:
            return " (its output is above)"
        return f"; its log ({self.log}) ends:\n{self.tail()}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig`, wait up to `timeout`, then SIGKILL. Returns the exit code. A child that leads
        its own process group takes the group with it: whatever is left in it (the workers of an
        agent that crashed) is killed too."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop within {timeout:.0f} s: killed", flush=True)
                self._kill()
        code = self.proc.wait()
        if self.own_group:
            self._kill()
        return code

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.own_group:
                os.killpg(self.pid, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)


def spawn(name: str, argv: Sequence[str], log: Path, env: Mapping[str, str]) -> Child:
    """Start `argv` in a session of its own, stdout and stderr appended to `log`."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, proc, log)


def wait_until(
    what: str, check: Callable[[], bool], stop: threading.Event, timeout: float, child: Child
) -> None:
    """Wait for `check()`; Interrupted on `stop`, DemoError if `child` dies or the time runs out."""
    deadline = time.monotonic() + timeout
    while not check():
        if stop.is_set():
            raise Interrupted()
        if not child.running():
            raise DemoError(
                f"{child.name} exited with status {child.proc.returncode} before {what}{child.where()}"
            )
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not happen within {timeout:.0f} s{child.where()}")
        stop.wait(POLL_S)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


# --- leftovers of a demo that was killed -------------------------------------------------------------


DEMO_KEY = "demo"  # the orchestrator's own entry in the pid file
RUN_MARKER = "EDGE_DEMO_RUN_DIR"  # in every child's environment: the demo directory of its run


def record(pid_file: Path, children: Iterable[Child]) -> None:
    """Replaced atomically: a demo killed while it writes must leave the previous list readable."""
    pids = {DEMO_KEY: os.getpid(), **{c.name: c.pid for c in children}}
    write_atomic(pid_file, json.dumps(pids), sync_dir=False)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_leftovers(pid_file: Path, root: Path, timeout: float = 10.0) -> list[str]:
    """Stop the children a previous run left behind (its pid file names them; each must still be
    a process whose command line names `root`, so a reused pid is never touched). DemoError if
    that run is still going."""
    try:
        pids: dict[str, int] = json.loads(pid_file.read_text())
    except (OSError, ValueError):
        return []
    demo = pids.pop(DEMO_KEY, None)
    if demo is not None and demo != os.getpid() and "demo" in _cmdline(demo).split():
        raise DemoError(
            f"another `make run` (pid {demo}) is using {root}; stop it first (Ctrl-C in its terminal, or "
            f"kill {demo}), or set EDGE_DEMO_DIR to run a second demo elsewhere"
        )
    found = {name: pid for name, pid in pids.items() if str(root) in _cmdline(pid)}
    # A child started in the instant before the run was killed is not in the pid file yet: every
    # child carries RUN_MARKER=<root> in its environment, which finds it too.
    known = set(found.values())
    for pid in sorted(_marked(root)):
        if pid not in known and pid != os.getpid():
            found[f"pid {pid}"] = pid
    for pid in found.values():
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_cmdline(pid) for pid in found.values()):
        time.sleep(POLL_S)
    for pid in found.values():
        if _cmdline(pid):
            _signal(pid, signal.SIGKILL)
    return sorted(found)


def _marked(root: Path) -> set[int]:
    """Processes of this user whose environment says they are children of a run in `root`."""
    needle = f"{RUN_MARKER}={root}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
    return found


def _signal(pid: int, sig: int) -> None:
    """`sig` to the process, and to its whole group when it leads one (the agent's workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
