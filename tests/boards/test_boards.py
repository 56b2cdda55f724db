"""The agent on emulated ARM boards: Debian bookworm roots for arm64 and armhf under qemu-user.

On each board the agent is installed as deploy/README.md says (a bootstrap venv with the wheel,
then `edge-agent install --bundle ... --no-systemd`, which starts it as the unit would) against a
broker on the host's 127.0.0.1. Then: it reports the native ARM kernels, runs every kernel with
each result checked against numpy on the host, survives kill -9 with nothing lost, upgrades to a
second build, and a forced rollback returns to the previous version with the state intact.
Selected with `-m boards` (`make boards`); `-m "not boards"` leaves them out.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.protocol import Result, make_control
from native import Registry
from native.agreement import result_mismatch
from tests.agent.conftest import TOPICS, Site
from tests.agent.test_kernels_e2e import CASES
from tests.boards.emulated import STATE, EmulatedBoard
from tests.boards.installed import Installed
from tests.boards.wheels import version_of
from tests.deploy.test_install import presence_and_heartbeat
from tests.support.mqtt import TestClient
from tests.support.services import free_port

pytestmark = [pytest.mark.boards, pytest.mark.timeout(1200)]
NODE = "node-1"
RESULTS_TIMEOUT = 180.0
FORCED_TIMEOUT_S = 20  # the wait for a version that cannot reach its broker: all of it is spent
REFERENCE = Registry(None)
Submitted = dict[str, tuple[str, dict[str, Any]]]


def expected(kernel: str, params: dict[str, Any]) -> Any:
    spec = REFERENCE.get(kernel)
    return spec.reference(spec.validate(params))


class Results:
    """A dashboard on the host collecting node-1's results (persistent session: none missed)."""

    def __init__(self, installed: Installed) -> None:
        self.installed = installed
        self.client: TestClient = installed.site.client(
            "dash-1", client_id=f"board-results-{uuid.uuid4().hex[:8]}", clean=False
        )
        self.client.subscribe(f"{TOPICS.prefix}/results/{NODE}/#", 1)
        self.got: dict[str, Result] = {}

    def until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + RESULTS_TIMEOUT
        while not done():
            if time.monotonic() > deadline:
                log = self.installed.board.chroot.path(f"{STATE}/agent.log").read_text(errors="replace")
                raise AssertionError(f"no {what} in {RESULTS_TIMEOUT:.0f} s; the agent's log:\n{log[-6000:]}")
            try:
                message = self.client.messages.get(timeout=0.2)
            except Exception:
                continue
            result = self.installed.site.open(message)
            self.got.setdefault(result.id, result)

    def wait(self, task_ids: set[str]) -> None:
        self.until(lambda: task_ids <= set(self.got), f"results for {sorted(task_ids - set(self.got))}")


def check_results(results: Results, submitted: Submitted) -> None:
    for task_id, (kernel, params) in submitted.items():
        result = results.got[task_id]
        assert (result.status, result.kernel, result.node) == ("completed", kernel, NODE), result.error
        mismatch = result_mismatch(kernel, result.result, expected(kernel, params))
        assert mismatch is None, f"{kernel}: {mismatch}"


def test_the_board_runs_arm_programs(board: EmulatedBoard) -> None:
    probe = "import platform, struct; print(platform.machine(), struct.calcsize('P') * 8)"
    done = board.chroot.run("python3", "-c", probe)
    bits = 64 if board.spec.debian_arch == "arm64" else 32
    assert done.stdout.split() == [board.spec.machine, str(bits)]


