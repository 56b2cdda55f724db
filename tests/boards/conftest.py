"""Fixtures of the board tests: emulated aarch64 and armhf Debian boards with the agent installed.

Once per session and architecture (all expensive under qemu): `board`, the cached root
(tests/boards/roots.py: built the first time) unpacked fresh, binfmt_misc registered, checked to
run ARM programs; `board_site`, a fleet and the embedded broker on the host's 127.0.0.1;
`installed`, the agent installed on the board the documented way (deploy/README.md: a bootstrap
venv with the wheel, then `edge-agent install --bundle ... --no-systemd`), running and online.
`board_wheels`: two builds (X.Y.Z and X.Y.Z+b2, the upgrade) for aarch64 and armv7l, from
deploy/dist.py. A missing tool, or running without root,
skips locally and fails in CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.conftest import IDENTITIES, REVOKED, Site, restartable_broker
from tests.boards.binfmt import BinfmtError, ensure_registered
from tests.boards.chroot import Chroot
from tests.boards.emulated import EmulatedBoard
from tests.boards.installed import Installed, install
from tests.boards.roots import BOARDS, cache_dir, cached_root, unpack
from tests.boards.wheels import BUILDS, build_wheels
from tests.support.fleet import provision
from tests.support.services import require_tool, unavailable

TOOLS = ("mmdebstrap", "arch-test", "unshare", "chroot", "mount", "tar")
APT = "apt-get install mmdebstrap arch-test qemu-user-static binfmt-support, or run .ci/run"


@pytest.fixture(scope="session")
def board_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """{role: {machine: wheel}} for the roles of BUILDS (first, upgrade)."""
    out = tmp_path_factory.mktemp("board-wheels")
    return {role: build_wheels(out / role, suffix) for role, suffix in BUILDS.items()}


@pytest.fixture(scope="session", params=list(BOARDS))
def board(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatedBoard]:
    """A fresh bookworm root of the architecture (arm64, armhf), running under qemu-user."""
    spec = BOARDS[request.param]
    if os.geteuid() != 0:
        unavailable("the board tests need root (mmdebstrap, mount namespaces, chroot)")
    for tool in (*TOOLS, spec.qemu):
        require_tool(tool, hint=APT)
    try:
        ensure_registered(spec.elf, require_tool(spec.qemu, hint=APT))
    except BinfmtError as exc:
        unavailable(str(exc))
    tarball = cached_root(spec.recipe)
    workdir = tmp_path_factory.mktemp(f"board-{spec.debian_arch}")
    pip_cache = cache_dir() / f"pip-{spec.debian_arch}"
    pip_cache.mkdir(parents=True, exist_ok=True)
    chroot = Chroot(unpack(tarball, workdir / "root"), binds={pip_cache: "/root/.cache/pip"})
    logs = workdir / "logs"
    logs.mkdir()
    board = EmulatedBoard(spec, chroot, logs)
    try:
        machine = chroot.run("uname", "-m").stdout.strip()
        assert machine == spec.machine, f"the {spec.debian_arch} root runs as {machine!r}, not {spec.machine}"
        yield board
    finally:
        board.kill_all()  # the installed agent is nobody's child here
        shutil.rmtree(workdir / "root", ignore_errors=True)  # a few hundred MB


@pytest.fixture(scope="session")
def board_site(board: EmulatedBoard, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A fleet and the embedded broker for this board's session (the agent suite's `site`)."""
    tmp = tmp_path_factory.mktemp(f"site-{board.spec.debian_arch}")
    fleet = provision(tmp, IDENTITIES, revoked=REVOKED)
    with (
        restartable_broker("embedded", fleet) as running,
        contextlib.closing(Site(fleet, running, tmp)) as site,
    ):
        yield site


@pytest.fixture(scope="session")
def installed(board: EmulatedBoard, board_site: Site, board_wheels: dict[str, dict[str, Path]]) -> Installed:
    """The first build installed on the board and online (asserted by `install`)."""
    return install(board, board_site, board_wheels["first"][board.spec.machine])
