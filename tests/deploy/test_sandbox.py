"""The unit's system call filter against what the agent really calls.

systemd is not PID 1 here, so the agent cannot be run under its unit; what can be checked is the
part of the sandbox most likely to break it: `SystemCallFilter=@system-service` minus
`~@privileged` (deploy/systemd/edge-agent.service). The agent runs under `strace -f` (itself, the
forkserver, the workers) through a start, tasks of several kernels and a clean stop, and every
system call it made must be one the filter allows (a refused one would fail with EPERM,
SystemCallErrorNumber=, and the agent might not survive it).
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.agent.conftest import Site
from tests.support.services import require_tool

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "edge-agent.service"


@functools.cache
def expand(group: str) -> frozenset[str]:
    """The system calls of a systemd syscall group, nested groups expanded."""
    listed = subprocess.run(
        [require_tool("systemd-analyze"), "syscall-filter", group], capture_output=True, text=True, check=True
    ).stdout.splitlines()[1:]
    names: set[str] = set()
    for line in (entry.strip() for entry in listed):
        if not line or line.startswith("#"):
            continue
        names |= expand(line) if line.startswith("@") else {line}
    return frozenset(names)


def allowed_by_unit() -> frozenset[str]:
    """What the unit's SystemCallFilter= lines allow: the allow list, minus the `~` lines."""
    allowed: set[str] = set()
    for line in UNIT.read_text().splitlines():
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1]
        names = {
            n
            for word in value.lstrip("~").split()
            for n in (expand(word) if word.startswith("@") else {word})
        }
        allowed = allowed - names if value.startswith("~") else allowed | names
    return frozenset(allowed)


def traced_calls(summary: str) -> set[str]:
    """System call names from `strace -c`'s table."""
    calls = set()
    for line in summary.splitlines():
        fields = line.split()
        if (
            fields
            and re.fullmatch(r"[a-z_0-9]+", fields[-1])
            and fields[-1] != "total"
            and fields[0][0].isdigit()
        ):
            calls.add(fields[-1])
    return calls


@pytest.mark.timeout(300)
def test_every_system_call_of_the_agent_is_allowed_by_the_units_filter(site: Site, tmp_path: Path) -> None:
    strace = require_tool("strace")
    allowed = allowed_by_unit()
    assert "setrlimit" in allowed and "mount" not in allowed and "setuid" not in allowed  # the filter as read
    summary = tmp_path / "strace.txt"
    subprocess.run(
        ["make", "-s", "-C", ROOT / "native", "-j2"], check=True, capture_output=True
    )  # the host library
    env = {
        **os.environ,
        **site.agent_env(workers_count=1, testing_test_kernels="false"),
        "EDGE_LOG_FORMAT": "json",
    }
    # the kernels in C++ as on a board (this checkout has no compiled extension of its own)
    env.update(
        EDGE_KERNELS_LIB=str(ROOT / "build/native/host/libedge_kernels.so"), EDGE_KERNELS_BACKEND="native"
    )
    log = (tmp_path / "agent.log").open("wb")
    command = [strace, "-f", "-qq", "-c", "-o", str(summary), sys.executable, "-m", "agent", "run"]
    proc = subprocess.Popen(
        [*command, "--config", str(site.bundle())], env=env, stdout=log, stderr=log, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 120
        while "agent node-1 running" not in (tmp_path / "agent.log").read_text():  # subscribed by then
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
            time.sleep(0.1)
        device, watcher = site.client("sensor-1"), site.watch("edge/results/node-1/+")
        tasks = [
            ("stats", {"signal": [1.0, 2.0, 3.0]}),
            ("matrix_multiply", {"matrix_a": [[1.0, 2.0]], "matrix_b": [[3.0], [4.0]]}),
            ("fft_magnitude", {"signal": [0.0, 1.0, 0.0, -1.0]}),
            ("conv2d", {"image": [[1.0, 2.0], [3.0, 4.0]], "kernel": [[1.0]]}),
        ]
        for kernel, params in tasks:
            site.submit(device, "sensor-1", kernel, params)
        results = site.results(watcher, len(tasks), timeout=120)
        assert {r.status for r in results} == {"completed"}, [(r.kernel, r.status, r.error) for r in results]
        [agent] = psutil.Process(proc.pid).children()  # strace's tracee: strace would not pass SIGTERM on
        agent.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, (tmp_path / "agent.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    calls = traced_calls(summary.read_text())
    assert {"openat", "futex", "clone3" if "clone3" in calls else "clone"} <= calls, summary.read_text()
    refused = sorted(calls - allowed)
    print(f"\n{len(calls)} distinct system calls, all allowed by the unit's filter" if not refused else "")
    assert not refused, f"the agent calls {refused}, which SystemCallFilter= of {UNIT.name} refuses"