def test_the_installed_agent_runs_as_the_unit_with_the_arm_kernels(installed: Installed) -> None:
    """Online with its version, backend native; the installed venv loads the board's library
    (python -m native: every golden case through Python on the emulated CPU)."""
    board, site = installed.board, installed.site
    installed.restart_as_the_unit()
    pid = board.agent_pid()
    assert pid is not None
    owner = next(
        ln for ln in board.chroot.path("/etc/passwd").read_text().splitlines() if ln.startswith("edge-agent:")
    )
    assert os.stat(f"/proc/{pid}").st_uid == int(owner.split(":")[2]), "the agent does not run as edge-agent"
    assert os.readlink(f"/proc/{pid}/cwd") == str(board.chroot.path(STATE))
    presence, heartbeat = presence_and_heartbeat(site)
    assert (presence.state, presence.version, heartbeat.backend) == ("online", installed.version, "native")
    assert set(CASES) <= set(presence.kernels)
    done = board.chroot.run("/opt/edge-agent/current/bin/python", "-m", "native", timeout=600)
    lines, target = done.stdout.splitlines(), board.spec.target
    assert lines[0] == "backend: native", done.stdout
    assert lines[1].startswith(f"library: edge_kernels {target} "), done.stdout
    assert f"/opt/edge-agent/{installed.version}/lib/" in lines[1], done.stdout
    assert f"/native/lib/{target}/libedge_kernels.so" in lines[1], done.stdout
    assert lines[-1].endswith(" passed, 0 failed") and not lines[-1].startswith("0 "), done.stdout


def test_the_installed_agent_runs_every_kernel(installed: Installed) -> None:
    """Each of the 8 kernels through the whole path on the board, checked against numpy on the host."""
    installed.restart_as_the_unit()
    results = Results(installed)
    device = installed.site.client("sensor-1")
    submitted: Submitted = {}
    for kernel, params in CASES.items():
        submitted[installed.site.submit(device, "sensor-1", kernel, params).id] = (kernel, params)
    results.wait(set(submitted))
    check_results(results, submitted)


def test_the_installed_agent_survives_kill_9(installed: Installed) -> None:
    """kill -9 with tasks accepted but not yet run; started again as the unit would: every result."""
    board, site = installed.board, installed.site
    installed.restart_as_the_unit()
    results = Results(installed)
    device = site.client("sensor-1")
    rng = np.random.default_rng(20)
    submitted: Submitted = {}
    for n in range(12):
        params = {"signal": rng.normal(size=4096).tolist(), "window": 1 + n}
        submitted[site.submit(device, "sensor-1", "moving_average", params).id] = ("moving_average", params)
    results.until(lambda: bool(results.got), "first result")
    pid = board.agent_pid()
    assert pid is not None
    os.kill(pid, 9)
    deadline = time.monotonic() + 30
    while board.agent_pid() == pid:
        assert time.monotonic() < deadline, "the killed agent still holds its state"
        time.sleep(0.1)
    before = set(results.got)
    assert before < set(submitted), "every task finished before the kill: nothing was at stake"
    installed.restart_as_the_unit()
    results.wait(set(submitted))
    check_results(results, submitted)


def control(site: Site, command: str, params: dict[str, Any], results: Results) -> Result:
    """A signed control command from op-1, and its answer."""
    topic, payload, task = make_control(site.signer("op-1"), NODE, command, params)
    site.client("op-1").publish(topic, payload)
    results.wait({task.id})
    return results.got[task.id]


