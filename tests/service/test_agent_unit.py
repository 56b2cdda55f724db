"""The edge-agent unit under systemd as PID 1 (a booted Debian container), as a board runs it.

The installer writes and starts the unit (tests/service/conftest.py); then: systemd calls it
active only once it is online (Type=notify), the sandbox is in force on the running agent (user,
no new privileges, seccomp, no capabilities, a read-only system), every kernel runs under it with
results equal to numpy's, the journal holds JSON lines, a hung agent is killed by the watchdog
and restarted, kill -9 is restarted with nothing lost, `systemctl stop` drains and says offline,
a configuration error is not restarted in a loop, and an upgrade and a forced rollback go through
systemd. The tests share one installed unit and run in this file's order.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.node.install.health import read_health
from agent.protocol import Presence
from native.agreement import result_mismatch
from tests.agent.test_kernels_e2e import CASES
from tests.boards.test_boards import expected
from tests.boards.wheels import version_of
from tests.deploy.test_install import presence_and_heartbeat
from tests.service.booted import proc_status
from tests.service.conftest import Unit
from tests.support.services import free_port

pytestmark = [pytest.mark.service, pytest.mark.timeout(900)]
DROP_IN = "/etc/systemd/system/edge-agent.service.d/test.conf"
WAIT_S = 90.0


def until(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not {what} within {timeout:.0f} s"
        time.sleep(0.2)


def uid_of(unit: Unit, user: str) -> str:
    passwd = unit.system.path("/etc/passwd").read_text().splitlines()
    return next(line.split(":")[2] for line in passwd if line.startswith(f"{user}:"))


def running_again(unit: Unit, restarts: int, old_pid: int) -> Callable[[], bool]:
    """systemd restarted the unit `restarts` times in all and its new agent is ready."""

    def check() -> bool:
        shown = unit.show("NRestarts", "ActiveState", "MainPID")
        if int(shown["NRestarts"]) < restarts or shown["ActiveState"] != "active":
            return False
        return unit.main_pid() != old_pid

    return check


@pytest.fixture
def drop_in(unit: Unit) -> Iterator[Callable[[str], None]]:
    """Settings added to the unit for one test (a drop-in), removed and the unit restarted after."""

    def add(text: str) -> None:
        unit.system.path(DROP_IN).parent.mkdir(parents=True, exist_ok=True)
        unit.system.path(DROP_IN).write_text(f"[Service]\n{text}\n")
        unit.system.run("systemctl", "daemon-reload")

    try:
        yield add
    finally:
        unit.system.path(DROP_IN).unlink(missing_ok=True)
        unit.system.run("systemctl", "daemon-reload")
        unit.system.run("systemctl", "reset-failed", "edge-agent", check=False)
        unit.system.run("systemctl", "restart", "edge-agent", timeout=300)
        unit.online()


def test_systemd_calls_the_unit_active_once_the_agent_is_online(unit: Unit) -> None:
    """Type=notify: `systemctl restart` returns when the agent said READY=1, which it says only
    once connected and subscribed, so /health answers online at that moment, without waiting."""
    shown = unit.show("ActiveState", "SubState", "Type", "NotifyAccess", "WatchdogUSec", "UnitFileState")
    assert shown == {
        "ActiveState": "active",
        "SubState": "running",
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogUSec": "30s",
        "UnitFileState": "enabled",
    }
    unit.system.run("systemctl", "restart", "edge-agent", timeout=300)
    status, body = read_health(unit.health_url)
    assert status == 200 and body["presence"]["online"] is True, body
    assert body["version"] == unit.version


def test_the_running_agent_is_inside_the_sandbox(unit: Unit) -> None:
    """What the unit asks for, read from the kernel's view of the running agent."""
    pid = unit.main_pid()
    status = proc_status(pid)
    agent_uid = uid_of(unit, "edge-agent")
    assert status["Uid"].split() == [agent_uid] * 4, status["Uid"]
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2", "SystemCallFilter= is not in force"
    assert int(status["CapBnd"], 16) == 0 and int(status["CapEff"], 16) == 0
    mounts = {
        fields[4]: fields[5].split(",")
        for fields in (line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines())
    }
    assert "ro" in mounts["/"], "ProtectSystem=strict: the system should be read-only"
    assert "rw" in mounts["/var/lib/edge-agent"], "the state directory must stay writable"
    assert "/root" in mounts and "/home" in mounts, "ProtectHome= hides the home directories"
    assert "/tmp" in mounts, "PrivateTmp= gives the agent a /tmp of its own"
    assert os.readlink(f"/proc/{pid}/cwd").endswith("/var/lib/edge-agent")


def test_every_kernel_runs_under_the_sandbox(unit: Unit) -> None:
    """seccomp, MemoryDenyWriteExecute and the rest do not stop cffi, numpy or the workers."""
    site = unit.site
    watcher, device = site.watch("edge/results/node-1/+"), site.client("sensor-1")
    submitted = {site.submit(device, "sensor-1", k, p).id: (k, p) for k, p in CASES.items()}
    got = {result.id: result for result in site.results(watcher, len(submitted), timeout=WAIT_S)}
    assert set(got) == set(submitted)
    for task_id, (kernel, params) in submitted.items():
        result = got[task_id]
        assert (result.status, result.kernel) == ("completed", kernel), result.error
        assert result_mismatch(kernel, result.result, expected(kernel, params)) is None, kernel


def test_the_journal_holds_the_agents_json_lines(unit: Unit) -> None:
    lines = [line for line in unit.system.journal("edge-agent") if line.startswith("{")]
    assert lines, unit.system.journal("edge-agent")
    records = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records), records[:3]
    assert any("connected to 127.0.0.1" in r["message"] for r in records), [r["message"] for r in records]


