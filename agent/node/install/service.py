"""Who runs the agent: systemd (the unit), or the installer itself where there is no systemd.

    service = SystemdService(layout, systemctl)      # or DirectService(layout, users, stop_timeout_s)
    service.start(); service.stop(); service.failure()   # None while it runs, else why it stopped
    service.running()                                # an agent of this installation runs

`DirectService` (--no-systemd: a chroot, a container, a board whose init is not systemd) starts
the unit's command line itself, as the unit would: as the service user, in a session of its own,
with the unit's environment, output appended to /var/lib/edge-agent/agent.log. It finds the
running agent, whoever started it, by the lock on its state (`state/LOCK`, /proc/locks), so it
stops the right process even after the agent was started by hand or by a test. Runs on the
installer's one thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

from .errors import StepFailed
from .layout import UNIT, Layout
from .system import Users, run

UNIT_ENVIRONMENT = {"EDGE_LOG_FORMAT": "json", "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
LOG_TAIL = 20


class Service(Protocol):
    kind: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def running(self) -> bool: ...
    def failure(self) -> str | None: ...
    def pending(self) -> str | None: ...
    def check_lines(self) -> list[str]: ...


def lock_holder(lock: Path, locks: Path = Path("/proc/locks")) -> int | None:
    """The pid holding a flock(2) on `lock` (the agent owns its state so), None if nobody does."""
    try:
        st = lock.stat()
        table = locks.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StepFailed(f"cannot tell whether the agent runs: {exc} (is /proc mounted?)") from None
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":  # "N: -> FLOCK ..." is a waiter
            continue
        major, minor, inode = fields[5].split(":")
        if (int(major, 16), int(minor, 16), int(inode)) == wanted:
            return int(fields[4])
    return None


def tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} cannot be read)"


class DirectService:
    kind = "direct"

    def __init__(self, layout: Layout, users: Users, stop_timeout_s: float) -> None:
        self.layout = layout
        self.users = users
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def lock(self) -> Path:
        return self.layout.state / "state" / "LOCK"

    def running(self) -> bool:
        return lock_holder(self.lock) is not None

    def start(self) -> None:
        owner, as_root = self.users.owner(), self.users.as_root
        env = {**UNIT_ENVIRONMENT, "HOME": str(self.layout.state)}
        with self.layout.log.open("ab") as out:
            if self.users.as_root:
                os.chown(self.layout.log, owner.uid, owner.gid)
            self._proc = subprocess.Popen(
                self.layout.command(),
                cwd=self.layout.state,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=owner.uid if as_root else None,
                group=owner.gid if as_root else None,
                extra_groups=[] if as_root else None,
            )

    def stop(self) -> None:
        """SIGTERM to the agent holding the state, then SIGKILL after the drain's time."""
        pid = lock_holder(self.lock)
        if pid is None:
            return
        for signum, wait in ((signal.SIGTERM, self.stop_timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and lock_holder(self.lock) == pid:
                self._reap()
                time.sleep(0.05)
            if lock_holder(self.lock) != pid:
                break
        self._reap()
        if lock_holder(self.lock) == pid:
            raise StepFailed(f"the agent (pid {pid}) did not stop, even on SIGKILL")

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.poll()

    def failure(self) -> str | None:
        """Why the agent this installer started has exited (None: it runs)."""
        if self._proc is None or self._proc.poll() is None:
            return None
        log = self.layout.log
        return f"the agent exited with status {self._proc.returncode}; the end of {log}:\n{tail(log)}"

    def pending(self) -> str | None:
        """Nothing supervises the agent here: /health alone says it is online."""
        return None

    def check_lines(self) -> list[str]:
        return [
            f"the agent runs without systemd: its log is {self.layout.log}",
            f"started as the unit would: {' '.join(self.layout.command())}"
            f" (user {self.layout.user}, EDGE_LOG_FORMAT=json, in {self.layout.state})",
        ]


class SystemdService:
    kind = "systemd"

    def __init__(self, layout: Layout, systemctl: str = "systemctl") -> None:
        self.layout = layout
        self.systemctl = systemctl

    @property
    def offline(self) -> bool:
        """Installing under --root: the unit is enabled there for that system's next boot."""
        return self.layout.root != Path("/")

    def _ctl(self, *args: str) -> str:
        root = [f"--root={self.layout.root}"] if self.offline else []
        return run([self.systemctl, *root, *args], f"systemctl {' '.join(args)}")

    def reload_units(self) -> None:
        if not self.offline:
            self._ctl("daemon-reload")

    def enable(self) -> None:
        self._ctl("enable", UNIT)

    def disable(self) -> None:
        if self.offline:
            self._ctl("disable", UNIT)
        else:
            self._ctl("disable", "--now", UNIT)

    def start(self) -> None:
        if not self.offline:
            self._ctl("reset-failed", UNIT)
            self._ctl("restart", "--no-block", UNIT)

    def stop(self) -> None:
        if not self.offline:
            self._ctl("stop", UNIT)

    def running(self) -> bool:
        if self.offline:
            return False
        state = subprocess.run([self.systemctl, "is-active", UNIT], capture_output=True, text=True).stdout
        return state.strip() in ("active", "activating", "reloading")

    def pending(self) -> str | None:
        """None once systemd calls the unit active (it had READY=1), else its state."""
        state = subprocess.run([self.systemctl, "is-active", UNIT], capture_output=True, text=True).stdout
        return None if state.strip() == "active" else f"systemd has {UNIT} {state.strip() or 'unknown'}"

    def failure(self) -> str | None:
        state = subprocess.run(
            [self.systemctl, "is-failed", UNIT], capture_output=True, text=True
        ).stdout.strip()
        if state != "failed":
            return None
        journal = subprocess.run(
            ["journalctl", "-u", UNIT, "-n", str(LOG_TAIL), "--no-pager", "-o", "cat"],
            capture_output=True,
            text=True,
        ).stdout
        return f"{UNIT} failed; the end of its journal:\n{journal.strip()}"

    def check_lines(self) -> list[str]:
        if self.offline:
            return [f"{UNIT} is enabled under {self.layout.root}: it starts at that system's next boot"]
        return [
            f"systemctl status {UNIT}",
            f"journalctl -u {UNIT} -f -o cat        (JSON lines: | jq .)",
        ]
