"""An emulated board for the tests: an unpacked Debian root driven through qemu-user.

    board = EmulatedBoard(BOARDS["arm64"], Chroot(root), logs)
    board.bootstrap(wheel)                       # deploy/README.md: the installer's way onto the board
    board.edge_agent("install", "--bundle", ...) # then the installer, inside the board
    board.agent_pid()                            # the agent holding the state lock, wherever it came from

Everything runs inside the root as the board's root user; files go in with `put`. Programs left
running in the root (the agent the installer started is not a child of the test) are found by
their /proc/PID/root and killed by `kill_all`. Not thread-safe: one test drives a board at a time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.node.install.service import lock_holder
from tests.boards.chroot import Chroot
from tests.boards.roots import Board

BOOTSTRAP = "/tmp/ea"  # deploy/README.md's name for the venv that carries the installer
STATE = "/var/lib/edge-agent"
PIP_TIMEOUT_S = 1200.0


@dataclass(frozen=True)
class UnitCommand:
    """How the unit starts the agent, as `edge-agent install --no-systemd` reports it."""

    argv: tuple[str, ...]
    user: str
    directory: str
    environment: tuple[tuple[str, str], ...] = (("EDGE_LOG_FORMAT", "json"),)

    @classmethod
    def parse(cls, installer_output: str) -> UnitCommand:
        """From the line 'started as the unit would: CMD (user U, EDGE_LOG_FORMAT=json, in DIR)'."""
        marker = "started as the unit would: "
        line = next((ln for ln in installer_output.splitlines() if marker in ln), None)
        assert line is not None, (
            f"the installer did not say how the unit starts the agent:\n{installer_output}"
        )
        command, _, rest = line.split(marker, 1)[1].partition(" (user ")
        user, _, rest = rest.partition(", ")
        directory = rest.rsplit(" in ", 1)[1].rstrip(")")
        return cls(tuple(command.split()), user, directory)


@dataclass
class EmulatedBoard:
    spec: Board
    chroot: Chroot
    logs: Path  # host directory for the test's own records
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)  # reaped by kill_all

    def put(self, host: Path, inside: str, mode: int | None = None) -> str:
        """Copy a host file onto the board; returns its path there."""
        return self.chroot.put(host, inside, mode)

    def venv_command(self, venv: str) -> list[str]:
        """`python3 -m venv` as deploy/README.md has it for this board (armhf: system site packages)."""
        flags = ["--system-site-packages"] if self.spec.system_site_packages else []
        return ["python3", "-m", "venv", *flags, venv]

    def bootstrap(self, wheel: Path) -> str:
        """deploy/README.md step 2's first half: a venv with the wheel, which brings `edge-agent`."""
        inside = self.put(wheel, f"/root/{wheel.name}")
        self.chroot.run(*self.venv_command(BOOTSTRAP))
        self.chroot.run(f"{BOOTSTRAP}/bin/pip", "install", "--quiet", inside, timeout=PIP_TIMEOUT_S)
        return BOOTSTRAP

    def edge_agent(
        self, *args: str | Path, timeout: float = PIP_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """`edge-agent ARGS` from the bootstrap venv, as root on the board (exit status not checked)."""
        return self.chroot.run(f"{BOOTSTRAP}/bin/edge-agent", *args, timeout=timeout, check=False)

    def agent_pid(self) -> int | None:
        """The pid of the agent holding the installed state's lock (pids are the host's: no pid namespace)."""
        return lock_holder(self.chroot.path(f"{STATE}/state/LOCK"))

    def start_as_the_unit(self, unit: UnitCommand) -> subprocess.Popen[bytes]:
        """The agent started as the unit would (its user, directory, environment), output appended to
        its log; the process is the agent itself."""
        switch = ["setpriv", f"--reuid={unit.user}", f"--regid={unit.user}", "--clear-groups"]
        argv: Sequence[str] = [*switch, "env", f"--chdir={unit.directory}", *unit.argv]
        env: Mapping[str, str] = {"HOME": unit.directory, **dict(unit.environment)}
        proc = self.chroot.start(*argv, log=self.chroot.path(f"{STATE}/agent.log"), env=env)
        self.started.append(proc)
        return proc

    def processes(self) -> list[int]:
        """Pids of the processes running inside this root."""
        found = []
        root = self.chroot.root.resolve()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if Path(os.readlink(entry / "root")) == root:
                        found.append(int(entry.name))
        return found

    def kill_all(self) -> None:
        """SIGKILL to everything running in the root, then reap what this board started."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
