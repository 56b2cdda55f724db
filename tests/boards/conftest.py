"""Fixtures of the board tests: emulated aarch64 and armhf Debian boards, and the wheel they install.

`board` (per session and architecture): binfmt_misc registered, the cached root (built the first
time, tests/boards/roots.py) unpacked fresh, checked to run ARM programs. `board_venv`: the project's
wheel installed on it the documented way. Both are expensive under qemu, so they are made once per
session; each test starts its own agent against its own fleet and broker (`site`, from the agent
suite). A missing tool, or running without root, skips locally and fails in CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.conftest import site
from tests.boards.binfmt import BinfmtError, ensure_registered
from tests.boards.chroot import Chroot
from tests.boards.emulated import EmulatedBoard
from tests.boards.roots import BOARDS, cache_dir, cached_root, unpack
from tests.boards.wheels import build_wheels
from tests.support.services import in_ci, require_tool

__all__ = ["site"]  # re-exported for this folder
TOOLS = ("mmdebstrap", "arch-test", "unshare", "chroot", "mount", "tar")
APT = "apt-get install mmdebstrap arch-test qemu-user-static binfmt-support, or run .ci/run"


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def board_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The aarch64 and armv7l wheels of this checkout (`make dist`), built once per session."""
    return build_wheels(tmp_path_factory.mktemp("board-wheels"))


@pytest.fixture(scope="session", params=list(BOARDS))
def board(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatedBoard]:
    """A fresh bookworm root of the architecture (arm64, armhf), running under qemu-user."""
    spec = BOARDS[request.param]
    if os.geteuid() != 0:
        _unavailable("the board tests need root (mmdebstrap, mount namespaces, chroot)")
    for tool in (*TOOLS, spec.qemu):
        require_tool(tool, hint=APT)
    try:
        ensure_registered(spec.elf, require_tool(spec.qemu, hint=APT))
    except BinfmtError as exc:
        _unavailable(str(exc))
    tarball = cached_root(spec)
    workdir = tmp_path_factory.mktemp(f"board-{spec.debian_arch}")
    pip_cache = cache_dir() / f"pip-{spec.debian_arch}"
    pip_cache.mkdir(parents=True, exist_ok=True)
    chroot = Chroot(unpack(tarball, workdir / "root"), binds={pip_cache: "/root/.cache/pip"})
    logs = workdir / "logs"
    logs.mkdir()
    machine = chroot.run("uname", "-m").stdout.strip()
    assert machine == spec.machine, f"the {spec.debian_arch} root runs as {machine!r}, not {spec.machine}"
    yield EmulatedBoard(spec, chroot, logs)
    shutil.rmtree(workdir / "root", ignore_errors=True)  # a few hundred MB; the logs stay


@pytest.fixture(scope="session")
def board_venv(board: EmulatedBoard, board_wheels: dict[str, Path]) -> str:
    """The board's wheel installed as deploy/README.md says; the venv's path there."""
    return board.install_wheel(board_wheels[board.spec.machine])
