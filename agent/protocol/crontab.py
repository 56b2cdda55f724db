"""5-field crontab expressions as APScheduler 3 triggers, with crontab's meaning.

APScheduler 3's `CronTrigger.from_crontab` differs from cron(8) twice: its day-of-week numbers
start at Monday (crontab: 0 and 7 are Sunday), and it requires day-of-month *and* day-of-week to
match where cron runs when *either* does (if both are restricted). Here the day-of-week field is
translated to names, and a restricted pair becomes an `OrTrigger` of two triggers.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    token = token.strip().lower()
    if token[:3] in _DAYS and not token.isdigit():
        return _DAYS.index(token[:3])
    value = int(token)
    if not 0 <= value <= 7:
        raise ValueError(f"day of week {value} is not 0-7")
    return value % 7


def day_of_week(field: str) -> str:
    """A crontab day-of-week field (0/7 = Sunday, names, ranges, steps) as APScheduler names."""
    days: set[int] = set()
    for item in field.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step {step} must be >= 1")
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            first, last = base.split("-", 1)
            lo, hi = _day(first), _day(last)
            if last.strip() == "7":
                hi = 7  # "5-7": Friday to Sunday
        else:
            lo = _day(base)
            hi = 6 if step_text else lo
        if hi < lo:
            raise ValueError(f"range {base!r} runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_DAYS[d] for d in sorted(days))


def _zone(tz: str | None) -> dt.tzinfo:
    if tz:
        return ZoneInfo(tz)
    local = dt.datetime.now().astimezone().tzinfo  # the agent's local zone (PROTOCOL 4: unless tz)
    assert local is not None
    return local


def cron_trigger(
    expr: str, tz: str | None, *, start: float | None = None, end: float | None = None
) -> BaseTrigger:
    """The trigger of a 5-field crontab expression in zone `tz` (None: local), from `start` to `end`."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError("a crontab expression has 5 fields")
    minute, hour, dom, month, dow = fields
    zone = _zone(tz)
    bounds = {
        "start_date": None if start is None else dt.datetime.fromtimestamp(start, zone),
        "end_date": None if end is None else dt.datetime.fromtimestamp(end, zone),
        "timezone": zone,
    }
    days = day_of_week(dow)
    if dom != "*" and dow != "*":  # cron: either field matching is enough
        return OrTrigger(
            [
                CronTrigger(minute=minute, hour=hour, day=dom, month=month, **bounds),
                CronTrigger(minute=minute, hour=hour, month=month, day_of_week=days, **bounds),
            ]
        )
    return CronTrigger(minute=minute, hour=hour, day=dom, month=month, day_of_week=days, **bounds)
