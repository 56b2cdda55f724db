"""Requests waiting for a task's answer (`POST /compute?wait=S`, `GET /task/{id}?wait=S`).

    answered = await waiters.wait(task_id, timeout)   # on the HTTP loop
    waiters.resolve(task_id)                           # from any thread (paho's): wakes them

A waiter registers before it looks at the record, so an answer stored in between is never missed:
the caller reads the record after `wait` returns, whichever way it returned, or takes the result
handed over with the wake-up (`Answered.result`): a result is handed over before it is committed,
since the broker delivers it again until it is (the commit precedes paho's acknowledgement).
"""

from __future__ import annotations

import asyncio
import threading

from agent.protocol import Result

from .timeouts import within


class Answered(asyncio.Event):
    """Set when the task's answer came; `result` is the verified result when that was the answer
    (a rejects report sets it without one)."""

    def __init__(self) -> None:
        super().__init__()
        self.result: Result | None = None


class Waiters:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._events: dict[str, list[Answered]] = {}

    def register(self, task_id: str) -> Answered:
        event = Answered()
        with self._lock:
            self._events.setdefault(task_id, []).append(event)
        return event

    def forget(self, task_id: str, event: Answered) -> None:
        with self._lock:
            events = self._events.get(task_id)
            if events is not None and event in events:
                events.remove(event)
                if not events:
                    del self._events[task_id]

    async def wait(self, event: Answered, timeout: float) -> bool:
        try:
            await within(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def resolve(self, task_id: str, result: Result | None = None) -> None:
        with self._lock:
            events = self._events.pop(task_id, [])
        for event in events:
            event.result = result
            self._loop.call_soon_threadsafe(event.set)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._events.values())
