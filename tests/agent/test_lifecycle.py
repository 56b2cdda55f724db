"""Scheduling and faults (PROTOCOL 6): priority, run_at, every_s, cron, until, retries with back-off,
timeout, crash, memory limit, expiry; lifecycle events."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from agent.node.store import TASKS
from agent.protocol import Event
from tests.agent.conftest import TIMEOUT, TOPICS, Site

RESULTS = TOPICS.prefix + "/results/node-1/#"
GOOD = {"signal": [1.0, 2.0, 3.0]}


def _wait(condition: object, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_high_priority_task_starts_before_every_queued_lower_one(any_site: Site) -> None:
    site = any_site
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent(workers_count=1) as agent:
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 1.5}, task_id="busy")
        _wait(lambda: agent.pool.busy == 1)
        for n in range(5):
            site.submit(device, "sensor-1", "stats", GOOD, task_id=f"low-{n}", priority=1)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="mid", priority=5)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="high", priority=9)
        order = [r.id for r in site.results(watcher, 8)]
        assert agent.run_until_idle()
    assert order == ["busy", "high", "mid", "low-0", "low-1", "low-2", "low-3", "low-4"]


def test_a_task_arriving_while_a_worker_is_idle_is_sent_to_it_by_the_intake(site: Site) -> None:
    """The intake hands it to the idle worker itself (its driver only waits for the outcome);
    a task that finds every worker busy waits in the ready queue and is taken by a driver."""
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent(workers_count=2) as agent:
        for n in range(5):  # one at a time: both workers idle when each arrives
            site.submit(device, "sensor-1", "stats", GOOD, task_id=f"one-{n}")
            assert site.results(watcher, 1)[0].status == "completed"
        assert agent.dispatcher.dispatched == 5
        for n in range(2):
            site.submit(device, "sensor-1", "test.sleep", {"seconds": 1.0}, task_id=f"busy-{n}")
        _wait(lambda: agent.pool.busy == 2)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="queued")
        results = {r.id: r.status for r in site.results(watcher, 3)}
        assert results == {"busy-0": "completed", "busy-1": "completed", "queued": "completed"}
        assert agent.dispatcher.dispatched == 7  # the two sleeps; "queued" went through the ready queue
        assert agent.run_until_idle()


def test_with_tasks_ready_the_next_attempt_is_sent_before_the_last_outcome_is_handled(site: Site) -> None:
    """Pipelined: the worker runs the next task while its driver signs and commits the result of
    the one before. Results are still one per task, each verified, in priority-then-arrival order."""
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent(workers_count=1) as agent:
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 1.0}, task_id="busy")
        _wait(lambda: agent.pool.busy == 1)
        signals = {f"q{n}": [float(n), 2.0 * n + 1, -3.0] for n in range(4)}
        for task_id, signal in signals.items():
            site.submit(device, "sensor-1", "stats", {"signal": signal}, task_id=task_id)
        _wait(lambda: len(agent.lifecycle.ready) == 4)
        results = site.results(watcher, 5)
        assert agent.run_until_idle()
        assert agent.dispatcher.pipelined == 4  # each queued task went to the worker as the one before ended
    assert [r.id for r in results] == ["busy", "q0", "q1", "q2", "q3"]
    for result in results[1:]:
        assert result.status == "completed" and result.attempt == 1
        assert result.result["mean"] == float(np.mean(signals[result.id]))  # stats is bit-identical


def test_an_attempt_that_fails_to_be_sent_is_run_by_its_driver_and_the_last_outcome_still_counts(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while sending the next attempt (pipelined) costs neither that attempt nor the outcome
    of the one before it: the driver runs the attempt from the start."""
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent(workers_count=1) as agent:
        worker = agent.pool.workers[0]
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 1.0}, task_id="busy")
        _wait(lambda: agent.pool.busy == 1)
        real_begin, failures = worker.begin, []

        def begin_failing_once(*args: object, **kwargs: object) -> object:
            if not failures:
                failures.append(args)
                raise RuntimeError("injected: sending failed")
            return real_begin(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(worker, "begin", begin_failing_once)
        for n in range(2):
            site.submit(device, "sensor-1", "stats", GOOD, task_id=f"q{n}")
        _wait(lambda: len(agent.lifecycle.ready) == 2)
        results = {r.id: (r.status, r.attempt) for r in site.results(watcher, 3)}
        assert agent.run_until_idle()
    assert len(failures) == 1
    assert results == {"busy": ("completed", 1), "q0": ("completed", 1), "q1": ("completed", 1)}


def test_faults_cost_one_attempt_each_and_retries_back_off(site: Site) -> None:
    watcher = site.watch(RESULTS, TOPICS.prefix + "/events/node-1/#")
    device = site.client("sensor-1")
    options = {"workers_memory_limit_mb": 64, "scheduling_retry_base_s": 0.4, "scheduling_retry_jitter": 0.25}
    with site.agent(events_enabled=True, **options) as agent:
        submit = site.submit
        submit(device, "sensor-1", "test.hang", {}, task_id="hang", timeout_s=1.0, max_retries=0)
        submit(device, "sensor-1", "test.crash", {}, task_id="segv", max_retries=0)
        submit(device, "sensor-1", "test.crash", {"how": "abort"}, task_id="abort", max_retries=0)
        submit(device, "sensor-1", "test.eat_memory", {}, task_id="oom", max_retries=0)
        submit(device, "sensor-1", "test.fail", {"message": "no"}, task_id="fails", max_retries=1)
        flaky = submit(
            device, "sensor-1", "test.flaky", {"fail_attempts": 2, "how": "crash"}, task_id="flaky"
        )
        messages = watcher.expect(1, TIMEOUT)

        def flaky_completed() -> bool:  # events are QoS 0: the last may come after its result
            return any(
                m.topic == f"{TOPICS.prefix}/events/node-1/flaky" and site.open(m).status == "completed"
                for m in messages
            )

        while sum(1 for m in messages if "/results/" in m.topic) < 6 or not flaky_completed():
            messages += watcher.expect(1, TIMEOUT)
        submit(device, "sensor-1", "stats", GOOD, task_id="after")
        assert site.results(watcher, 1)[0].status == "completed"  # still serving
        assert agent.run_until_idle()
    opened = [site.open(m) for m in messages]
    results = {r.id: r for r in opened if not isinstance(r, Event)}
    outcome = {k: (r.status, r.attempt, (r.error or {}).get("code")) for k, r in results.items()}
    assert outcome == {
        "hang": ("abandoned", 1, "timeout"),
        "segv": ("abandoned", 1, "worker_crashed"),
        "abort": ("abandoned", 1, "worker_crashed"),
        "oom": ("abandoned", 1, "out_of_memory"),
        "fails": ("abandoned", 2, "kernel_error"),
        "flaky": ("completed", 3, None),
    }
    assert "SIGSEGV" in results["segv"].error["message"] and "SIGABRT" in results["abort"].error["message"]
    assert results["fails"].error["message"].endswith("no")
    flaky_events = [(e.status, e.attempt) for e in opened if isinstance(e, Event) and e.id == flaky.id]
    assert flaky_events == [
        ("queued", 0),
        ("running", 1),
        ("failed", 1),
        ("retrying", 1),
        ("running", 2),
        ("failed", 2),
        ("retrying", 2),
        ("running", 3),
        ("completed", 3),
    ]
    # back-off: 0.4 s then 0.8 s, each within +-25 %
    assert results["flaky"].finished_at - results["flaky"].received_at >= 0.3 + 0.6


def test_run_at_every_s_and_until(site: Site) -> None:
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent() as agent:
        now = time.time()
        site.submit(device, "sensor-1", "stats", GOOD, task_id="later", run_at=now + 1.5)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="every", every_s=1.0, until=now + 2.6)
        results = site.results(watcher, 4)
        _wait(lambda: agent.store.get(TASKS, "sensor-1/every") is None)  # the schedule ended
        time.sleep(1.2)
        assert agent.run_until_idle()
        assert watcher.messages.empty(), "a run after `until`"
    later = next(r for r in results if r.id == "later")
    assert later.status == "completed" and later.started_at >= now + 1.5
    runs = [r for r in results if r.id == "every"]
    assert [(r.run, r.status) for r in runs] == [(1, "completed"), (2, "completed"), (3, "completed")]
    starts = [r.started_at for r in runs]
    assert all(0.8 < b - a < 1.5 for a, b in itertools.pairwise(starts))


