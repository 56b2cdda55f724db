"""The life of an accepted task (PROTOCOL 6), from its record to its last result.

    queued -> running -> completed                       (one result per run)
                     \\-> failed -> retrying (a timer) -> running ...
                                \\-> abandoned
    scheduled (run_at, retry back-off, next recurring run) -> queued
    queued / scheduled -> expired (one-shot, first attempt not started by expires_at) | cancelled
    running -> cancelled (sys.cancel: the worker is killed; the request is on the record first)
    running -> abandoned at once, never retried, when the output would not fit in a result
               (`result_too_large`: the worker or `Signing.result` says so)

Every transition is a new task record committed to the store (records are never changed in place).
A task's record lives in the `tasks` table while it has a future; its final record then goes to
the history partitions. What waits for a time is an APScheduler job (`scheduler.Timers`); what may
start now is in the `ReadyQueue`. A result is committed with the record that ends the run, signed
while that commit is synced, and published by the outbox once it is durable.

After a restart `restore` rebuilds the ready queue and the timers from the records: an attempt that
was running when the agent died counts as a failed attempt (`worker_crashed`), so a task that kills
its agent cannot loop for ever, and a completed run (its result committed) never runs again.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from agent.protocol import AcceptedTask, Limits, Task, unpackb

from ..config import Config
from ..errors import ResultTooLarge
from ..exec.pool import Outcome
from ..observe.logs import task_extra
from ..observe.telemetry import Telemetry
from ..publish.outbox import Outbox, outbox_ops, result_rows
from ..publish.signing import Publication, Signing, SignOnce
from ..store import HISTORY, TASKS, Op, Store
from .ready import ReadyQueue
from .timers import Prepared, Timers, backoff_s, date_spec

log = logging.getLogger(__name__)
#: How loud the end of a run is in the log: a completed run is routine, an abandoned task is not.
_LEVEL = {"completed": logging.DEBUG, "abandoned": logging.WARNING}
#: Failures that end the run at once: another attempt would end the same way (PROTOCOL 6).
_FINAL = frozenset({"cancelled", "result_too_large"})


def _tag(plan: Plan) -> dict[str, Any]:
    """`extra=` of a log line about the task of `plan`: its id and trace go into the line."""
    return task_extra(plan.id, plan.trace)


class Plan(NamedTuple):
    """What the agent needs of a task besides its record, decoded once from the signed body.
    (A NamedTuple: one is built per task, and its fields are read on every step of the task.)"""

    key: str
    id: str
    kid: str
    kernel: str
    priority: int
    timeout_s: float
    max_retries: int
    expires_at: float
    run_at: float | None
    every_s: float | None
    cron: str | None
    tz: str | None
    until: float | None
    trace: str | None
    recurring: bool  # every_s or cron: a run after each run
    reply: bool  # each result also goes to the issuer's replies topic

    @classmethod
    def of(cls, task: Task, kid: str) -> Plan:
        return cls(
            task_key(kid, task.id),
            task.id,
            kid,
            task.kernel,
            task.priority,
            task.timeout_s,
            task.max_retries,
            task.expires_at,
            task.run_at,
            task.every_s,
            task.cron,
            task.tz,
            task.until,
            task.trace,
            task.every_s is not None or task.cron is not None,
            task.reply,
        )

    def schedule_spec(self, received_at: float) -> dict[str, Any]:
        """The trigger of a recurring task: `every_s` on the grid of `run_at` (else of its arrival,
        whose first run is queued at once), `cron` from `run_at` on; both until `until`."""
        start = self.run_at if self.run_at is not None else received_at
        if self.every_s is not None:
            return {"type": "interval", "seconds": self.every_s, "start": start, "end": self.until}
        return {"type": "cron", "expr": self.cron, "tz": self.tz, "start": self.run_at, "end": self.until}


class Attempt(NamedTuple):
    """One attempt handed to a worker."""

    key: str
    plan: Plan
    body: bytes
    run: int
    attempt: int

    @property
    def tag(self) -> tuple[str, int, int]:
        """Names this attempt to `Worker.cancel`."""
        return (self.key, self.run, self.attempt)


def task_key(kid: str, task_id: str) -> str:
    return f"{kid}/{task_id}"


def _updated(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**record, **changes}


class Lifecycle:
    """Owns every state transition; thread-safe (intake, scheduler, worker threads call it)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        signing: Signing,
        outbox: Outbox,
        publish_event: Callable[[Publication], None] | None = None,
        *,
        telemetry: Telemetry | None = None,
        handed_off: bool = False,
    ) -> None:
        """`publish_event`: lifecycle events go there while `[events] enabled` (read at each
        event, so a reload turns them on or off). `handed_off`: an intake hands the tasks it
        queues to idle workers itself (tasks/dispatch.py), so queueing them wakes no driver."""
        self.config = config
        self.store = store
        self.signing = signing
        self.outbox = outbox
        self._publish_event = publish_event
        self._handed_off = handed_off
        self.ready = ReadyQueue()
        self.timers = Timers(store, self._due_later)
        self._due: queue.SimpleQueue[tuple[str, dict[str, Any], float] | None] = queue.SimpleQueue()
        self._due_thread = threading.Thread(target=self._due_loop, name="timers", daemon=True)
        self._lock = threading.RLock()
        self._plans: dict[str, Plan] = {}
        self._body_bytes = 0  # of the records in the `tasks` table (under `_lock`): check 9's bytes
        self._expiry: list[tuple[float, str]] = []  # one-shot tasks not started yet
        self._seq = itertools.count(1)
        self._rng = random.Random()
        self.totals = {"completed": 0, "abandoned": 0, "expired": 0, "cancelled": 0}
        self.running: dict[str, Any] = {}  # key -> worker (for cancel)
        self.telemetry = telemetry or Telemetry()

    def reconfigure(self, config: Config) -> None:
        """A reload: later decisions read `config` (each reads `self.config` once, so one
        decision never mixes the old and the new)."""
        self.config = config

    # -- admission (intake thread) --------------------------------------------------------------------

    def record_for(self, accepted: AcceptedTask, received_at: float) -> tuple[Plan, dict[str, Any]]:
        """The first record of an accepted task (committed by the intake with its replay row)."""
        plan = Plan.of(accepted.task, accepted.kid)
        # Waits: for a start time to come, or for its cron schedule; `every_s` runs at once, then every N s.
        waits = plan.cron is not None or (plan.run_at is not None and plan.run_at > received_at)
        record = {
            "key": plan.key,
            "id": plan.id,
            "kid": plan.kid,
            "kernel": plan.kernel,
            "priority": plan.priority,
            "seq": next(self._seq),
            "received_at": received_at,
            "body": accepted.body,
            "status": "scheduled" if waits else "queued",
            "wait": "next" if plan.recurring else "start",
            "run": 0 if waits and plan.recurring else 1,
            "attempt": 0,
            "started_at": None,
            "last_error": None,
        }
        with self._lock:  # committed by the caller now: held until `_finish`
            self._body_bytes += len(accepted.body)
        return plan, record

    def prepare(self, plan: Plan, record: dict[str, Any]) -> Prepared | None:
        """A recurring task's trigger and first run, worked out before `activate` takes the lock
        (the intake calls it; for a cron expression this is the costly part of scheduling)."""
        if not plan.recurring:
            return None
        return self.timers.prepare(plan.schedule_spec(record["received_at"]))

    def activate(self, plan: Plan, record: dict[str, Any], prepared: Prepared | None = None) -> None:
        """After the record's commit is durable: queue it, or set its timer (`prepared`: see `prepare`)."""
        with self._lock:
            self._plans[plan.key] = plan
            if not plan.recurring:
                heapq.heappush(self._expiry, (plan.expires_at, plan.key))
            self._event(plan, "queued", record)
            log.debug("task %s accepted: %s, %s", plan.id, plan.kernel, record["status"], extra=_tag(plan))
            if record["status"] == "scheduled":
                self._event(plan, "scheduled", record, message=self._waiting_for(plan))
            if record["status"] == "queued":  # no idle driver woken: `dispatch` hands it over
                self.ready.push(plan.priority, record["seq"], plan.key, wake=not self._handed_off)
            if plan.recurring:
                self._schedule_runs(plan, record, prepared)
            elif record["status"] == "scheduled":
                self.timers.at(f"start:{plan.key}", date_spec(plan.run_at or 0.0), key=plan.key)

    def active(self) -> int:
        return self.store.count(TASKS)

    def active_bytes(self) -> int:
        """Bytes of the bodies of the tasks that are not finished (check 9's second bound)."""
        return self._body_bytes

    def plan(self, key: str) -> Plan | None:
        return self._plans.get(key)

    def next_at(self, key: str, record: dict[str, Any]) -> float | None:
        """When a scheduled task's timer fires next (None: not scheduled, or no timer)."""
        if record["status"] != "scheduled":
            return None
        prefix = {"start": "start", "retry": "retry", "next": "run"}[record["wait"]]
        return self.timers.next_run(f"{prefix}:{key}")

    @staticmethod
    def _waiting_for(plan: Plan) -> str:
        if plan.cron is not None:
            return f"next run on cron {plan.cron!r}"
        if plan.every_s is not None:
            return f"next run in {plan.every_s:g} s"
        return f"waiting for run_at {plan.run_at}"

    # -- timers ------------------------------------------------------------------------------------------

    def start(self) -> int:
        """Load the timers, restore the stored tasks, then let timers fire; returns how many tasks."""
        self.timers.scheduler.start(paused=True)  # job stores loaded, nothing fires yet
        restored = self.restore()
        self._due_thread.start()
        self.timers.scheduler.resume()
        return restored

    def stop(self) -> None:
        self.timers.stop()
        self._due.put(None)
        self._due_thread.join(10)
        self.ready.close()

    def _due_later(self, job_id: str, kwargs: dict[str, Any], run_time: float) -> None:
        """APScheduler's thread, holding its job store lock: hand over, never take our lock here
        (we take ours, then APScheduler's, when we set timers)."""
        self._due.put((job_id, kwargs, run_time))

    def _due_loop(self) -> None:
        while (item := self._due.get()) is not None:
            try:
                self.due(*item)
            except Exception:  # contained: timers must keep firing
                log.exception("due job %s failed", item[0])

    def due(self, job_id: str, kwargs: dict[str, Any], run_time: float) -> None:
        """A task job fired: a start time, a retry back-off or a recurring run is due."""
        key = kwargs["key"]
        with self._lock:
            record = self.store.get(TASKS, key)
            plan = self._plans.get(key)
            if record is None or plan is None:
                return
            if job_id.startswith("run:"):
                if record["status"] != "scheduled" or record["wait"] != "next":
                    log.warning(
                        "task %s: run at %.3f skipped, the previous run is not finished", key, run_time
                    )
                    return
                record = _updated(record, run=record["run"] + 1, attempt=0, last_error=None)
            elif record["status"] != "scheduled":
                return
            self._queue(plan, record)

    def _queue(self, plan: Plan, record: dict[str, Any]) -> None:
        record = _updated(record, status="queued", seq=next(self._seq))
        self.store.commit([Op(TASKS, plan.key, record)])
        self.ready.push(plan.priority, record["seq"], plan.key)

    def _schedule_runs(self, plan: Plan, record: dict[str, Any], prepared: Prepared | None = None) -> None:
        spec = prepared or plan.schedule_spec(record["received_at"])
        first = self.timers.at(f"run:{plan.key}", spec, key=plan.key)
        if first is None and record["status"] != "queued":  # no run at all (a queued first run ends it)
            self._finish(
                plan, record, "expired", error={"code": "expired", "message": "no run before 'until'"}
            )

    # -- attempts (worker threads) --------------------------------------------------------------------

    def take_now(self, worker: Any = None) -> Attempt | None:
        """The next attempt for a free worker, by priority; None if nothing is ready. `worker` is
        registered in `running` in the same locked step, for `cancel`. (Drivers wait for work with
        `ready.wait`; the intake hands work to idle ones through `dispatch`.)"""
        popped = self.ready.pop_now()
        return None if popped is None else self._take(*popped, worker)

    def _take(self, key: str, waited: float, worker: Any) -> Attempt | None:
        with self._lock:
            record = self.store.get(TASKS, key)
            plan = self._plans.get(key)
            if record is None or plan is None or record["status"] != "queued":
                return None  # cancelled or finished meanwhile
            now = time.time()
            if not plan.recurring and record["attempt"] == 0 and now > plan.expires_at:
                self._finish(
                    plan, record, "expired", error={"code": "expired", "message": "not started in time"}
                )
                return None
            attempt = record["attempt"] + 1
            record = _updated(record, status="running", attempt=attempt, started_at=now)
            self.store.commit([Op(TASKS, key, record)], sync=False)  # lazy: see Store.commit
            if worker is not None:
                self.running[key] = worker
            self._event(plan, "running", record)
            self.telemetry.attempt_started(waited)
            log.debug("task %s: attempt %d started", plan.id, attempt, extra=_tag(plan))
            return Attempt(key, plan, record["body"], record["run"], attempt)

    def timeout_for(self, plan: Plan) -> float:
        return min(plan.timeout_s, self.config.limits.max_timeout_s)

    def finished(self, attempt: Attempt, outcome: Outcome) -> None:
        """An attempt ended: a result, a retry, or the end of the task."""
        with self._lock:
            record = self.store.get(TASKS, attempt.key)
            if record is None or record["status"] != "running":
                return
            plan = attempt.plan
            times = {"started_at": outcome.started_at, "finished_at": outcome.finished_at}
            self.telemetry.attempt_ended(plan.kernel, outcome)
            if record.get("cancel"):  # sys.cancel asked for it: cancelled, whatever the attempt did
                self._end_run(
                    plan,
                    record,
                    "cancelled",
                    error={"code": "cancelled", "message": record["cancel"]},
                    **times,
                )
                return
            if outcome.ok:
                try:
                    self._end_run(
                        plan,
                        record,
                        "completed",
                        output=outcome.result,
                        duration_ms=outcome.duration_ms,
                        **times,
                    )
                    return
                except ResultTooLarge as exc:  # raised before anything changed: ends the task below
                    outcome = outcome._replace(ok=False, result=None, code=exc.code, message=str(exc))
                    self.telemetry.attempt_failed(exc.code)
            error = outcome.error
            self._event(plan, "failed", record, **error)
            log.warning(
                "task %s: attempt %d failed: %s: %s",
                plan.id,
                attempt.attempt,
                error["code"],
                error["message"],
                extra=_tag(plan),
            )
            if outcome.code not in _FINAL and attempt.attempt < 1 + plan.max_retries:
                self._retry(plan, _updated(record, last_error=error))
            else:
                status = "cancelled" if outcome.code == "cancelled" else "abandoned"
                self._end_run(plan, record, status, error=error, **times)

    def requeue(self, attempt: Attempt) -> None:
        """A clean stop interrupted the attempt: it does not count, the task waits for the next start."""
        with self._lock:
            record = self.store.get(TASKS, attempt.key)
            if record is not None and record["status"] == "running" and record.get("cancel"):
                self._finish(
                    attempt.plan,
                    record,
                    "cancelled",
                    error={"code": "cancelled", "message": record["cancel"]},
                )
            elif record is not None and record["status"] == "running":
                record = _updated(record, status="queued", attempt=record["attempt"] - 1, started_at=None)
                self.store.commit([Op(TASKS, attempt.key, record)])

    def _retry(self, plan: Plan, record: dict[str, Any]) -> None:
        s = self.config.scheduling
        delay = backoff_s(record["attempt"], s.retry_base_s, s.retry_max_s, s.retry_jitter, self._rng)
        record = _updated(record, status="scheduled", wait="retry")
        self.store.commit([Op(TASKS, plan.key, record)])
        self._event(plan, "retrying", record, message=f"next attempt in {delay:.1f} s")
        self.timers.at(f"retry:{plan.key}", date_spec(time.time() + delay), key=plan.key)

    # -- sys.cancel (the intake thread) -------------------------------------------------------------------

    def cancel(self, key: str, reason: str) -> str | None:
        """End a live task `cancelled` (PROTOCOL 6, 8); returns the status it had, None if not live.

        Queued or scheduled (waiting for `run_at`, a retry or its next recurring run): its result now,
        its timers removed. Running: the request is committed on its record first (a restart ends it
        `cancelled` too), then the worker is killed; `finished` publishes the result, not retried."""
        with self._lock:
            record = self.store.get(TASKS, key)
            plan = self._plans.get(key)
            if record is None or plan is None:
                return None
            status: str = record["status"]
            if status == "running":
                if not record.get("cancel"):
                    self.store.commit([Op(TASKS, key, _updated(record, cancel=reason))])
                worker = self.running.get(key)
                if worker is not None:
                    worker.cancel((key, record["run"], record["attempt"]))
                return status
            if status == "scheduled" and record["wait"] == "next":  # the run that will not happen
                record = _updated(record, run=record["run"] + 1, attempt=0, last_error=None)
            self._finish(plan, record, "cancelled", error={"code": "cancelled", "message": reason})
            return status

    # -- ending runs and tasks ----------------------------------------------------------------------------

    def _end_run(self, plan: Plan, record: dict[str, Any], status: str, **outcome: Any) -> None:
        """One run ended: its result; then the task waits for its next run, or is finished."""
        if plan.recurring and status != "cancelled" and self.timers.has(f"run:{plan.key}"):
            result = self._result(plan, record, status, **outcome)
            record = _updated(record, status="scheduled", wait="next", started_at=None)
            self._commit_result(plan, record, status, result, [Op(TASKS, plan.key, record)], outcome)
            self._event(plan, "scheduled", record, message=self._waiting_for(plan))
            return
        self._finish(plan, record, status, **outcome)

    def _finish(self, plan: Plan, record: dict[str, Any], status: str, **outcome: Any) -> None:
        """The task's last result and its move to the history."""
        if record["run"] == 0:  # a recurring task that never ran: its answer is run 1
            record = _updated(record, run=1)
        result = self._result(plan, record, status, **outcome)
        final = {k: v for k, v in record.items() if k != "body"}
        final.update(
            status=status, finished_at=time.time(), body_sha256=hashlib.sha256(record["body"]).digest()
        )
        if plan.trace is not None:
            final["trace"] = plan.trace
        if outcome.get("error"):
            final["last_error"] = outcome["error"]
        ops = [Op(TASKS, plan.key, None), Op(HISTORY, plan.key, final)]
        self._body_bytes -= len(record["body"])
        waiting = record["status"] == "scheduled"
        for prefix, exists in (
            ("start", waiting and record["wait"] == "start"),
            ("retry", waiting and record["wait"] == "retry"),
            ("run", plan.recurring),
        ):
            if exists:  # only timers that can exist: a failed cancel costs an exception
                self.timers.cancel(f"{prefix}:{plan.key}")
        self._plans.pop(plan.key, None)
        self._commit_result(plan, record, status, result, ops, outcome)

    def _result(self, plan: Plan, record: dict[str, Any], status: str, **outcome: Any) -> SignOnce:
        return self.signing.result(
            plan.id,
            plan.kernel,
            status,
            run=max(1, record["run"]),
            attempt=record["attempt"],
            received_at=record["received_at"],
            trace=plan.trace,
            **outcome,
        )

    def _commit_result(
        self,
        plan: Plan,
        record: dict[str, Any],
        status: str,
        result: SignOnce,
        ops: list[Op],
        outcome: dict[str, Any],
    ) -> None:
        key = f"{plan.key}#{max(1, record['run'])}"
        rows = result_rows(key, result, self.signing.reply_topic(plan.kid, plan.id, plan.reply))
        self.store.commit([*outbox_ops(rows), *ops], lambda: self.outbox.send_rows(rows))
        result.publication()  # signed now, while the writer syncs: ready when the commit is durable
        if status in self.totals:
            self.totals[status] += 1
        self.telemetry.run_ended(status, None if plan.recurring else record["received_at"])
        log.log(
            _LEVEL.get(status, logging.INFO),
            "task %s run %d ended: %s",
            plan.id,
            max(1, record["run"]),
            status,
            extra=_tag(plan),
        )
        self._event(plan, status, record, **(outcome.get("error") or {}))

    def expire_due(self, now: float | None = None) -> int:
        """Periodic: one-shot tasks whose first attempt has not started by `expires_at` end `expired`."""
        now = time.time() if now is None else now
        expired = 0
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                _, key = heapq.heappop(self._expiry)
                record, plan = self.store.get(TASKS, key), self._plans.get(key)
                if record and plan and record["attempt"] == 0 and record["status"] in ("queued", "scheduled"):
                    self._finish(
                        plan, record, "expired", error={"code": "expired", "message": "not started in time"}
                    )
                    expired += 1
        return expired

    @property
    def events_enabled(self) -> bool:
        """Whether lifecycle events are published (`[events] enabled`, a hot key)."""
        return self._publish_event is not None and self.config.events.enabled

    def publish_event(self, event: Publication) -> None:
        """A lifecycle event built elsewhere (the intake's `rejected`), when events are enabled."""
        if self._publish_event is not None and self.config.events.enabled:
            self._publish_event(event)

    def _event(self, plan: Plan, status: str, record: dict[str, Any], **detail: Any) -> None:
        if self.events_enabled:
            self.publish_event(
                self.signing.event(
                    plan.id,
                    status,
                    run=max(1, record["run"]),
                    attempt=record["attempt"],
                    trace=plan.trace,
                    **detail,
                )
            )

    # -- restart --------------------------------------------------------------------------------------------

    def restore(self) -> int:
        """Rebuild plans, the ready queue and the timers from the stored records; returns how many."""
        limits = Limits(max_payload=self.config.security.max_payload)
        rows = sorted(self.store.rows(TASKS), key=lambda row: row[1]["seq"])
        if rows:
            self._seq = itertools.count(rows[-1][1]["seq"] + 1)
        for _, record in rows:
            with self._lock:
                self._body_bytes += len(record["body"])
            task = Task.from_body(unpackb(record["body"], limits))
            plan = Plan.of(task, record["kid"])
            self._restore_one(plan, record)
        return len(rows)

    def _restore_one(self, plan: Plan, record: dict[str, Any]) -> None:
        with self._lock:
            self._plans[plan.key] = plan
            if not plan.recurring and record["attempt"] == 0:
                heapq.heappush(self._expiry, (plan.expires_at, plan.key))
            status = record["status"]
            if status == "queued":
                self.ready.push(plan.priority, record["seq"], plan.key)
            elif status == "running":  # the agent died during the attempt
                interrupted = Outcome(
                    False,
                    record["started_at"] or time.time(),
                    time.time(),
                    code="worker_crashed",
                    message="the agent stopped during the attempt",
                )
                self.finished(
                    Attempt(plan.key, plan, record["body"], record["run"], record["attempt"]), interrupted
                )
            elif record["wait"] == "next":
                if not self.timers.has(f"run:{plan.key}"):
                    self._schedule_runs(plan, record)
            elif record["wait"] == "retry" and not self.timers.has(f"retry:{plan.key}"):
                self._queue(plan, record)
            elif record["wait"] == "start" and not self.timers.has(f"start:{plan.key}"):
                self.timers.at(f"start:{plan.key}", date_spec(plan.run_at or 0.0), key=plan.key)
