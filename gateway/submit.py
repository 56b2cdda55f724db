"""Submitting a signed task: recorded first, published second, and optionally waited for.

    row = await submitter.submit(signed, client, wait=5.0)
    row = await submitter.control("node-1", "sys.drain", {}, client)

The record, with the signed payload, is committed (fsync) before the publish, and the answer
waits for the broker's PUBACK: a task the API accepted is either with the broker or in the record
as `submitted`, and a gateway restarted after a crash publishes those again (`republish`; the
agent runs nothing twice: PROTOCOL 4, check 6). The waiter registers before the publish, so an
answer that arrives at once is not missed.

Thread rules: `submit`/`control`/`wait` on the HTTP loop; `on_puback` on paho's network thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.protocol import Result, Signer, Topics, make_control

from .clients import ApiClient
from .compute import Signed
from .errors import DuplicateTask
from .link import FleetLink
from .preview import params_summary
from .records import Answer, Submitted, TaskRecords, TaskRow
from .timeouts import within
from .waiters import Waiters

CONTROL_TTL_S = 300.0
PUBACK_WAIT_S = 5.0


class Submitter:
    def __init__(
        self,
        signer: Signer,
        topics: Topics,
        records: TaskRecords,
        link: FleetLink,
        waiters: Waiters,
        loop: asyncio.AbstractEventLoop,
        read: Callable[[str], TaskRow | None],
    ) -> None:
        self.signer = signer
        self.read = read  # a task's record with its verified results not yet written (ResultWriter.read)
        self._loop = loop
        self.topics = topics
        self._records = records
        self._link = link
        self._waiters = waiters
        self._lock = threading.Lock()
        self._mids: dict[int, tuple[str, asyncio.Future[None]]] = {}
        self._early: set[int] = set()  # PUBACKs that came before `_publish` recorded their mid
        self._published: list[str] = []  # PUBACKed, not yet written
        self._commits = GroupCommit(
            lambda batch: records.submitted_many(batch, published=self.take_published())
        )

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def submit(self, signed: Signed, client: ApiClient, wait: float = 0.0) -> TaskRow:
        task = signed.task
        record = Submitted(
            task.id,
            client.name,
            task.kernel,
            task.target,
            task.priority,
            task.expires_at,
            signed.topic,
            signed.payload,
            task.trace,
            time.time(),
            params_summary(task.params),
        )
        await self._commits.add(record)
        event = self._waiters.register(task.id) if wait else None
        acked = self._publish(task.id, signed.topic, signed.payload)
        try:
            # the broker's PUBACK (normally within a millisecond); without it the answer says
            # `submitted`, and a restart publishes the task again (`republish`)
            await within(acked, PUBACK_WAIT_S)  # `acked` may end cancelled: `_set` checks
            if event is not None:
                await self._waiters.wait(event, wait)
        except asyncio.TimeoutError:
            pass
        finally:
            if event is not None:
                self._waiters.forget(task.id, event)
        if event is None:  # nothing can have changed but the PUBACK: no need to read it back
            return _row(record, "published" if acked.done() and not acked.cancelled() else "submitted")
        if event.result is not None:  # answered: the verified result came with the wake-up
            return _answered_row(record, event.result)
        row = await asyncio.to_thread(self.read, task.id)
        assert row is not None
        return row

    def _publish(self, task_id: str, topic: str, payload: bytes) -> asyncio.Future[None]:
        """Publish without holding our lock: paho calls `on_puback` holding its own, so holding
        ours across `publish` (which takes paho's) would deadlock the two threads. A PUBACK that
        comes before the mid is known here is kept in `_early` and handled now."""
        acked: asyncio.Future[None] = self._loop.create_future()
        mid = self._link.publish(topic, payload)
        with self._lock:
            early = mid in self._early
            if early:
                self._early.discard(mid)
            else:
                self._mids[mid] = (task_id, acked)
        if early:
            self._acknowledged(task_id)
            _set(acked)
        return acked

    def _acknowledged(self, task_id: str) -> None:
        """Noted in memory; written with the next group commit or by `flush_published` (losing the
        note costs one harmless publish again after a restart)."""
        with self._lock:
            self._published.append(task_id)

    async def flush_published(self) -> None:
        """Every PUBACK noted since the last commit, written (the loop calls it now and then)."""
        ids = self.take_published()
        if ids:
            await asyncio.to_thread(self._records.published_many, ids)

    def take_published(self) -> list[str]:
        with self._lock:
            ids, self._published = self._published, []
        return ids

    def republish(self) -> int:
        """At start: every task recorded but not acknowledged by the broker, published again."""
        pending = self._records.unpublished()
        for task_id, topic, payload in pending:
            self._publish(task_id, topic, payload)
        return len(pending)

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
            row = await asyncio.to_thread(self.read, task_id)
            if row is not None and row.pending:
                await self._waiters.wait(event, seconds)
                row = await asyncio.to_thread(self.read, task_id)
            return row
        finally:
            self._waiters.forget(task_id, event)

    def on_puback(self, mid: int) -> None:
        with self._lock:
            entry = self._mids.pop(mid, None)
            if entry is None:
                self._early.add(mid)  # `_publish` has not recorded it yet
                return
        task_id, acked = entry
        self._acknowledged(task_id)
        self._loop.call_soon_threadsafe(_set, acked)


class GroupCommit:
    """Concurrent requests' records committed together: while one transaction (and its fsync)
    runs in a worker thread, the requests that arrive wait for the next, which takes them all.
    One request alone waits for one commit, as before; a hundred share one fsync."""

    def __init__(self, commit: Callable[[list[Submitted]], list[DuplicateTask | None]]) -> None:
        self._commit = commit
        self._pending: list[tuple[Submitted, asyncio.Future[None]]] = []
        self._draining = False

    async def add(self, record: Submitted) -> None:
        """Returns once `record` is durable; raises `DuplicateTask` for an id already taken."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((record, done))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    outcome: list[BaseException | None] = list(
                        await asyncio.to_thread(self._commit, [record for record, _ in batch])
                    )
                except Exception as exc:  # the whole transaction failed: every request of it fails
                    outcome = [exc] * len(batch)
                for (_, done), error in zip(batch, outcome, strict=True):
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
        finally:
            self._draining = False


def _row(record: Submitted, status: str) -> TaskRow:
    at = record.submitted_at or time.time()
    return TaskRow(
        record.id,
        record.client,
        record.kernel,
        record.target,
        record.priority,
        status,
        at,
        at,
        record.expires_at,
        record.trace,
        None,
        params_summary=record.params_summary,
    )


def _answered_row(record: Submitted, result: Result) -> TaskRow:
    row = _row(record, result.status)
    return dataclasses.replace(row, error=result.error, answers=(Answer.of(result),), updated_at=time.time())


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
