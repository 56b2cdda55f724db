"""`edge-agent uninstall --purge` on the booted system: the unit stopped, disabled and gone, and with
--purge the user, keys and state too. Runs last (test_agent_unit.py and test_broker_unit.py use
the installed unit)."""

from __future__ import annotations

import pytest

from tests.service.booted import BootedSystem
from tests.service.conftest import BOOTSTRAP, Unit

pytestmark = [pytest.mark.service, pytest.mark.timeout(600)]


def test_uninstall_purge_leaves_nothing_behind(unit: Unit) -> None:
    system: BootedSystem = unit.system
    pid = unit.main_pid()
    done = system.run(f"{BOOTSTRAP}/bin/edge-agent", "uninstall", "--purge", timeout=300, check=False)
    assert done.returncode == 0, done.stdout
    assert system.systemctl_show("edge-agent", "LoadState")["LoadState"] == "not-found"
    assert system.run("systemctl", "is-enabled", "edge-agent", check=False).returncode != 0
    assert not _alive(pid), "the agent is still running"
    for path in (
        "/etc/systemd/system/edge-agent.service",
        "/etc/edge-agent",
        "/var/lib/edge-agent",
        "/opt/edge-agent",
    ):
        assert not system.path(path).exists(), f"{path} is still there"
    assert system.run("getent", "passwd", "edge-agent", check=False).returncode == 2, (
        "the user is still there"
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False
