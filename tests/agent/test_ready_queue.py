"""The ready queue: priority first, then arrival (PROTOCOL 6); free workers wait on it, and a close
releases every one of them."""

from __future__ import annotations

import threading

from agent.scheduler import ReadyQueue


def test_keys_leave_by_priority_then_arrival() -> None:
    ready = ReadyQueue()
    for seq, (priority, key) in enumerate(
        [(1, "low-a"), (5, "mid"), (9, "high"), (1, "low-b"), (5, "mid-2")]
    ):
        ready.push(priority, seq, key)
    assert len(ready) == 5
    popped = [ready.pop(0) for _ in range(5)]
    assert popped == ["high", "mid", "mid-2", "low-a", "low-b"]
    assert ready.pop(0.01) is None and len(ready) == 0  # empty: None after the timeout


def test_a_waiting_worker_gets_a_key_pushed_later_with_its_wait() -> None:
    ready = ReadyQueue()
    got: list[tuple[str, float] | None] = []
    waiter = threading.Thread(target=lambda: got.append(ready.pop_waited(10)))
    waiter.start()
    ready.push(0, 1, "k")
    waiter.join(10)
    assert got and got[0] is not None and got[0][0] == "k" and got[0][1] >= 0


def test_close_releases_every_waiting_worker_and_later_pops() -> None:
    ready = ReadyQueue()
    ready.push(0, 1, "left-behind")
    assert ready.pop(0) == "left-behind"
    results: list[str | None] = []
    waiters = [threading.Thread(target=lambda: results.append(ready.pop(30))) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    ready.close()
    for waiter in waiters:
        waiter.join(10)
        assert not waiter.is_alive()
    assert results == [None, None, None]
    ready.push(0, 2, "after")  # a closed queue hands out nothing more
    assert ready.pop(0) is None
