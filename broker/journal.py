"""The records waiting for the next journal write, and which of them an acknowledgement cancels.

`broker/store.py` writes the journal in batches (group commit). Between two writes the records
wait here, and most of a persistent subscriber's traffic never needs to reach the disk: a
message queued for a connected subscriber (M, its body, and Q, its queue entry) that the
subscriber acknowledges (A) before the batch is written is, by then, neither queued nor kept
anywhere. So an acknowledgement whose Q is still waiting here removes that Q instead of adding
an A, and a message whose last Q went that way loses its M too. The journal then reads as if
the message had never been queued, which is what replaying it must give: it was delivered.

Why this keeps "nothing acknowledged is lost": a publisher's PUBACK waits for its *group* (the
records its PUBLISH made), which is done when each of them is either on disk or cancelled. A
message that every subscriber acknowledged is safe without any record of it; until then the
publisher has no PUBACK and, if the broker dies, sends the message again.

Counts kept for the writer's schedule (`Store._ripe`): `hot` records are queue entries already
sent to their subscriber (its acknowledgement may soon cancel them: worth waiting a little for),
`cold` ones are every other record that must be durable before someone is answered (a queue
entry for an offline subscriber or behind a full window, a retained message, a session, a
subscription): those are written at once. A records need no fsync: losing one in a crash means
a redelivery, not a loss. M records count as neither: they follow their queue entries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator
from typing import Any

from .records import Record

log = logging.getLogger("broker.journal")


class Group:
    """The records one caller made (one PUBLISH, one SUBSCRIBE...): done when each of them is
    durable or cancelled. It is the PUBACK's gate: `done()`, `exception()` and
    `add_done_callback()` as on an asyncio future, but callbacks run at once when it completes,
    so a PUBACK freed by a subscriber's acknowledgement leaves in the same loop iteration (an
    asyncio future per message would cost a callback handle and an iteration more). `future()`
    gives an awaitable for the rare callers that await (CONNACK, SUBACK)."""

    __slots__ = ("_callbacks", "_done", "_error", "_future", "need")

    def __init__(self) -> None:
        self.need = 0  # records of the group neither durable nor cancelled yet
        self._done = False
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Group], object]] = []
        self._future: asyncio.Future[None] | None = None

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        return self._error

    def add_done_callback(self, callback: Callable[[Group], object]) -> None:
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def __await__(self) -> Generator[Any, None, None]:
        return self.future().__await__()

    def future(self) -> asyncio.Future[None]:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
            if self._done:
                self._settle(self._future)
        return self._future

    def resolve(self, error: BaseException | None = None) -> None:
        """Done (durable or cancelled), or failed with `error` (the journal could not be written)."""
        if self._done:
            return
        self._done = True
        self._error = error
        if self._future is not None:
            self._settle(self._future)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # contained, as asyncio does: it runs inside another client's read
                log.exception("a callback of a journal group failed")

    def _settle(self, future: asyncio.Future[None]) -> None:
        if future.done():
            return
        if self._error is None:
            future.set_result(None)
        else:
            future.set_exception(self._error)
            future.exception()  # retrieved: an unawaited failure is already logged by the store


class Batch:
    """The records since the last journal write (see the module docstring)."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.records: list[Record | None] = []  # None: cancelled
        self.groups: list[Group] = []  # groups with records here, resolved when they are written
        self.group: Group | None = None  # the group records are being added to
        self.alive = 0  # records not cancelled
        self.hot = 0  # queue entries of connected subscribers, not cancelled
        self.cold = 0  # other records that must be durable, not cancelled
        self._queued: dict[tuple[str, int], tuple[int, Group, bool]] = {}  # Q: index, group, hot
        self._messages: dict[int, tuple[int, Group]] = {}  # M: index, group

    @property
    def durable(self) -> bool:
        """True when something here must be fsynced before its group is answered."""
        return bool(self.hot or self.cold)

    def _add(self, rec: Record) -> tuple[int, Group]:
        group = self.group
        if group is None or group.done():  # a done group (all cancelled) answers nothing new
            group = self.group = Group()
            self.groups.append(group)
        group.need += 1
        index = len(self.records)
        self.records.append(rec)
        self.alive += 1
        return index, group

    def add(self, rec: Record) -> None:
        """A record that must be durable before its group is answered and nothing cancels."""
        self._add(rec)
        self.cold += 1

    def add_message(self, seq: int, rec: Record) -> None:
        """A message body (M): durable while one of its queue entries is; cancelled with the last."""
        self._messages[seq] = self._add(rec)

    def add_queued(self, client_id: str, seq: int, rec: Record, *, hot: bool) -> None:
        """A queue entry (Q); `hot` when it was sent to its subscriber, so its PUBACK may come soon."""
        index, group = self._add(rec)
        self._queued[(client_id, seq)] = (index, group, hot)
        if hot:
            self.hot += 1
        else:
            self.cold += 1

    def add_ack(self, rec: Record) -> None:
        """A record nobody waits for and that needs no fsync (A: done with a queue entry)."""
        self.records.append(rec)
        self.alive += 1

    def cancel_queued(self, client_id: str, seq: int, *, message_gone: bool) -> list[Group] | None:
        """An acknowledgement of (client_id, seq): drop its Q if it is here, and its M too when
        `message_gone` (no session holds the message any more). Returns the groups this
        completed, or None when the Q is not here (it is written: an A must follow it)."""
        found = self._queued.pop((client_id, seq), None)
        if found is None:
            return None
        index, group, hot = found
        if hot:
            self.hot -= 1
        else:
            self.cold -= 1
        completed = self._cancel(index, group)
        if message_gone:
            message = self._messages.pop(seq, None)
            if message is not None:
                completed += self._cancel(*message)
        return completed

    def _cancel(self, index: int, group: Group) -> list[Group]:
        self.records[index] = None
        self.alive -= 1
        group.need -= 1
        return [group] if group.need == 0 else []

    def close_group(self) -> Group | None:
        """End the current group (a caller is about to wait for it); None if it needs nothing."""
        group, self.group = self.group, None
        return group if group is not None and group.need > 0 else None

    def take(self) -> tuple[list[Record], list[Group]]:
        """Everything still alive, in order, and the groups to resolve once it is durable; the
        batch is empty after. The current group ends here too: all its records are taken."""
        records = [rec for rec in self.records if rec is not None]
        groups = self.groups
        self._clear()
        return records, groups

    def reset_if_empty(self) -> bool:
        """Forget a batch that everything was cancelled out of (its list would otherwise grow
        while a subscriber keeps up and nothing is ever written). Its groups are all done."""
        if self.alive:
            return False
        self._clear()
        return True
