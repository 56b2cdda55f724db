"""Clock jumps (boards without a real-time clock) and the replay cache (PROTOCOL 4, checks 5 and 6).

A forward jump made every replay row look expired: they were forgotten and compacted away, and
once the clock was corrected, a captured task still within its lifetime was accepted again. The
agent's clock is injected (`Agent(config, clock=...)`): it jumps a year ahead, then back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.node.app import Agent
from agent.node.store import META, REPLAY, DurableReplayCache, Store
from agent.node.store.replay import FLOOR_KEY
from agent.protocol import AcceptancePolicy, TaskRejected, accept_task
from tests.agent.conftest import TIMEOUT, TOPICS, Site
from tests.protocol.keyring import NODE, NOW, Keyring, sign, task_body
from tests.support.agents import running_agent

GOOD = {"signal": [1.0, 2.0, 3.0]}
YEAR = 365 * 86400.0
SKEW = 60.0  # the default clock skew
TASKS = TOPICS.tasks(NODE)
POLICY = AcceptancePolicy(replay_margin_s=0.0)  # as the intake's


class JumpingClock:
    """The wall clock plus an offset the test sets."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@contextlib.contextmanager
def running(site: Site, clock: JumpingClock, **overrides: Any) -> Iterator[Agent]:
    with running_agent(Agent(site.config(**overrides), clock=clock), TIMEOUT) as agent:
        yield agent


def test_a_captured_task_is_not_run_again_after_a_forward_clock_jump_is_corrected(site: Site) -> None:
    clock = JumpingClock()
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    topic, captured, _ = site.task("sensor-1", "stats", GOOD, task_id="captured", ttl_s=3600)
    with running(site, clock, store_compact_bytes=4096) as agent:
        device.publish(topic, captured)
        [first] = site.results(watcher, 1)
        assert (first.id, first.status) == ("captured", "completed")
        compactions = agent.store.stats().compactions

        clock.offset = YEAR  # the clock jumps a year ahead: every task looks expired
        agent.housekeeping()  # the replay cache's sweep
        for n in range(20):  # refused `expired` by that clock; their results fill the journal
            site.submit(device, "sensor-1", "stats", GOOD, task_id=f"during-{n}")
        during = site.results(watcher, 20)
        assert {r.status for r in during} == {"rejected"}
        agent.housekeeping()
        assert agent.run_until_idle()
        assert agent.store.stats().compactions > compactions  # the state was written without them

        clock.offset = 0.0  # corrected: the captured task is within its lifetime again
        device.publish(topic, captured)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="marker-1")
        [marker] = site.results(watcher, 1)
        assert marker.id == "marker-1", f"the captured task ran again: {marker.id} {marker.status}"
        assert agent.intake.counts["redelivered"] == 1

    with running(site, JumpingClock()) as agent:  # a restart, with the compacted state
        device.publish(topic, captured)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="marker-2")
        [marker] = site.results(watcher, 1)
        assert marker.id == "marker-2", f"the captured task ran again: {marker.id} {marker.status}"
        assert agent.intake.counts["redelivered"] == 1


class Monotonic:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


def test_the_floor_forgets_rows_only_when_no_later_clock_can_accept_their_tasks(tmp_path: Path) -> None:
    """The rule of agent/node/store/replay.py, on a real store, with real signed tasks and checks 1-7."""
    keys = Keyring()
    trust = keys.trust()
    monotonic = Monotonic()
    store = Store.open(tmp_path)
    cache = DurableReplayCache(store, monotonic)
    payload = sign(task_body(issued_at=NOW - 1, expires_at=NOW + 600), keys.device)

    def accept(clock: float, replay: DurableReplayCache) -> Any:
        accepted = accept_task(payload, TASKS, replay.now(clock), trust, replay, POLICY)
        replay.observe(accepted.task.issued_at, SKEW)
        return accepted

    first = accept(NOW, cache)
    store.commit_sync([cache.row_op(first.kid, first.task.nonce)])
    assert cache.floor() == NOW - 1 - SKEW

    cache.expire(NOW + YEAR)  # a wall clock a year ahead forgets nothing
    assert len(cache) == 1 and store.count(REPLAY) == 1
    assert accept(NOW, cache).redelivery  # after the correction: recognised
    monotonic.at += (NOW + 600) - cache.floor() - 1  # the floor 1 s below the task's expires_at
    cache.expire(NOW + YEAR)
    assert len(cache) == 1
    monotonic.at += 2  # and now past it: forgotten, the floor stored first
    cache.expire(NOW + YEAR)
    assert len(cache) == 0 and store.count(REPLAY) == 0
    assert store.get(META, FLOOR_KEY)["at"] > NOW + 600
    with pytest.raises(TaskRejected) as refused:  # a clock set back: read as the floor
        accept(NOW, cache)
    assert refused.value.code == "expired"

    store.compact()  # the snapshot without the row
    store.close()
    store = Store.open(tmp_path)
    try:
        again = DurableReplayCache(store, Monotonic())
        assert again.floor() > NOW + 600
        with pytest.raises(TaskRejected) as refused:  # after a restart, with the clock set back
            accept(NOW, again)
        assert refused.value.code == "expired"
        assert again.now(NOW + YEAR) == NOW + YEAR  # a clock above the floor is read as it is
    finally:
        store.close()


def test_the_floor_is_stored_with_the_intakes_commits_once_it_has_moved(tmp_path: Path) -> None:
    monotonic = Monotonic()
    store = Store.open(tmp_path)
    cache = DurableReplayCache(store, monotonic)
    assert cache.floor_op() is None  # nothing proven yet: nothing to store
    cache.observe(NOW, SKEW)
    op = cache.floor_op()
    assert op is not None and op.doc == {"at": NOW - SKEW}
    store.commit_sync([op])
    monotonic.at += 0.5
    assert cache.floor_op() is None  # moved less than FLOOR_STEP_S: not worth a change
    monotonic.at += 0.6
    op = cache.floor_op()
    assert op is not None and op.doc == {"at": pytest.approx(NOW - SKEW + 1.1)}
    store.commit_sync([op])
    store.close()
    store = Store.open(tmp_path)
    assert DurableReplayCache(store, Monotonic()).floor() == pytest.approx(NOW - SKEW + 1.1)
    store.close()


def test_an_agent_that_never_lives_to_its_housekeeping_still_forgets_expired_rows(site: Site) -> None:
    """Lives shorter than the housekeeping period (a crash loop: the soak's 100 kill -9) used to
    forget no replay row at all, ever: the floor was stored only by the sweep, and the first sweep
    came 10 s after a start. Each life then loaded every task's row of the run (8,247 after 40
    kills). Now the intake stores the floor with its commits and the agent sweeps at start."""
    clock = JumpingClock()
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    with running(site, clock, security_clock_skew_s=1) as agent:
        site.submit(device, "sensor-1", "stats", GOOD, task_id="short", ttl_s=1.0)
        site.results(watcher, 1)
        time.sleep(3.0)  # the next task proves a time past the first one's expires_at + skew
        site.submit(device, "sensor-1", "stats", GOOD, task_id="later", ttl_s=3600)
        site.results(watcher, 1)
        assert agent.run_until_idle()
        assert agent.store.count(REPLAY) == 2  # no sweep in this life (it lasted under 10 s)
    with running(site, clock, security_clock_skew_s=1) as agent:
        assert agent.store.count(REPLAY) == 1  # swept at start, by the floor the intake stored
        assert agent.intake.replay.by_id("sensor-1", "later") is not None
