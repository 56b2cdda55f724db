"""When waiting tasks become ready: APScheduler for everything that waits for a time.

`Timers`: APScheduler 3's `BackgroundScheduler` with two
job stores: `tasks` (on the state, see store/jobstore.py) for `run_at`, retry back-offs, `every_s`
and `cron` runs, and an in-memory one for the agent's own periodic work (heartbeats, expiry sweeps,
housekeeping). Task jobs are never "run" by APScheduler: their executor hands the due task to a
callback (which puts it in the ready queue) and returns, so the scheduler thread never waits for a
kernel and APScheduler's lack of priorities does not matter.

A task job's trigger and first run time can be worked out before any lock is taken (`Timers.prepare`,
on the intake thread) and handed to `Timers.at` later, under the lifecycle's lock: building a cron
trigger (probing its horizon, see protocol/crontab.py) and finding its first run then happen
outside it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import random
from collections.abc import Callable
from typing import Any, NamedTuple

from apscheduler.executors.base import BaseExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from ..store import Store
from ..store.jobstore import UTC, StoreJobStore, build_trigger, from_ts

log = logging.getLogger(__name__)

TASK_STORE, TASK_EXECUTOR = "tasks", "ready"
#: The callable of every task job. It is only a name for APScheduler: `DueExecutor` never calls it.
FUNC_REF = "agent.node.tasks.timers:task_job"

Due = Callable[[str, dict[str, Any], float], None]  # (job id, kwargs, scheduled run time)


def task_job(**kwargs: Any) -> None:
    raise RuntimeError("task jobs are handled by DueExecutor, never called")


class DueExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs nothing: hands a due task job to `on_due` in the scheduler's thread and returns."""

    def __init__(self, on_due: Due) -> None:
        super().__init__()
        self._on_due = on_due

    def _do_submit_job(self, job: Job, run_times: list[dt.datetime]) -> None:
        try:
            self._on_due(job.id, job.kwargs, run_times[-1].timestamp())
        except Exception as exc:  # logged and contained: the scheduler thread must go on
            log.exception("handling due job %s failed", job.id)
            self._run_job_error(job.id, exc, exc.__traceback__)
        else:
            self._run_job_success(job.id, [])


def backoff_s(attempt: int, base: float, cap: float, jitter: float, rng: random.Random) -> float:
    """Exponential back-off after failed attempt `attempt` (1-based), with +-`jitter` spread."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return max(0.0, float(delay * (1 + rng.uniform(-jitter, jitter))))


class Prepared(NamedTuple):
    """A task job's trigger and its first run time (None: never), made by `Timers.prepare`."""

    spec: dict[str, Any]
    trigger: BaseTrigger
    first: dt.datetime | None


class Timers:
    """The APScheduler side: task jobs on the state, internal periodic jobs in memory."""

    def __init__(self, store: Store, on_due: Due) -> None:
        self._counter = itertools.count()
        self.scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore(), TASK_STORE: StoreJobStore(store, FUNC_REF)},
            executors={"default": ThreadPoolExecutor(2), TASK_EXECUTOR: DueExecutor(on_due)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone="UTC",
        )

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def every(self, seconds: float, func: Callable[[], object], job_id: str) -> None:
        """An internal periodic job (not stored)."""
        self.scheduler.add_job(func, "interval", seconds=seconds, id=job_id, replace_existing=True)

    @staticmethod
    def prepare(spec: dict[str, Any]) -> Prepared:
        """The trigger `spec` describes and its first run time from now (any thread, no lock)."""
        trigger = build_trigger(spec)
        return Prepared(spec, trigger, trigger.get_next_fire_time(None, dt.datetime.now(UTC)))

    def at(self, job_id: str, spec: dict[str, Any] | Prepared, **kwargs: Any) -> dt.datetime | None:
        """Schedule (or replace) the task job `job_id`; returns its first run time (None: never).

        `spec` describes the trigger (see store/jobstore.py), or is one `prepare` made; misfires
        always run (late rather than never: the agent may have been down) and coalesce into one run.
        """
        prepared = spec if isinstance(spec, Prepared) else self.prepare(spec)
        job = self.scheduler.add_job(
            FUNC_REF,
            trigger=prepared.trigger,
            next_run_time=prepared.first,
            id=job_id,
            kwargs={**kwargs, "trigger": prepared.spec},
            jobstore=TASK_STORE,
            executor=TASK_EXECUTOR,
            misfire_grace_time=None,
            coalesce=True,
            replace_existing=True,
        )
        return job.next_run_time  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> bool:
        try:
            self.scheduler.remove_job(job_id, TASK_STORE)
        except JobLookupError:
            return False
        return True

    def has(self, job_id: str) -> bool:
        return self.scheduler.get_job(job_id, TASK_STORE) is not None

    def next_run(self, job_id: str) -> float | None:
        job = self.scheduler.get_job(job_id, TASK_STORE)
        return None if job is None or job.next_run_time is None else float(job.next_run_time.timestamp())


def date_spec(at: float) -> dict[str, Any]:
    return {"type": "date", "at": at}


def first_fire(spec: dict[str, Any], now: float) -> float | None:
    """When a trigger described by `spec` fires first at or after `now` (None: never)."""
    fire = build_trigger(spec).get_next_fire_time(None, from_ts(now))
    return None if fire is None else float(fire.timestamp())
