"""A Debian system booted with systemd as its PID 1, in a container (systemd-nspawn), for the units.

    system = BootedSystem(root, name="edge-svc-1", logs=logs, binds={pip_cache: "/root/.cache/pip"})
    system.boot()                                  # nspawn -b, then `systemctl is-system-running --wait`
    system.run("systemctl", "is-active", "edge-agent")
    system.poweroff()

The board tests (tests/boards) run the installer in a chroot, where nothing is PID 1; here systemd
itself starts the unit, with its sandbox, notify socket, watchdog and journal, which is what a board
does. Commands enter the container's namespaces and root with `nsenter` (the container is not
registered with machined: this machine's init is not systemd, so `machinectl` cannot reach it).

The network is the host's (no --private-network): a broker on the host's 127.0.0.1 is the system's
broker too, and the agent's /health port inside is reachable from the test. Pids in the container's
own pid namespace are what `systemctl show -p MainPID` says; `host_pid` maps them for the test.
Not thread-safe: one test drives the system at a time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.boards.chroot import BoardCommandError, Chroot

BOOT_TIMEOUT_S = 120.0
POWEROFF_TIMEOUT_S = 60.0


class BootError(AssertionError):
    """The container did not come up: the end of its console is in the message."""


class BootedSystem(Chroot):
    """An unpacked root run as a whole system; `run` and `start` execute inside it as root."""

    def __init__(self, root: Path, name: str, logs: Path, binds: dict[Path, str] | None = None) -> None:
        super().__init__(root, binds=dict(binds or {}))
        self.name = name
        self.logs = logs
        self.console = logs / "console.log"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None  # the container's systemd, as a host pid

    def nspawn_command(self, nspawn: str) -> list[str]:
        binds = [f"--bind={host}:{inside}" for host, inside in self.binds.items()]
        return [
            nspawn,
            f"--directory={self.root}",
            f"--machine={self.name}",
            "--boot",
            "--register=no",  # no machined on a host whose init is not systemd
            "--keep-unit",  # ... nor a system bus to ask for a scope
            "--console=read-only",
            "--resolv-conf=copy-host",
            "--timezone=off",
            *binds,
        ]

    def boot(self, nspawn: str = "systemd-nspawn") -> None:
        """Start the container and wait until systemd says the boot is finished."""
        with self.console.open("ab") as out:
            self.nspawn = subprocess.Popen(
                self.nspawn_command(nspawn), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self.leader = self._find_leader()
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        state = ""
        while time.monotonic() < deadline:
            # 'Failed to connect to bus' until systemd listens on its private socket
            done = self.run("systemctl", "is-system-running", "--wait", timeout=BOOT_TIMEOUT_S, check=False)
            state = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
            if state in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise BootError(f"the system is {state!r} after its boot:\n{self.console_tail()}")

    def _find_leader(self) -> int:
        """The container's PID 1 (its systemd), a child of systemd-nspawn on the host."""
        assert self.nspawn is not None
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise BootError(
                    f"systemd-nspawn exited with {self.nspawn.returncode}:\n{self.console_tail()}"
                )
            for child in _children(self.nspawn.pid):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                        return child
            time.sleep(0.1)
        raise BootError(f"no systemd started in the container:\n{self.console_tail()}")

    def command(self, argv: Sequence[str | Path]) -> list[str]:
        """`argv` inside the container: all its namespaces, its root and working directory."""
        assert self.leader is not None, "boot() first"
        return ["nsenter", f"--target={self.leader}", "--all", "--root", "--wd", "--", *map(str, argv)]

    def systemctl_show(self, unit: str, *properties: str) -> dict[str, str]:
        shown = self.run("systemctl", "show", unit, *(f"--property={p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)

    def journal(self, unit: str, since_cursor: str | None = None) -> list[str]:
        """The unit's journal as its processes wrote it (`-o cat`), oldest first."""
        args = ["journalctl", "--unit", unit, "--output=cat", "--no-pager"]
        if since_cursor:
            args.append(f"--after-cursor={since_cursor}")
        return self.run(*args).stdout.splitlines()

    def host_pid(self, container_pid: int) -> int:
        """The host's pid of a process known inside the container by `container_pid`."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                status = (entry / "status").read_text()
                found = re.search(r"^NSpid:\s+(.*)$", status, re.MULTILINE)
                if found and found.group(1).split()[-1] == str(container_pid) and self._inside(entry):
                    return int(entry.name)
        raise LookupError(f"no process {container_pid} in the container")

    def _inside(self, proc: Path) -> bool:
        assert self.leader is not None
        return os.readlink(proc / "ns" / "pid") == os.readlink(f"/proc/{self.leader}/ns/pid")

    def console_tail(self, lines: int = 60) -> str:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def poweroff(self) -> None:
        """A clean shutdown (the units stopped as on a board), killed if it takes too long."""
        if self.nspawn is None or self.nspawn.poll() is not None:
            return
        with contextlib.suppress(BoardCommandError, subprocess.TimeoutExpired):
            self.run("systemctl", "poweroff", "--no-block", timeout=30)
        try:
            self.nspawn.wait(POWEROFF_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.nspawn.send_signal(signal.SIGKILL)
            self.nspawn.wait(30)


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status of a host pid, as {field: value}: what the kernel enforces on the process."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}