def test_tasks_not_started_by_their_expiry_end_expired(site: Site) -> None:
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent(workers_count=1) as agent:
        now = time.time()
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 2.0}, task_id="busy")
        _wait(lambda: agent.pool.busy == 1)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="queued-too-long", ttl_s=0.5)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="run-at-too-late", run_at=now + 30, ttl_s=1.0)
        results = {r.id: r for r in site.results(watcher, 3)}
        assert agent.run_until_idle()
    for task_id in ("queued-too-long", "run-at-too-late"):
        result = results[task_id]
        assert (result.status, result.error["code"], result.started_at) == ("expired", "expired", None)
    assert results["busy"].status == "completed"


@pytest.mark.slow
def test_a_cron_task_runs_at_the_minute_in_its_time_zone(site: Site) -> None:
    """Waits for the next minute boundary (up to a minute): marked slow."""
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent() as agent:
        now = time.time()
        boundary = (int(now) // 60 + 1) * 60
        site.submit(
            device,
            "sensor-1",
            "stats",
            GOOD,
            task_id="cron",
            cron="* * * * *",
            tz="Asia/Kolkata",
            until=boundary + 5,
            ttl_s=120,
        )
        [result] = site.results(watcher, 1, timeout=90)
        _wait(lambda: agent.store.get(TASKS, "sensor-1/cron") is None)
    assert (result.status, result.run) == ("completed", 1)
    assert boundary <= result.started_at < boundary + 5
