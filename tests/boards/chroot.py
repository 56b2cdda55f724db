"""Run programs inside an emulated board: a chroot into an unpacked root, through qemu-user.

Each command runs in a mount namespace of its own (`unshare --mount`): /proc, /sys and /dev are
mounted into the root there and vanish with the last process of the command, so nothing is left
mounted on the host when a test fails half-way, and removing the root can never reach the host's
/dev. The network namespace is the host's: a broker on the host's 127.0.0.1 is reachable from the
board. `binds` bind-mount host directories into the root for one command (a pip cache).

`start` returns a process whose pid is the board program itself (the shell and chroot exec into
it), so `kill -9` of that pid is a crash of the program, not of a wrapper. Its session is new, so
what it leaves behind (worker processes) can be killed by process group.

Not thread-safe per Board: a test drives one board from one thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.boards.roots import PIP_CERT_INSIDE

BOARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# $1 is the root, then pairs of (host dir, dir in the root) until "--", then the command.
_ENTER = r"""
set -e
root=$1; shift
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
while [ "$1" != "--" ]; do
    mkdir -p "$root$2"; mount --bind "$1" "$root$2"; shift 2
done
shift
exec chroot "$root" "$@"
"""


class BoardCommandError(AssertionError):
    """A command on the board exited non-zero: its output is in the message."""


@dataclass
class Chroot:
    """An unpacked root and the environment its programs get."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    binds: dict[Path, str] = field(default_factory=dict)

    def command(self, argv: Sequence[str | Path]) -> list[str]:
        pairs = [str(p) for host, inside in self.binds.items() for p in (host, inside)]
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            _ENTER,
            "enter-board",
            str(self.root),
            *pairs,
            "--",
            *map(str, argv),
        ]

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        base = {"PATH": BOARD_PATH, "HOME": "/root", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
        for name in ("PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK"):
            if name in os.environ:
                base[name] = os.environ[name]
        if self.path(PIP_CERT_INSIDE).is_file():
            base["PIP_CERT"] = PIP_CERT_INSIDE
        return {**base, **self.env, **(extra or {})}

    def run(
        self,
        *argv: str | Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 300,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run to completion; stdout and stderr together in `.stdout`."""
        done = subprocess.run(
            self.command(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.environment(env),
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            shown = " ".join(map(str, argv))
            raise BoardCommandError(f"on the board: {shown} exited with {done.returncode}:\n{done.stdout}")
        return done

    def start(
        self, *argv: str | Path, log: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start in the background, output appended to `log` (a host path)."""
        with log.open("ab") as out:
            return subprocess.Popen(
                self.command(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(env),
                start_new_session=True,
            )

    def path(self, inside: str) -> Path:
        """The host path of a path on the board."""
        return self.root / inside.lstrip("/")

    def put(self, host: Path, inside: str, mode: int | None = None) -> str:
        """Copy a host file onto the board; returns its path there."""
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        shutil.copyfile(host, target)
        if mode is not None:
            target.chmod(mode)
        return inside
