"""Submitting a signed task: recorded first, published second, and optionally waited for.

    row = await submitter.submit(signed, client, wait=5.0)
    row = await submitter.control("node-1", "sys.drain", {}, client)

The record is committed (fsync) before the publish, so a task the API answered 202 for is known
after any crash; a crash between the commit and the broker's PUBACK leaves it `submitted`, and
the client can submit it again under the same `task_id` (the agent refuses a second body under
one id only if it differs: check 7). The waiter registers before the publish, so an answer that
arrives at once is not missed.

Thread rules: `submit`/`control`/`wait` on the HTTP loop; `on_puback` on paho's network thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

from agent.protocol import Signer, Topics, make_control

from .clients import ApiClient
from .compute import Signed
from .link import FleetLink
from .records import Submitted, TaskRecords, TaskRow
from .waiters import Waiters

CONTROL_TTL_S = 300.0


class Submitter:
    def __init__(
        self, signer: Signer, topics: Topics, records: TaskRecords, link: FleetLink, waiters: Waiters
    ) -> None:
        self.signer = signer
        self.topics = topics
        self._records = records
        self._link = link
        self._waiters = waiters
        self._lock = threading.Lock()
        self._mids: dict[int, str] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def submit(self, signed: Signed, client: ApiClient, wait: float = 0.0) -> TaskRow:
        task = signed.task
        record = Submitted(
            task.id, client.name, task.kernel, task.target, task.priority, task.expires_at,
            hashlib.sha256(signed.payload).digest(), task.trace,
        )  # fmt: skip
        await asyncio.to_thread(self._records.submitted, record)
        event = self._waiters.register(task.id) if wait else None
        with self._lock:  # the PUBACK (network thread) waits until its mid is known
            self._mids[self._link.publish(signed.topic, signed.payload)] = task.id
        if event is not None:
            try:
                await self._waiters.wait(event, wait)
            finally:
                self._waiters.forget(task.id, event)
        row = await asyncio.to_thread(self._records.get, task.id)
        assert row is not None
        return row

    async def control(
        self, node: str, command: str, params: dict[str, Any], client: ApiClient, wait: float = 0.0
    ) -> TaskRow:
        topic, payload, task = make_control(
            self.signer, node, command, params, topics=self.topics, ttl_s=CONTROL_TTL_S
        )
        return await self.submit(Signed(task, topic, payload), client, wait)

    async def wait(self, task_id: str, seconds: float) -> TaskRow | None:
        event = self._waiters.register(task_id)
        try:
            row = await asyncio.to_thread(self._records.get, task_id)
            if row is not None and row.pending:
                await self._waiters.wait(event, seconds)
                row = await asyncio.to_thread(self._records.get, task_id)
            return row
        finally:
            self._waiters.forget(task_id, event)

    def on_puback(self, mid: int) -> None:
        with self._lock:
            task_id = self._mids.pop(mid, None)
        if task_id is not None:
            self._records.published(task_id)
