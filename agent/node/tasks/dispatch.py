"""The drivers: one thread per worker process, taking the most urgent ready task, running it,
and reporting how it ended; and the intake's hand-off of freshly queued tasks to idle workers.

    dispatcher = Dispatcher(lifecycle, pool)
    Intake(..., dispatch=dispatcher.dispatch_idle)  # after each batch, from the intake thread
    dispatcher.start()                              # once the workers are ready
    dispatcher.close(); ...; dispatcher.stop()      # no new attempt; then the drivers end

Thread rules: each driver thread owns its worker; `dispatch_idle` runs on the intake thread and
only hands an attempt to a driver that claimed to be idle (`ReadyQueue.claim_idle`), which then
waits for nothing but that attempt's outcome.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from ..errors import StoreError, WorkerError
from ..exec.pool import Begun, Outcome, Worker, WorkerPool
from .lifecycle import Attempt, Lifecycle
from .ready import TIMED_OUT

log = logging.getLogger(__name__)

#: An attempt taken for a worker, and what `Worker.begin` returned (None: not sent yet).
Handed = tuple[Attempt, Begun | Outcome | None]


def _request(attempt: Attempt) -> tuple[str, bytes, int, object]:
    """`Worker.begin`'s arguments for `attempt`."""
    return attempt.plan.kernel, attempt.body, attempt.attempt, attempt.tag


class Dispatcher:
    """See the module docstring."""

    def __init__(self, lifecycle: Lifecycle, pool: WorkerPool) -> None:
        self.lifecycle = lifecycle
        self.pool = pool
        self._stopping = threading.Event()
        self._closing = False  # no new attempt starts; running ones finish
        self._drivers: list[threading.Thread] = []
        self._inboxes: dict[queue.SimpleQueue[Any], Worker] = {}  # a driver's inbox -> its worker
        self.dispatched = 0  # attempts the intake sent to an idle worker itself (dispatch_idle)
        self.pipelined = 0  # attempts sent to a worker before the outcome of its last was handled

    def start(self) -> None:
        """One driver per worker (the workers are ready)."""
        for worker in self.pool.workers:
            inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
            self._inboxes[inbox] = worker
            thread = threading.Thread(
                target=self._drive, args=(worker, inbox), name=f"worker-{worker.index}", daemon=True
            )
            thread.start()
            self._drivers.append(thread)

    def close(self) -> None:
        """The stop began: no new attempt starts, running attempts go on."""
        self._closing = True

    def stop(self) -> None:
        """The drivers end once their attempt (if any) has its outcome."""
        self._stopping.set()

    def join(self, timeout: float) -> None:
        for thread in self._drivers:
            thread.join(timeout)

    def _drive(self, worker: Worker, inbox: queue.SimpleQueue[Any]) -> None:
        """One thread per worker: take the most urgent ready task, run it, report how it ended."""
        handed: Handed | None = None  # the next attempt, already sent to the worker (pipelined)
        while handed is not None or not self._stopping.is_set():
            try:
                handed = self._attempt(worker, inbox, handed)
            except StoreError as exc:  # the agent is stopping (run_agent sees store.failed)
                log.critical("worker %d stopped: %s", worker.index, exc)
                return
            except Exception:  # a bug: logged and contained, the worker goes on with the next task
                log.exception("worker %d: an attempt failed in the agent", worker.index)
                handed = None

    def _attempt(self, worker: Worker, inbox: queue.SimpleQueue[Any], handed: Handed | None) -> Handed | None:
        """One attempt to its end; returns the next one if it was sent before this one's outcome
        was handled (see `_pipelined`)."""
        if handed is None:
            waited = self.lifecycle.ready.wait(inbox, timeout=0.2)
            if waited is TIMED_OUT:
                if not self._stopping.is_set():
                    worker.ensure_alive()  # one killed while idle is replaced now, not at the next task
                return None
            if waited is None:  # look at the ready queue
                if self._closing:
                    return None
                attempt = self.lifecycle.take_now(worker)  # registered in lifecycle.running
                if attempt is None:
                    return None
                handed = (attempt, None)
            else:  # the intake took it and sent it to this worker already (dispatch_idle)
                handed = waited
        attempt = handed[0]
        outcome = self._end(worker, *handed)
        follow = self._pipelined(worker) if outcome.code != "stopped" else None
        try:
            self._report(attempt, outcome)
        except StoreError:
            raise
        except Exception:  # a bug: logged and contained; the attempt sent meanwhile still ends
            log.exception("worker %d: an attempt's outcome failed in the agent", worker.index)
        return follow

    def _end(self, worker: Worker, attempt: Attempt, begun: Begun | Outcome | None) -> Outcome:
        """Wait for the outcome of `attempt` (sent already unless `begun` is None)."""
        try:
            timeout = self.lifecycle.timeout_for(attempt.plan)
            if begun is None:
                outcome = worker.run(attempt.plan.kernel, attempt.body, attempt.attempt, timeout, attempt.tag)
            elif isinstance(begun, Outcome):
                outcome = begun
            else:
                outcome = worker.end(begun, timeout)
        except WorkerError as exc:
            log.error("worker %d cannot start: %s", worker.index, exc)
            outcome = Outcome(False, time.time(), time.time(), code="worker_crashed", message=str(exc))
            self._stopping.wait(1.0)
        finally:
            self.lifecycle.running.pop(attempt.key, None)
        return outcome

    def _pipelined(self, worker: Worker) -> Handed | None:
        """With tasks ready, the next one goes to the worker before this outcome is handled (its
        result signed and committed): the worker runs while the agent does that work."""
        if self._closing:
            return None
        handed = self._send_next(worker)
        if handed is not None and handed[1] is not None:
            self.pipelined += 1
        return handed

    def _send_next(self, worker: Worker) -> Handed | None:
        """The most urgent ready task, taken for `worker` and sent to it; None if none is ready.
        If sending fails (a bug), the attempt comes back unsent: its driver runs it from the start
        (`_end`), so a taken attempt is never left without an outcome."""
        attempt = self.lifecycle.take_now(worker)
        if attempt is None:
            return None
        try:
            return (attempt, worker.begin(*_request(attempt), replace=False))
        except Exception:
            log.exception("worker %d: sending an attempt failed; its driver runs it", worker.index)
            return (attempt, None)

    def _report(self, attempt: Attempt, outcome: Outcome) -> None:
        if outcome.code == "stopped":
            self.lifecycle.requeue(attempt)  # killed by the stop, not by its own doing
        else:
            self.lifecycle.finished(attempt, outcome)

    def dispatch_idle(self) -> None:
        """The intake thread, after queueing a batch: each task that an idle worker can take is
        taken and sent to that worker here, and its driver, woken meanwhile, only waits for the
        outcome. (Woken first, the driver would take and send it itself, a wake-up later.) A
        failure here (a bug) is logged: the tasks stay queued, and drivers look within 0.2 s."""
        try:
            self._hand_to_idle()
        except StoreError:
            raise
        except Exception:
            log.exception("handing tasks to idle workers failed")

    def _hand_to_idle(self) -> None:
        ready = self.lifecycle.ready
        while (inbox := ready.claim_idle()) is not None:
            handed: Handed | None = None
            try:  # whatever happens, the claimed driver gets something: it waits for it
                handed = self._send_next(self._inboxes[inbox])
            finally:
                inbox.put(handed)
            if handed is None:
                return
            if handed[1] is not None:
                self.dispatched += 1
