"""Verified results written in groups: one transaction (and fsync) for all the results that came
while the previous one was written, each acknowledged to the broker only once it is durable.

    writer = ResultWriter(records, fleet)
    writer.start()
    writer.put(result, ack)      # paho's network thread: returns at once
    writer.stop()                # what is queued is written first

The link runs paho with manual acknowledgements (`FleetLink.ack`): a result is acknowledged after
its commit, so the broker keeps delivering it until the gateway has it on disk. A commit that fails
acknowledges nothing: the broker delivers those results again (at the latest after a reconnect).

Thread rules: `put` from any thread; the writer thread alone commits and acknowledges.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from agent.protocol import Result

from .errors import StoreError
from .nodes import FleetView
from .records import TaskRecords

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
        self.batches = 0

    def start(self) -> None:
        self._thread.start()

    def put(self, result: Result, ack: Ack) -> None:
        self._queue.put((result, ack))

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
        self.batches += 1
        for result, ack in batch:
            ack()
            self._fleet.result(result)