def test_an_upgrade_then_a_forced_rollback_keep_the_state(
    installed: Installed, board_wheels: dict[str, dict[str, Path]]
) -> None:
    """The first build -> a second build, online. Then the first build again with a broker port
    nobody listens on: it cannot come online, so the installer rolls back to the second build and
    its configuration. The task scheduled before both is still scheduled, the one completed before
    is still known, a new one completes."""
    board, site = installed.board, installed.site
    first, second = (board_wheels[role][board.spec.machine] for role in ("first", "upgrade"))
    newer = version_of(second)
    installed.restart_as_the_unit()
    results = Results(installed)
    device = site.client("sensor-1")
    done = site.submit(device, "sensor-1", "stats", {"signal": [1.0, 2.0, 3.0]})
    later = site.submit(device, "sensor-1", "stats", {"signal": [4.0]}, run_at=time.time() + 3600)
    results.wait({done.id})

    upgrade = installed.run_installer(second)
    assert upgrade.returncode == 0, upgrade.stdout
    assert f"upgraded {installed.version} -> {newer}: online" in upgrade.stdout, upgrade.stdout
    previous, installed.version = installed.version, newer
    assert presence_and_heartbeat(site)[0].version == newer

    config = board.chroot.path("/etc/edge-agent/agent.toml")
    before = config.read_bytes()
    away = f"mqtt.port={free_port()}"
    rollback = installed.run_installer(first, "--set", away, "--health-timeout", str(FORCED_TIMEOUT_S))
    assert rollback.returncode == 3, rollback.stdout
    assert f"version {previous} did not come online" in rollback.stdout, rollback.stdout
    assert f"rolled back to {newer}" in rollback.stdout, rollback.stdout
    assert board.chroot.path("/opt/edge-agent/current").readlink() == Path(newer)
    assert config.read_bytes() == before, "the rolled-back run's configuration was left in place"
    installed.online()
    assert presence_and_heartbeat(site)[0].version == newer

    record = control(site, "sys.status", {"task": later.id}, results).result
    assert (record["status"], record["started_at"]) == ("scheduled", None), record
    assert control(site, "sys.status", {"task": done.id}, results).result["status"] == "completed"
    after = site.submit(device, "sensor-1", "stats", {"signal": [5.0, 7.0]})
    results.wait({after.id})
    assert (results.got[after.id].status, results.got[after.id].result["mean"]) == ("completed", 6.0)


def tree_bytes(path: Path) -> int:
    """Disk use of a directory tree (allocated blocks; links not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            total += (Path(folder) / name).lstat().st_blocks * 512
    return total


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB. Under qemu-user the process is the emulator running the
    program: its translated code counts too, so these are upper bounds for a real board."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    fields = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:]}
    return fields["Rss"], fields["Pss"]


# Budgets of a board install (deploy/README.md's footprint section has the measured figures)
VENV_BUDGET_MIB = {"arm64": 200, "armhf": 60}  # armhf: numpy, cffi, ... are Debian's, outside the venv
PSS_BUDGET_MIB = 600
DISK = {
    "configuration": "/etc/edge-agent",
    "state": STATE,
}  # agent, forkserver, resource tracker, one worker, with qemu's own memory


def test_the_footprint_on_the_board_is_within_budget(installed: Installed) -> None:
    """Disk (the version's venv, configuration, state) and memory (every process of the agent, idle
    after the other tests' tasks) on the board, written to the board's logs and held to a budget."""
    board = installed.board
    installed.restart_as_the_unit()
    venv = board.chroot.path("/opt/edge-agent/current").resolve()
    disk = {name: tree_bytes(board.chroot.path(path)) for name, path in DISK.items()}
    disk["venv"] = tree_bytes(venv)
    pids = board.processes()
    memory = {pid: memory_kib(pid) for pid in pids}
    rss, pss = (sum(m[i] for m in memory.values()) for i in (0, 1))
    lines = [f"{name}: {size / 2**10:.0f} KiB ({size / 2**20:.1f} MiB)" for name, size in disk.items()]
    lines += [f"processes: {len(pids)}, RSS {rss / 1024:.0f} MiB, PSS {pss / 1024:.0f} MiB (summed)"]
    lines += [
        f"  {pid} {Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}: RSS {r} KiB, PSS {p} KiB"
        for pid, (r, p) in memory.items()
    ]
    (board.logs / "footprint.txt").write_text("\n".join(lines) + "\n")
    print(f"footprint on {board.spec.debian_arch}:", *lines, sep="\n")  # pytest -s, or -rP
    assert len(pids) >= 3, lines  # the agent, its forkserver and at least one worker
    assert disk["venv"] < VENV_BUDGET_MIB[board.spec.debian_arch] << 20, lines
    assert pss < PSS_BUDGET_MIB << 10, lines
