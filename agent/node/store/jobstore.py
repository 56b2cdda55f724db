"""An APScheduler 3 job store on the agent's state (the `jobs` table): schedules survive kill -9.

APScheduler's own persistent stores pickle the whole job. This one stores a job as data: its id,
its next run time and its kwargs, which hold the trigger's description (`{"type": "date", "at"}`,
`{"type": "interval", "seconds", "start", "end"}`, `{"type": "cron", "expr", "tz", "start", "end"}`);
the trigger object is rebuilt from that description when the store starts. Jobs are kept in memory
in run-time order as well (APScheduler asks for due jobs on every wake-up); every change is
committed to the store without waiting: a schedule change lost to a crash is re-derived from the
task records when the agent starts (see `lifecycle.py`).
"""

from __future__ import annotations

import bisect
import datetime as dt
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from .state import JOBS
from .store import Op, Store

UTC = dt.timezone.utc
_FAR = float("inf")


def from_ts(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, UTC)


def to_ts(when: dt.datetime | None) -> float | None:
    return None if when is None else when.timestamp()


def build_trigger(spec: dict[str, Any]) -> BaseTrigger:
    """The APScheduler trigger a stored description stands for."""
    kind = spec["type"]
    if kind == "date":
        return DateTrigger(run_date=from_ts(spec["at"]), timezone=UTC)
    if kind == "interval":
        from apscheduler.triggers.interval import IntervalTrigger

        return IntervalTrigger(
            seconds=spec["seconds"],
            start_date=from_ts(spec.get("start")),
            end_date=from_ts(spec.get("end")),
            timezone=UTC,
        )
    if kind == "cron":
        from agent.protocol.crontab import cron_trigger

        return cron_trigger(spec["expr"], spec.get("tz"), start=spec.get("start"), end=spec.get("end"))
    raise ValueError(f"unknown trigger type {kind!r}")


class StoreJobStore(BaseJobStore):  # type: ignore[misc]
    """APScheduler's job store interface over the `jobs` table."""

    def __init__(self, store: Store, func_ref: str) -> None:
        super().__init__()
        self._store = store
        self._func_ref = func_ref
        self._jobs: dict[str, Job] = {}
        self._order: list[tuple[float, str]] = []  # (next run timestamp or inf, id), sorted
        self._when: dict[str, float] = {}  # id -> its entry's timestamp in _order

    # -- loading ------------------------------------------------------------------------------------

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        for job_id, doc in self._store.rows(JOBS):
            job = self._restore(job_id, doc)
            self._jobs[job_id] = job
            self._when[job_id] = doc["next_run_time"] or _FAR
            bisect.insort(self._order, (self._when[job_id], job_id))

    def _restore(self, job_id: str, doc: dict[str, Any]) -> Job:
        job = Job.__new__(Job)
        job.__setstate__(
            {
                "version": 1,
                "id": job_id,
                "func": self._func_ref,
                "trigger": build_trigger(doc["kwargs"]["trigger"]),
                "executor": doc["executor"],
                "args": (),
                "kwargs": doc["kwargs"],
                "name": job_id,
                "misfire_grace_time": doc["misfire_grace_time"],
                "coalesce": doc["coalesce"],
                "max_instances": 1,
                "next_run_time": from_ts(doc["next_run_time"]),
            }
        )
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job

    @staticmethod
    def _doc(job: Job) -> dict[str, Any]:
        return {
            "next_run_time": to_ts(job.next_run_time),
            "kwargs": job.kwargs,
            "executor": job.executor,
            "misfire_grace_time": job.misfire_grace_time,
            "coalesce": job.coalesce,
        }

    # -- the BaseJobStore interface -----------------------------------------------------------------

    def lookup_job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def get_due_jobs(self, now: dt.datetime) -> list[Job]:
        limit = now.timestamp()
        due = []
        for ts, job_id in self._order:
            if ts > limit:
                break
            due.append(self._jobs[job_id])
        return due

    def get_next_run_time(self) -> dt.datetime | None:
        if not self._order or self._order[0][0] == _FAR:
            return None
        return from_ts(self._order[0][0])

    def get_all_jobs(self) -> list[Job]:
        return [self._jobs[job_id] for _, job_id in self._order]

    def add_job(self, job: Job) -> None:
        if job.id in self._jobs:
            raise ConflictingIdError(job.id)
        self._put(job)

    def update_job(self, job: Job) -> None:
        if job.id not in self._jobs:
            raise JobLookupError(job.id)
        self._unorder(job.id)
        self._put(job)

    def remove_job(self, job_id: str) -> None:
        job = self._jobs.pop(job_id, None)
        if job is None:
            raise JobLookupError(job_id)
        self._unorder(job_id)
        self._store.commit([Op(JOBS, job_id, None)])

    def remove_all_jobs(self) -> None:
        ops = [Op(JOBS, job_id, None) for job_id in self._jobs]
        self._jobs.clear()
        self._order.clear()
        self._when.clear()
        if ops:
            self._store.commit(ops)

    def shutdown(self) -> None:
        """Jobs stay in the store for the next start."""

    # -- helpers -----------------------------------------------------------------------------------------

    def _put(self, job: Job) -> None:
        self._jobs[job.id] = job
        self._when[job.id] = to_ts(job.next_run_time) or _FAR
        bisect.insort(self._order, (self._when[job.id], job.id))
        self._store.commit([Op(JOBS, job.id, self._doc(job))])

    def _unorder(self, job_id: str) -> None:
        """Take a job's entry out of the order (APScheduler changes jobs in place: use our copy)."""
        entry = (self._when.pop(job_id), job_id)
        index = bisect.bisect_left(self._order, entry)
        del self._order[index]
