"""The worker pool on its own: an attempt's timeout (the reply's read gives up after `timeout_s`)
with timeouts that change from one attempt to the next, and a worker that died while idle."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from agent.node.exec.pool import RECHECK_IDLE_S, Worker, WorkerPool, WorkerSettings
from agent.protocol import build_task, packb


@pytest.fixture
def worker() -> Iterator[Worker]:
    pool = WorkerPool(WorkerSettings(count=1, test_kernels=True))
    pool.start()
    try:
        yield pool.workers[0]
    finally:
        pool.stop()


def _sleep(seconds: float) -> bytes:
    return packb(build_task("test.sleep", {"seconds": seconds}, "node-1").to_body())


def test_each_attempt_gets_its_own_timeout(worker: Worker) -> None:
    slow = worker.run("test.sleep", _sleep(5.0), 1, 0.3)
    assert (slow.ok, slow.code, slow.message) == (False, "timeout", "no result after 0.3 s")
    assert slow.finished_at - slow.started_at < 4.0  # killed, not waited for
    assert worker.restarts_by == {"timeout": 1}
    assert worker.run("test.sleep", _sleep(0.5), 1, 30.0).ok  # the successor, a longer timeout
    assert worker.run("test.sleep", _sleep(0.05), 1, 2.5).ok  # a shorter one, still enough
    late = worker.run("test.sleep", _sleep(1.0), 1, 0.2)  # and one too short again
    assert (late.code, worker.restarts_by) == ("timeout", {"timeout": 2})
    assert worker.run("test.sleep", _sleep(0.01), 1, 30.0).ok


def test_a_worker_killed_while_idle_is_replaced_before_the_next_attempt(worker: Worker) -> None:
    assert worker.run("test.sleep", _sleep(0.01), 1, 30.0).ok
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)  # the OOM killer, or an operator
    time.sleep(RECHECK_IDLE_S + 0.2)  # idle longer than the gap in which deaths are not checked
    outcome = worker.run("test.sleep", _sleep(0.01), 1, 30.0)
    assert outcome.ok, outcome  # the attempt is not charged with its predecessor's death
    assert worker.restarts_by == {"crash": 1}


def test_a_crash_during_the_attempt_fails_it(worker: Worker) -> None:
    crash = packb(build_task("test.crash", {}, "node-1").to_body())
    outcome = worker.run("test.crash", crash, 1, 30.0)
    assert (outcome.ok, outcome.code) == (False, "worker_crashed") and "SIGSEGV" in (outcome.message or "")
    assert worker.run("test.sleep", _sleep(0.01), 1, 30.0).ok
