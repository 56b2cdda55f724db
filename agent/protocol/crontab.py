"""5-field crontab expressions as APScheduler 3 triggers, with crontab's meaning.

APScheduler 3's `CronTrigger.from_crontab` differs from cron(8) twice: its day-of-week numbers
start at Monday (crontab: 0 and 7 are Sunday), and it requires day-of-month *and* day-of-week to
match where cron runs when *either* does (if both are restricted). Here the day-of-week field is
translated to names, and a restricted pair becomes an `OrTrigger` of two triggers.

Impossible dates: APScheduler searches for the next fire time until the year 9999, so an expression
that never fires (`0 0 31 4,6,9,11 *`: the 31st of a 30-day month) costs 0.1-0.5 s each time its
next run is worked out, and one half of an `OrTrigger` that never fires (`0 0 31 2 mon`) costs that
at every run. Each trigger (each half of a pair) is therefore probed first with an end date
`HORIZON_YEARS` ahead, which bounds APScheduler's search to about 60 steps of a month (0.1-0.3 ms):
a half without a fire time in that horizon is left out, and an expression with none at all is
`never_fires` (check 4 refuses it: `check_cron`; a stored schedule that is found so at a restart
simply has no next run). Five years cover every date cron(8) can name but the 29th of February
across the year 2100 (8 years apart).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: How far ahead an expression must have a fire time (see the module docstring).
HORIZON_YEARS = 5
_HORIZON = dt.timedelta(days=366 * HORIZON_YEARS)


class NeverFires(BaseTrigger):  # type: ignore[misc]
    """The trigger of an expression without a fire time within `HORIZON_YEARS`: no run, ever."""

    def __init__(self, expr: str) -> None:
        self.expr = expr

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None, now: dt.datetime) -> None:
        return None

    def __str__(self) -> str:
        return f"never ({self.expr!r} has no fire time within {HORIZON_YEARS} years)"


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
        halves = [{"day": dom}, {"day_of_week": days}]
    else:
        halves = [{"day": dom, "day_of_week": days}]
    times = {"minute": minute, "hour": hour, "month": month}
    now = dt.datetime.now(zone)
    firing = [
        CronTrigger(**times, **half, **bounds)
        for half in halves
        if _fires_within(CronTrigger(**times, **half, timezone=zone, end_date=now + _HORIZON), now)
    ]
    if not firing:
        return NeverFires(expr)
    return firing[0] if len(firing) == 1 else OrTrigger(firing)


def _fires_within(probe: CronTrigger, now: dt.datetime) -> bool:
    """Whether `probe` (its end date the horizon) fires before its end: a bounded search."""
    return probe.get_next_fire_time(None, now) is not None


def never_fires(trigger: BaseTrigger) -> bool:
    return isinstance(trigger, NeverFires)
