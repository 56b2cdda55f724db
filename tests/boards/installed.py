"""The agent installed on an emulated board by its own installer, and what a test does with it.

    installed = install(board, site, wheel)      # bootstrap venv + `edge-agent install --no-systemd`
    installed.upgrade(newer_wheel)               # the same command with another wheel
    installed.restart_as_the_unit()              # after a crash: what systemd's Restart= would do

The installed configuration points the agent at the site's broker on the host's 127.0.0.1 (one
network namespace) and its /health at a free host port, which the installer waits on and the
tests read. Not thread-safe.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.agent.conftest import Site
from tests.boards.emulated import EmulatedBoard, UnitCommand
from tests.boards.wheels import version_of
from tests.deploy.test_install import archive, online, settings
from tests.support.services import free_port

HEALTH_TIMEOUT_S = 300  # a start under qemu: Python, numpy and cryptography emulated, on shared cores
BUNDLE = "/root/node-1.tar.gz"


@dataclass
class Installed:
    board: EmulatedBoard
    site: Site
    metrics_port: int
    unit: UnitCommand
    version: str

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/health"

    def run_installer(self, wheel: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        inside = self.board.put(wheel, f"/root/{wheel.name}")
        args = install_args(self.site, self.metrics_port, inside, HEALTH_TIMEOUT_S)
        return self.board.edge_agent("install", "--no-systemd", *args, *extra)

    def online(self, version: str | None = None) -> None:
        """/health says healthy, this version, presence acknowledged."""
        online(self.site, self.health_url, version or self.version, timeout=HEALTH_TIMEOUT_S)

    def restart_as_the_unit(self) -> None:
        """Start the agent as the unit's ExecStart would, unless one runs already; wait until online."""
        if self.board.agent_pid() is None:
            self.board.start_as_the_unit(self.unit)
        self.online()


def install_args(site: Site, metrics_port: int, wheel: str, health_timeout_s: float) -> list[str]:
    """`edge-agent install`'s options in the tests on a board or a booted system: Debian's Python,
    the bundle at BUNDLE, the wheel (a path there); this site's broker, one worker, /health on
    `metrics_port`, a heartbeat every 2 s."""
    return [
        *("--python", "/usr/bin/python3", "--bundle", BUNDLE, "--wheel", wheel),
        *("--health-timeout", str(health_timeout_s)),
        *settings(site, metrics_port),
        *("--set", "heartbeat.interval_s=2"),
    ]


def install(board: EmulatedBoard, site: Site, wheel: Path) -> Installed:
    """The first install, asserted: exit 0, started and online."""
    board.put(archive(site), BUNDLE)
    board.bootstrap(wheel)
    placeholder = Installed(board, site, free_port(), UnitCommand((), "", ""), version="")
    done = placeholder.run_installer(wheel)
    assert done.returncode == 0, f"edge-agent install exited with {done.returncode}:\n{done.stdout}"
    version = version_of(wheel)
    assert f"done: version {version} started and online" in done.stdout, done.stdout
    installed = Installed(board, site, placeholder.metrics_port, UnitCommand.parse(done.stdout), version)
    (board.logs / "install.log").write_text(done.stdout)
    return installed
