"""The agent's metrics: what its parts count as tasks go through, and what is read when scraped.

    telemetry = Telemetry()                 # counters and histograms, fed by one call per event
    Lifecycle(..., telemetry=telemetry); Intake(..., telemetry=telemetry)
    watch_agent(telemetry.registry, agent)  # gauges read at scrape time (status/gauges.py)
    telemetry.registry.expose()

Every name starts with `edge_agent_`; deploy/monitoring (dashboard, alert rules) uses only these,
and a test checks it. Events on the task path cost one or two lock-protected additions; everything
the agent already knows (queue depth, outbox, connection, workers, restarts) costs nothing until a
scrape reads it.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from agent.protocol.errors import REJECT_CODES, TASK_REJECT_CODES

from .metrics import Registry


class EndedAttempt(Protocol):
    """What `attempt_ended` reads of an attempt's outcome (exec.pool.Outcome has it)."""

    @property
    def ok(self) -> bool: ...
    @property
    def started_at(self) -> float: ...
    @property
    def finished_at(self) -> float: ...
    @property
    def error(self) -> Any: ...


#: Terminal statuses of PROTOCOL 6: every one exists at 0 from the start (rate() needs a first sample).
STATUSES = ("completed", "abandoned", "expired", "cancelled", "rejected")
#: Why a worker was replaced (workers.py): past its timeout, crashed, past its memory limit, sys.cancel.
RESTART_REASONS = ("timeout", "crash", "memory", "cancel")
QUEUE_STATES = ("queued", "scheduled", "running")
#: Codes of a failed attempt (PROTOCOL 6, and `cancelled` from sys.cancel).
ATTEMPT_CODES = (
    "kernel_error",
    "timeout",
    "worker_crashed",
    "out_of_memory",
    "result_too_large",
    "cancelled",
)
#: Kernel runs: a millisecond to ten minutes.
RUN_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    600.0,
)
#: Waits and accept-to-result: a millisecond to an hour (scheduled and retried tasks wait long).
WAIT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    3600.0,
)


class Telemetry:
    """Counters and histograms of task events; the parts call the methods below."""

    def __init__(self, registry: Registry | None = None) -> None:
        r = self.registry = registry if registry is not None else Registry()
        self.tasks = r.counter(
            "edge_agent_tasks_total", "Task runs that ended, by terminal status (one per result).", ["status"]
        )
        self._ended = {status: self.tasks.labels(status) for status in STATUSES}
        self.accepted = r.counter("edge_agent_tasks_accepted_total", "Tasks accepted and durably queued.")
        self.rejects = r.counter(
            "edge_agent_rejects_total",
            "Refused messages by PROTOCOL 4/5 code; kind=result: answered with a rejected result, "
            "kind=report: not authenticated, reported on the rejects topic.",
            ["code", "kind"],
        )
        self.reports_suppressed = r.counter(
            "edge_agent_reject_reports_suppressed_total",
            "Rejects reports not published because of the rate limit (the message is still counted).",
        )
        self.attempts_failed = r.counter(
            "edge_agent_attempts_failed_total",
            "Attempts that failed, by code: kernel_error, timeout, worker_crashed, out_of_memory, "
            "result_too_large, cancelled.",
            ["code"],
        )
        self.queue_wait = r.histogram(
            "edge_agent_queue_wait_seconds",
            "Time a task waited in the ready queue before an attempt started.",
            buckets=WAIT_BUCKETS,
        )
        self.run_time = r.histogram(
            "edge_agent_run_seconds",
            "Wall time of one attempt in a worker, by kernel.",
            ["kernel"],
            buckets=RUN_BUCKETS,
        )
        self.accept_to_result = r.histogram(
            "edge_agent_accept_to_result_seconds",
            "From receiving a one-shot task to its result, by terminal status (rejections excluded).",
            ["status"],
            buckets=WAIT_BUCKETS,
        )
        # Every known series exists at 0 from the start: increase() and rate() then see the first
        # event too, and an alert on a code that never happened yet still has a series to watch.
        for code in sorted(TASK_REJECT_CODES):
            self.rejects.labels(code, "result")
        for code in sorted(REJECT_CODES):
            self.rejects.labels(code, "report")
        for code in ATTEMPT_CODES:
            self.attempts_failed.labels(code)
        for status in STATUSES[:-1]:
            self.accept_to_result.labels(status)
        # Children of the task path, looked up once.
        self._accepted = self.accepted.labels()
        self._waited = self.queue_wait.labels()

    # -- events (intake, lifecycle) -----------------------------------------------------------------

    def task_accepted(self) -> None:
        self._accepted.inc()

    def task_rejected(self, code: str) -> None:
        """A `rejected` result (checks 4-9)."""
        self._ended["rejected"].inc()
        self.rejects.labels(code, "result").inc()

    def unauthenticated(self, code: str) -> None:
        """A message that failed checks 1-3 (a rejects report, PROTOCOL 5)."""
        self.rejects.labels(code, "report").inc()

    def report_suppressed(self) -> None:
        self.reports_suppressed.inc()

    def attempt_started(self, waited_s: float) -> None:
        self._waited.observe(waited_s)

    def attempt_ended(self, kernel: str, outcome: EndedAttempt) -> None:
        self.run_time.labels(kernel).observe(max(0.0, outcome.finished_at - outcome.started_at))
        if not outcome.ok:
            self.attempt_failed(outcome.error["code"])

    def attempt_failed(self, code: str) -> None:
        """An attempt failed (also one whose output the agent found too large after it ran)."""
        self.attempts_failed.labels(code).inc()

    def run_ended(self, status: str, received_at: float | None) -> None:
        """A run's result: `received_at` for a one-shot task (its accept-to-result time), else None."""
        counter = self._ended.get(status)
        if counter is None:
            counter = self._ended[status] = self.tasks.labels(status)
        counter.inc()
        if received_at is not None:
            self.accept_to_result.labels(status).observe(max(0.0, time.time() - received_at))
