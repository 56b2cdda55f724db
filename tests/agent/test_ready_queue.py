"""The ready queue: priority first, then arrival (PROTOCOL 6); a free worker's driver waits on an
inbox of its own, woken by a push or handed work by the intake (`claim_idle`); a close releases
every waiter."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from agent.node.tasks.ready import TIMED_OUT, ReadyQueue


def test_keys_leave_by_priority_then_arrival() -> None:
    ready = ReadyQueue()
    keys = [(1, "low-a"), (5, "mid"), (9, "high"), (1, "low-b"), (5, "mid-2")]
    for seq, (priority, key) in enumerate(keys):
        ready.push(priority, seq, key)
    assert len(ready) == 5
    popped = [ready.pop_now() for _ in range(5)]
    assert [p[0] for p in popped if p is not None] == ["high", "mid", "mid-2", "low-a", "low-b"]
    assert all(p is not None and p[1] >= 0 for p in popped)  # with the seconds each waited
    assert ready.pop_now() is None and len(ready) == 0
    assert ready.wait(queue.SimpleQueue(), 0.01) is TIMED_OUT  # empty: nothing to wake for


def _waiting(ready: ReadyQueue, got: list[Any]) -> threading.Thread:
    """A driver waiting on its inbox, once it is registered as idle."""
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    waiter = threading.Thread(target=lambda: got.append(ready.wait(inbox, 10)))
    waiter.start()
    deadline = time.monotonic() + 10
    while inbox not in ready._idle:
        assert time.monotonic() < deadline, "the driver never waited"
        time.sleep(0.001)
    return waiter


def test_a_push_wakes_a_waiting_driver_or_the_intake_hands_it_work() -> None:
    ready = ReadyQueue()
    got: list[Any] = []
    waiter = _waiting(ready, got)
    ready.push(0, 0, "k")  # wakes it with None: "look at the queue"
    waiter.join(10)
    assert got == [None] and ready.pop_now() is not None

    waiter = _waiting(ready, got)
    assert ready.claim_idle() is None  # no key waits: nothing to claim it for
    ready.push(0, 1, "k2", wake=False)  # the intake's push: the driver sleeps on
    claimed = ready.claim_idle()
    assert claimed is not None and ready.claim_idle() is None  # no longer idle
    claimed.put("handed")  # the intake's work: the driver gets exactly this
    waiter.join(10)
    assert got == [None, "handed"]


def test_close_releases_every_waiting_driver_and_later_pops() -> None:
    ready = ReadyQueue()
    results: list[Any] = []
    inboxes: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(3)]
    waiters = [threading.Thread(target=lambda i=i: results.append(ready.wait(i, 30))) for i in inboxes]
    for waiter in waiters:
        waiter.start()
    ready.close()
    for waiter in waiters:
        waiter.join(10)
        assert not waiter.is_alive()
    assert results == [None, None, None]
    ready.push(0, 2, "after")  # a closed queue hands out nothing more
    assert ready.pop_now() is None and ready.claim_idle() is None
