"""The ready queue: tasks that may start now, highest priority first, equal priorities in arrival
order (PROTOCOL 6). Free workers' drivers wait on it; the intake hands tasks straight to idle
ones (`claim_idle`, tasks/dispatch.py). Thread-safe.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from typing import Any

#: `ReadyQueue.wait` returned because its time was up.
TIMED_OUT = object()


class ReadyQueue:
    """Thread-safe max-priority queue of task keys; FIFO within a priority.

    A free worker's driver waits on an inbox of its own (`wait`): a push wakes one idle waiter with
    None ("look at the queue"). The intake pushes without waking (`wake=False`) and then hands the
    task straight to an idle worker (`claim_idle`, see `Agent.dispatch_idle`): the worker starts
    while its driver wakes up, not after."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str, float]] = []  # (-priority, seq, key, pushed at)
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Any]] = []  # inboxes of waiting drivers, newest last
        self._closed = False

    def push(self, priority: int, seq: int, key: str, *, wake: bool = True) -> None:
        with self._lock:
            heapq.heappush(self._heap, (-priority, seq, key, time.monotonic()))
            inbox = self._idle.pop() if wake and self._idle else None
        if inbox is not None:
            inbox.put(None)

    def pop_now(self) -> tuple[str, float] | None:
        """The most urgent key and the seconds it waited, without waiting; None if there is none."""
        with self._lock:
            if not self._heap or self._closed:
                return None
            _, _, key, pushed = heapq.heappop(self._heap)
        return key, time.monotonic() - pushed

    def wait(self, inbox: queue.SimpleQueue[Any], timeout: float) -> Any:
        """Until there may be work: None (look at the queue, at once if it holds a key), what a
        `claim_idle` caller handed to `inbox`, or `TIMED_OUT`."""
        with self._lock:
            if self._heap or self._closed:
                return None
            self._idle.append(inbox)
        try:
            return inbox.get(timeout=timeout)
        except queue.Empty:
            with self._lock:
                if inbox in self._idle:
                    self._idle.remove(inbox)
                    return TIMED_OUT
            return inbox.get()  # claimed meanwhile: what it is handed is on its way

    def claim_idle(self) -> queue.SimpleQueue[Any] | None:
        """The inbox of an idle waiter, no longer idle, if a key waits for it; the caller must
        put something in it (None, or work)."""
        with self._lock:
            if self._heap and self._idle and not self._closed:
                return self._idle.pop()
        return None

    def close(self) -> None:
        """No key is handed out any more; every waiter wakes."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for inbox in idle:
            inbox.put(None)

    def __len__(self) -> int:
        return len(self._heap)