def test_a_hung_agent_is_killed_by_the_watchdog_and_restarted(
    unit: Unit, drop_in: Callable[[str], None]
) -> None:
    """WatchdogSec=3 for this test: the agent pings every 1.5 s; stopped with SIGSTOP it pings no
    more, and systemd aborts it and starts it again."""
    drop_in("WatchdogSec=3")
    unit.system.run("systemctl", "restart", "edge-agent", timeout=300)
    assert unit.show("WatchdogUSec")["WatchdogUSec"] == "3s"
    first = int(unit.show("WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])
    time.sleep(2.5)
    assert int(unit.show("WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]) > first, "no ping"
    restarts, pid = int(unit.show("NRestarts")["NRestarts"]), unit.main_pid()
    os.kill(pid, signal.SIGSTOP)
    until(running_again(unit, restarts + 1, pid), "restarted after the watchdog fired")
    assert any("Watchdog timeout" in line for line in unit.system.journal("edge-agent"))
    unit.online()


def test_kill_9_is_restarted_by_systemd_and_nothing_is_lost(unit: Unit) -> None:
    """A task sent while the agent is dead (RestartSec=5) is run once systemd has started it again."""
    site = unit.site
    watcher, device = site.watch("edge/results/node-1/+"), site.client("sensor-1")
    restarts, pid = int(unit.show("NRestarts")["NRestarts"]), unit.main_pid()
    os.kill(pid, signal.SIGKILL)
    until(lambda: unit.show("SubState")["SubState"] in ("auto-restart", "activating"), "noticed")
    task = site.submit(device, "sensor-1", "stats", {"signal": [2.0, 4.0, 9.0]})
    until(running_again(unit, restarts + 1, pid), "restarted after kill -9")
    [result] = site.results(watcher, 1, timeout=WAIT_S)
    assert (result.id, result.status, result.result["mean"]) == (task.id, "completed", 5.0)


def retained_presence(unit: Unit) -> Presence:
    watcher = unit.site.watch("edge/presence/node-1")
    try:
        presence: Any = unit.site.open(watcher.expect(1, 30)[0])
        assert isinstance(presence, Presence)
        return presence
    finally:
        watcher.close()


def test_systemctl_stop_drains_and_says_offline(unit: Unit) -> None:
    """SIGTERM to the agent: it finishes, publishes its offline presence and exits 0, well inside
    TimeoutStopSec; `systemctl start` brings it back online."""
    started = time.monotonic()
    unit.system.run("systemctl", "stop", "edge-agent", timeout=120)
    took = time.monotonic() - started
    shown = unit.show("ActiveState", "Result", "ExecMainStatus", "TimeoutStopUSec")
    assert (shown["ActiveState"], shown["Result"], shown["ExecMainStatus"]) == ("inactive", "success", "0")
    assert took < 40, f"the stop took {took:.1f} s (TimeoutStopSec={shown['TimeoutStopUSec']})"
    assert retained_presence(unit).state == "offline"
    unit.system.run("systemctl", "start", "edge-agent", timeout=300)
    assert retained_presence(unit).state == "online"


def test_a_configuration_error_is_not_restarted(unit: Unit, drop_in: Callable[[str], None]) -> None:
    """Exit status 2 (RestartPreventExitStatus=2): restarting cannot fix a bad setting, so the unit
    stays failed, with the setting named in its journal."""
    drop_in("Environment=EDGE_MQTT_PORT=not-a-port")
    restarts = int(unit.show("NRestarts")["NRestarts"])
    cursor = unit.system.run("journalctl", "-u", "edge-agent", "-n", "0", "--show-cursor").stdout
    done = unit.system.run("systemctl", "restart", "edge-agent", timeout=300, check=False)
    assert done.returncode != 0
    time.sleep(7)  # longer than RestartSec=5
    shown = unit.show("ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert shown == {
        "ActiveState": "failed",
        "Result": "exit-code",
        "ExecMainStatus": "2",
        "NRestarts": str(restarts),
    }
    since = cursor.strip().rsplit("-- cursor: ", 1)[-1]
    assert any("port" in line.lower() for line in unit.system.journal("edge-agent", since)), "not named"


def test_an_upgrade_and_a_forced_rollback_go_through_systemd(
    unit: Unit, service_wheels: dict[str, Path]
) -> None:
    """The installer restarts the unit on the newer build and waits for it online; then the first
    build with a broker port nobody listens on: it never becomes ready, so the installer puts the
    newer build back and systemd runs it again."""
    newer = version_of(service_wheels["upgrade"])
    upgrade = unit.installer(service_wheels["upgrade"])
    assert upgrade.returncode == 0, upgrade.stdout
    assert f"upgraded {unit.version} -> {newer}: online" in upgrade.stdout, upgrade.stdout
    previous, unit.version = unit.version, newer
    assert unit.show("ActiveState")["ActiveState"] == "active"  # the installer waited for it
    exe = Path(f"/proc/{unit.main_pid()}/cmdline").read_bytes()
    assert b"/opt/edge-agent/current/bin/" in exe, exe
    assert presence_and_heartbeat(unit.site)[0].version == newer

    config = unit.system.path("/etc/edge-agent/agent.toml")
    before = config.read_bytes()
    rollback = unit.installer(
        service_wheels["first"], "--set", f"mqtt.port={free_port()}", "--health-timeout", "20"
    )
    assert rollback.returncode == 3, rollback.stdout
    assert f"version {previous} did not come online" in rollback.stdout, rollback.stdout
    assert f"rolled back to {newer}" in rollback.stdout, rollback.stdout
    assert unit.system.path("/opt/edge-agent/current").readlink() == Path(newer)
    assert config.read_bytes() == before
    unit.online()
    assert unit.show("ActiveState")["ActiveState"] == "active"  # the installer waited for it
