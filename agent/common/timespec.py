"""Durations (`24h`, `90m`, `7d`, `1h30m`) and points in time (ISO 8601 or epoch seconds)."""

from __future__ import annotations

import datetime as dt
import math
import re

from .errors import InvalidTime

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d+)?)([smhdw]))+")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in `text`: `0`, `45s`, `90m`, `24h`, `7d`, `2w` or a sum such as `1h30m`."""
    value = text.strip().lower()
    if value == "0":
        return 0.0
    if not _DURATION_RE.fullmatch(value):
        raise InvalidTime(f"duration {text!r} is not like 90s, 30m, 24h, 7d or 1h30m")
    return sum(float(n) * _UNITS[unit] for n, unit in _PART_RE.findall(value))


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 time with a UTC offset (`2027-01-31T12:00:00Z`) or of a number."""
    value = text.strip()
    try:
        epoch = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(epoch) or epoch < 0:
            raise InvalidTime(f"time {text!r} is not a valid epoch second count")
        return epoch
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidTime(
            f"time {text!r} is neither ISO 8601 (2027-01-31T12:00:00Z) nor epoch seconds"
        ) from None
    if when.tzinfo is None:
        raise InvalidTime(f"time {text!r} has no UTC offset: end it with Z or +HH:MM")
    return when.timestamp()


def format_time(epoch: float | None) -> str:
    """`2027-01-31T12:00:00Z`, or `-` for no time."""
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
