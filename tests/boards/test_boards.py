"""The agent on emulated ARM boards: Debian bookworm roots for arm64 and armhf under qemu-user.

On each board: the kernels' self-test through the installed wheel, then a real agent started as
the service would start it, against a broker on the host's 127.0.0.1: it comes online, runs the
native ARM kernels (every kernel, each result checked against numpy on the host), and survives
kill -9 with nothing lost. Selected with `-m boards`; `-m "not boards"` leaves them out.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from agent.protocol import Result
from native import Registry
from native.agreement import result_mismatch
from tests.agent.conftest import TOPICS, Site
from tests.agent.test_kernels_e2e import CASES
from tests.boards.emulated import AgentOnBoard, EmulatedBoard

pytestmark = [pytest.mark.boards, pytest.mark.timeout(900)]
NODE = "node-1"
BOARD_TIMEOUT = 180.0  # an agent's start under qemu: Python, numpy and cryptography emulated
REFERENCE = Registry(None)


def expected(kernel: str, params: dict[str, Any]) -> Any:
    spec = REFERENCE.get(kernel)
    return spec.reference(spec.validate(params))


def test_the_board_runs_arm_programs(board: EmulatedBoard) -> None:
    probe = "import platform, struct; print(platform.machine(), struct.calcsize('P') * 8)"
    done = board.chroot.run("python3", "-c", probe)
    bits = 64 if board.spec.debian_arch == "arm64" else 32
    assert done.stdout.split() == [board.spec.machine, str(bits)]


def test_the_installed_wheel_runs_the_arm_kernels(board: EmulatedBoard, board_venv: str) -> None:
    """`python -m native` in the venv: the packaged ARM library, every golden case through Python."""
    done = board.chroot.run(f"{board_venv}/bin/python", "-m", "native", timeout=600)
    lines = done.stdout.splitlines()
    target = board.spec.target
    assert lines[0] == "backend: native", done.stdout
    assert lines[1].startswith(f"library: edge_kernels {target} "), done.stdout
    assert f"/native/lib/{target}/libedge_kernels.so" in lines[1], done.stdout
    assert lines[-1].endswith(" passed, 0 failed") and not lines[-1].startswith("0 "), done.stdout


@dataclass
class Watch:
    """A dashboard on the host watching node-1's presence, heartbeats and results."""

    site: Site
    presences: list[Any] = field(default_factory=list)
    heartbeats: list[Any] = field(default_factory=list)
    results: dict[str, Result] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = self.site.client("dash-1", client_id=f"board-watch-{uuid.uuid4().hex[:8]}", clean=False)
        for topic in (TOPICS.presence(NODE), TOPICS.heartbeat(NODE), f"{TOPICS.prefix}/results/{NODE}/#"):
            self.client.subscribe(topic, 1)

    def until(self, done: Callable[[], bool], agent: AgentOnBoard, what: str) -> None:
        deadline = time.monotonic() + BOARD_TIMEOUT
        while not done():
            assert agent.proc.poll() is None, f"the agent exited ({what}):\n{agent.output()}"
            assert time.monotonic() < deadline, f"no {what} in {BOARD_TIMEOUT:.0f} s:\n{agent.output()}"
            try:
                message = self.client.messages.get(timeout=0.2)
            except Exception:
                continue
            body = self.site.open(message)
            if "/presence/" in message.topic:
                self.presences.append(body)
            elif "/heartbeat/" in message.topic:
                self.heartbeats.append(body)
            else:
                self.results.setdefault(body.id, body)

    def online(self, agent: AgentOnBoard) -> Any:
        count = len([p for p in self.presences if p.state == "online"])
        self.until(lambda: len([p for p in self.presences if p.state == "online"]) > count, agent, "presence")
        return self.presences[-1]


def agent_env(site: Site, data_dir: str) -> dict[str, str]:
    """The site's variables for node-1, with its state on the board and one worker (two cores)."""
    return site.agent_env(NODE, agent_data_dir=data_dir, workers_count=1, heartbeat_interval_s=2)


def install_bundle(board: EmulatedBoard, site: Site) -> str:
    """node-1's bundle in /etc/edge-agent on the board; the path of its agent.toml there."""
    board.put(site.bundle(NODE).parent, "/etc/edge-agent")
    return "/etc/edge-agent/agent.toml"


def check_results(watch: Watch, submitted: dict[str, tuple[str, dict[str, Any]]]) -> None:
    for task_id, (kernel, params) in submitted.items():
        result = watch.results[task_id]
        assert (result.status, result.kernel, result.node) == ("completed", kernel, NODE), result.error
        mismatch = result_mismatch(kernel, result.result, expected(kernel, params))
        assert mismatch is None, f"{kernel}: {mismatch}"


def test_the_agent_on_the_board_runs_every_kernel(board: EmulatedBoard, board_venv: str, site: Site) -> None:
    """Online with the native ARM kernels, every kernel's result as numpy computes it on the host."""
    config = install_bundle(board, site)
    watch = Watch(site)
    device = site.client("sensor-1")
    env = agent_env(site, f"/var/lib/edge-agent-{uuid.uuid4().hex[:8]}")
    with board.agent(board_venv, config, env, name="every-kernel") as agent:
        presence = watch.online(agent)
        assert set(CASES) <= set(presence.kernels)
        watch.until(lambda: bool(watch.heartbeats), agent, "heartbeat")
        assert watch.heartbeats[-1].backend == "native", "the board's workers did not load the ARM kernels"
        assert agent.wait_for("workers started (backend native)", BOARD_TIMEOUT), agent.output()
        submitted = {}
        for kernel, params in CASES.items():
            submitted[site.submit(device, "sensor-1", kernel, params).id] = (kernel, params)
        watch.until(lambda: set(submitted) <= set(watch.results), agent, "results")
    check_results(watch, submitted)


def test_the_agent_on_the_board_survives_kill_9(board: EmulatedBoard, board_venv: str, site: Site) -> None:
    """kill -9 with tasks accepted but not yet run: after a restart every task has its result."""
    config = install_bundle(board, site)
    watch = Watch(site)
    device = site.client("sensor-1")
    env = agent_env(site, f"/var/lib/edge-agent-{uuid.uuid4().hex[:8]}")
    rng = np.random.default_rng(20)
    submitted: dict[str, tuple[str, dict[str, Any]]] = {}
    with board.agent(board_venv, config, env, name="kill9-first") as agent:
        watch.online(agent)
        for n in range(12):
            params = {"signal": rng.normal(size=4096).tolist(), "window": 1 + n}
            task = site.submit(device, "sensor-1", "moving_average", params)
            submitted[task.id] = ("moving_average", params)
        watch.until(lambda: bool(watch.results), agent, "first result")
        agent.kill9()
    before = set(watch.results)
    assert before < set(submitted), "every task finished before the kill: nothing was at stake"
    with board.agent(board_venv, config, env, name="kill9-second") as agent:
        watch.online(agent)
        watch.until(lambda: set(submitted) <= set(watch.results), agent, "results for every task")
    check_results(watch, submitted)
