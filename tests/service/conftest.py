"""Fixtures of the service tests: the agent installed as a systemd unit on a booted Debian system.

`system`: a Debian bookworm root (amd64, with systemd; cached like the boards' roots in
EDGE_BOARDS_CACHE) booted in a container with systemd as PID 1 (tests/service/booted.py);
`service_site`: a fleet and the embedded broker on the host's 127.0.0.1, which the container
shares; `service_wheels`: the x86_64 wheel of this version and of a newer build (the upgrade);
`unit`: the first wheel installed the documented way (deploy/README.md: a bootstrap venv, then
`edge-agent install --bundle ...`, with systemd this time), enabled, started by systemd and online.
Needs root, systemd-nspawn (Debian's systemd-container), nsenter and mmdebstrap: a missing one
skips locally and fails in CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agent.conftest import IDENTITIES, REVOKED, Site, restartable_broker
from tests.boards.installed import BUNDLE, install_args
from tests.boards.roots import SYSTEMD_ROOT, cache_dir, cached_root, unpack
from tests.boards.wheels import BUILDS, build_wheels, version_of
from tests.deploy.test_install import archive, online
from tests.service.booted import BootedSystem
from tests.support.fleet import provision
from tests.support.services import free_port, require_tool, unavailable

TOOLS = ("systemd-nspawn", "nsenter", "mmdebstrap", "tar")
APT = "apt-get install systemd-container mmdebstrap, or run .ci/run"
BOOTSTRAP = "/tmp/ea"  # deploy/README.md's venv that carries the installer
HEALTH_TIMEOUT_S = 120
MACHINE = "x86_64"


@pytest.fixture(scope="session")
def service_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{role: the x86_64 wheel} for the roles of BUILDS (first, upgrade)."""
    out = tmp_path_factory.mktemp("service-wheels")
    return {role: build_wheels(out / role, suffix, (MACHINE,))[MACHINE] for role, suffix in BUILDS.items()}


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedSystem]:
    """A fresh bookworm system, booted: systemd is its PID 1."""
    if os.geteuid() != 0:
        unavailable("the service tests need root (mmdebstrap, systemd-nspawn)")
    for tool in TOOLS:
        require_tool(tool, hint=APT)
    tarball = cached_root(SYSTEMD_ROOT)
    workdir = tmp_path_factory.mktemp("service")
    pip_cache = cache_dir() / "pip-amd64"
    pip_cache.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir()
    root = unpack(tarball, workdir / "root")
    booted = BootedSystem(root, f"edge-svc-{os.getpid()}", logs, binds={pip_cache: "/root/.cache/pip"})
    try:
        booted.boot()
        yield booted
    finally:
        booted.poweroff()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def service_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("service-site")
    fleet = provision(tmp, IDENTITIES, revoked=REVOKED)
    with (
        restartable_broker("embedded", fleet) as running,
        contextlib.closing(Site(fleet, running, tmp)) as site,
    ):
        yield site


@dataclass
class Unit:
    """The agent installed on `system` as the edge-agent unit, and how the test reaches it."""

    system: BootedSystem
    site: Site
    metrics_port: int
    version: str

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/health"

    def installer(self, wheel: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        """`edge-agent install --bundle ... --wheel W` with systemd, as root on the system."""
        inside = self.system.put(wheel, f"/root/{wheel.name}")
        args = install_args(self.site, self.metrics_port, inside, HEALTH_TIMEOUT_S)
        return self.system.run(
            f"{BOOTSTRAP}/bin/edge-agent", "install", *args, *extra, timeout=900, check=False
        )

    def online(self, version: str | None = None) -> None:
        online(self.site, self.health_url, version or self.version, timeout=HEALTH_TIMEOUT_S)

    def show(self, *properties: str) -> dict[str, str]:
        return self.system.systemctl_show("edge-agent", *properties)

    def main_pid(self) -> int:
        """The agent's host pid (systemd's MainPID is the container's)."""
        pid = int(self.show("MainPID")["MainPID"])
        assert pid, f"edge-agent has no main process: {self.show('ActiveState', 'SubState', 'Result')}"
        return self.system.host_pid(pid)


@pytest.fixture(scope="session")
def unit(system: BootedSystem, service_site: Site, service_wheels: dict[str, Path]) -> Unit:
    """The first build installed with systemd: exit 0, the unit active, the agent online."""
    first = service_wheels["first"]
    system.put(archive(service_site), BUNDLE)
    system.put(first, f"/root/{first.name}")
    system.run("python3", "-m", "venv", BOOTSTRAP)
    system.run(f"{BOOTSTRAP}/bin/pip", "install", "--quiet", f"/root/{first.name}", timeout=900)
    installed = Unit(system, service_site, free_port(), version_of(first))
    done = installed.installer(first)
    (system.logs / "install.log").write_text(done.stdout)
    assert done.returncode == 0, f"edge-agent install exited with {done.returncode}:\n{done.stdout}"
    assert f"done: version {installed.version} started and online" in done.stdout, done.stdout
    return installed
