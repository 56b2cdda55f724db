"""An emulated board for the tests: an unpacked Debian root driven through qemu-user.

    board = EmulatedBoard(BOARDS["arm64"], Chroot(root), logs)
    venv = board.install_wheel(wheel)                 # deploy/README.md's route for this board
    with board.agent(venv, "/etc/edge-agent/agent.toml", env) as agent: ...

Everything runs inside the root as root (the board's own root user); files go in with `put`.
Not thread-safe: one test drives a board at a time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.agent.conftest import AgentProcess
from tests.boards.chroot import Chroot, stop
from tests.boards.roots import Board

VENV = "/opt/edge"
PIP_TIMEOUT_S = 1200.0


class AgentOnBoard(AgentProcess):
    """An agent process on the board; `proc.pid` is the agent itself (no wrapper)."""

    def kill9(self) -> None:
        """A crash: SIGKILL to the agent only (its workers notice their parent is gone)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


@dataclass
class EmulatedBoard:
    spec: Board
    chroot: Chroot
    logs: Path  # host directory for the programs' output

    def put(self, host: Path, inside: str, mode: int | None = None) -> str:
        """Copy a host file or directory onto the board; returns its path there."""
        target = self.chroot.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        if host.is_dir():
            shutil.copytree(host, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(host, target)
        if mode is not None:
            target.chmod(mode)
        return inside

    def venv_command(self, venv: str = VENV) -> list[str]:
        """`python3 -m venv` as deploy/README.md has it for this board (armhf: system site packages)."""
        flags = ["--system-site-packages"] if self.spec.system_site_packages else []
        return ["python3", "-m", "venv", *flags, venv]

    def install_wheel(self, wheel: Path, venv: str = VENV) -> str:
        """A venv with the wheel and its dependencies from the registries; the venv's path."""
        inside = self.put(wheel, f"/root/dist/{wheel.name}")
        self.chroot.run(*self.venv_command(venv))
        self.chroot.run(f"{venv}/bin/pip", "install", "--quiet", inside, timeout=PIP_TIMEOUT_S)
        return venv

    @contextlib.contextmanager
    def agent(
        self, venv: str, config: str, env: Mapping[str, str], name: str = "agent"
    ) -> Iterator[AgentOnBoard]:
        """`edge-agent run --config CONFIG` on the board until the block ends (then stopped)."""
        log = self.logs / f"{name}.log"
        proc = self.chroot.start(f"{venv}/bin/edge-agent", "run", "--config", config, log=log, env=env)
        try:
            yield AgentOnBoard(proc, log)
        finally:
            stop(proc)
