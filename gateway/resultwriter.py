"""Verified results written in groups: one transaction (and fsync) for all the results that came
while the previous one was written, each acknowledged to the broker only once it is durable.

    writer = ResultWriter(records, fleet)
    writer.start()
    writer.put(result, ack)      # paho's network thread: returns at once
    row = writer.read(task_id)   # the record with what is queued for it: read-your-writes
    writer.stop()                # what is queued is written first

The link runs paho with manual acknowledgements (`FleetLink.ack`): a result is acknowledged after
its commit, so the broker keeps delivering it until the gateway has it on disk. A commit that fails
acknowledges nothing: the broker delivers those results again (at the latest after a reconnect).

A result is answered to a waiting request (`?wait`) as soon as it is verified, before its commit;
`read` shows the record with the results still queued for it, so the task read back at once says
what the answer said (a client that got `completed` never reads `published` afterwards).

Thread rules: `put` and `read` from any thread; the writer thread alone commits and acknowledges.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable

from agent.protocol import Result

from .errors import StoreError
from .nodes import FleetView
from .records import Answer, TaskRecords, TaskRow

log = logging.getLogger(__name__)
Ack = Callable[[], None]
BATCH_MAX = 500
_STOP = object()


class ResultWriter:
    def __init__(self, records: TaskRecords, fleet: FleetView) -> None:
        self._records = records
        self._fleet = fleet
        self._queue: queue.SimpleQueue[tuple[Result, Ack] | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="gateway-results", daemon=True)
        self._lock = threading.Lock()
        self._unwritten: dict[str, list[Result]] = {}  # queued, not yet committed, by task id
        self.batches = 0

    def start(self) -> None:
        self._thread.start()

    def put(self, result: Result, ack: Ack) -> None:
        with self._lock:
            self._unwritten.setdefault(result.id, []).append(result)
        self._queue.put((result, ack))

    def read(self, task_id: str) -> TaskRow | None:
        """The task's record with its results still queued here applied. The queued ones are taken
        before the record is read: a commit in between is then in the record (they leave the
        queue only after their commit), so a result is never missing from both."""
        with self._lock:
            queued = list(self._unwritten.get(task_id, ()))
        row = self._records.get(task_id)
        return row if row is None or not queued else with_results(row, queued)

    def stop(self, timeout: float = 30.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            if batch:
                self._write(batch)
            if stop:
                return

    def _take(self) -> tuple[list[tuple[Result, Ack]], bool]:
        """The next item (waiting for it), then whatever else is queued, up to BATCH_MAX."""
        batch: list[tuple[Result, Ack]] = []
        item = self._queue.get()
        while True:
            if item is _STOP:
                return batch, True
            assert isinstance(item, tuple)
            batch.append(item)
            if len(batch) >= BATCH_MAX:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False

    def _write(self, batch: list[tuple[Result, Ack]]) -> None:
        try:
            self._records.answered_many([result for result, _ in batch])
        except StoreError as exc:
            log.error(
                "%d result(s) not written, not acknowledged (the broker sends them again): %s",
                len(batch),
                exc,
            )
            return
        finally:
            self._written([result for result, _ in batch])
        self.batches += 1
        for result, ack in batch:
            ack()
            self._fleet.result(result)

    def _written(self, results: list[Result]) -> None:
        """Off the queue of `read` (committed, or failed and due again from the broker)."""
        with self._lock:
            for result in results:
                queued = self._unwritten.get(result.id)
                if queued is not None:
                    queued.remove(result)
                    if not queued:
                        del self._unwritten[result.id]


def with_results(row: TaskRow, results: list[Result]) -> TaskRow:
    """`row` as `TaskRecords.answered_many` will leave it once `results` are written: each replaces
    the answer of the same node and run, and the last sets the task's status and error."""
    answers = {(a.node, a.run): a for a in row.answers}
    for result in results:
        answers.pop((result.node, result.run), None)  # a replaced answer moves last, as in the record
        answers[(result.node, result.run)] = Answer.of(result)
    last = results[-1]
    return dataclasses.replace(row, status=last.status, error=last.error, answers=tuple(answers.values()))
