"""The task body of PROTOCOL 4 as a value object, and check 4 (fields and types).

`Task.from_body` accepts exactly what the table allows and names the field it refuses,
checking fields in the table's order. Unknown extra fields are kept in `extra` and
otherwise ignored: the protocol grows by new optional fields. A time may be sent as an
int as well as a float (small devices often have no float encoder).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import BodyError
from .topics import ID_PATTERN, ID_RE, is_valid_id

NONCE_MIN, NONCE_MAX = 8, 32
PRIORITY_MIN, PRIORITY_MAX, DEFAULT_PRIORITY = 0, 9, 5
DEFAULT_TIMEOUT_S = 30.0
MAX_RETRIES_LIMIT, DEFAULT_MAX_RETRIES = 10, 2
MIN_EVERY_S = 1.0
MAX_CRON_LENGTH = 256
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
# IANA names: letters, digits, _ + - in /-separated parts, e.g. America/Argentina/Buenos_Aires.
_TZ_NAME = re.compile(r"[A-Za-z0-9_+-]{1,32}(?:/[A-Za-z0-9_+-]{1,32}){0,3}")


def _number(value: object, name: str, *, required: bool = False) -> float | None:
    if value is None:
        if required:
            raise BodyError(f"'{name}' is required (a float, seconds since the epoch)", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BodyError(f"'{name}' must be a number, got {type(value).__name__}", field=name)
    if not math.isfinite(value):
        raise BodyError(f"'{name}' must be finite", field=name)
    return float(value)


def _integer(value: object, name: str, lo: int, hi: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BodyError(f"'{name}' must be an integer, got {type(value).__name__}", field=name)
    if not lo <= value <= hi:
        raise BodyError(f"'{name}' must be between {lo} and {hi}, got {value}", field=name)
    return value


def _string(value: object, name: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise BodyError(f"'{name}' is required (a string)", field=name)
        return None
    if not isinstance(value, str):
        raise BodyError(f"'{name}' must be a string, got {type(value).__name__}", field=name)
    return value


def check_cron(expr: str, tz: str | None) -> None:
    """A 5-field crontab expression (cron(8)'s meaning: 0 and 7 are Sunday) in a known time zone,
    with a fire time within the next `crontab.HORIZON_YEARS` (5) years: `0 0 31 4,6,9,11 *` is
    refused. The search for it is bounded by that horizon (well under a millisecond)."""
    if len(expr) > MAX_CRON_LENGTH or len(expr.split()) != 5:
        raise BodyError(
            f"'cron' must be 5 fields (minute hour day month day_of_week) in {MAX_CRON_LENGTH} characters",
            field="cron",
        )
    from .crontab import HORIZON_YEARS, cron_trigger, never_fires  # deferred: only recurring tasks pay

    try:
        trigger = cron_trigger(expr, tz or "UTC")
    except Exception as exc:  # a third-party parser: whatever it raises, the expression is invalid
        raise BodyError(f"'cron' is not a valid expression: {exc}", field="cron") from None
    if never_fires(trigger):
        raise BodyError(
            f"'cron' {expr!r} has no fire time within the next {HORIZON_YEARS} years",
            field="cron",
        )


def check_timezone(tz: str) -> None:
    """An IANA time zone this machine knows; the name is checked before any file is opened."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not _TZ_NAME.fullmatch(tz):
        raise BodyError(f"'tz' {tz[:64]!r} is not an IANA time zone name", field="tz")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BodyError(f"'tz' {tz!r} is not an IANA time zone", field="tz") from None


def _required(body: dict[Any, Any]) -> dict[str, Any]:
    """The seven required fields; the common case (exact wire types) in one test."""
    get = body.get
    task_id, kernel, params, target = get("id"), get("kernel"), get("params"), get("target")
    issued_at, expires_at, nonce = get("issued_at"), get("expires_at"), get("nonce")
    if (
        type(task_id) is str
        and type(kernel) is str
        and type(params) is dict
        and type(target) is str
        and type(issued_at) is float
        and type(expires_at) is float
        and type(nonce) is bytes
        and issued_at - issued_at == 0.0  # finite: inf - inf and nan - nan are nan
        and expires_at - expires_at == 0.0
        and NONCE_MIN <= len(nonce) <= NONCE_MAX
        and ID_RE.fullmatch(task_id)
    ):
        pass
    else:
        task_id, kernel, params, target, issued_at, expires_at, nonce = _required_checked(body)
    return {
        "id": task_id,
        "kernel": kernel,
        "params": params,
        "target": target,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "nonce": nonce,
    }


def _required_checked(body: dict[Any, Any]) -> tuple[Any, ...]:
    """The seven required fields, one by one in the table's order, naming the first bad one."""
    task_id = body.get("id")
    if not is_valid_id(task_id):
        raise BodyError(f"'id' must be a string matching {ID_PATTERN}", field="id")
    kernel = _string(body.get("kernel"), "kernel", required=True)
    params = body.get("params")
    if not isinstance(params, dict):
        raise BodyError("'params' is required (a map, may be empty)", field="params")
    target = _string(body.get("target"), "target", required=True)
    issued_at = _number(body.get("issued_at"), "issued_at", required=True)
    expires_at = _number(body.get("expires_at"), "expires_at", required=True)
    nonce = body.get("nonce")
    if not isinstance(nonce, bytes) or not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise BodyError(f"'nonce' is required: {NONCE_MIN} to {NONCE_MAX} bytes (bin)", field="nonce")
    return task_id, kernel, params, target, issued_at, expires_at, nonce


def _priority(value: object) -> int:
    return _integer(value, "priority", PRIORITY_MIN, PRIORITY_MAX, DEFAULT_PRIORITY)


def _timeout_s(value: object) -> float | None:
    timeout_s = _number(value, "timeout_s")
    if timeout_s is not None and timeout_s <= 0:
        raise BodyError("'timeout_s' must be > 0", field="timeout_s")
    return timeout_s


def _max_retries(value: object) -> int:
    return _integer(value, "max_retries", 0, MAX_RETRIES_LIMIT, DEFAULT_MAX_RETRIES)


def _every_s(value: object) -> float | None:
    every_s = _number(value, "every_s")
    if every_s is not None and every_s < MIN_EVERY_S:
        raise BodyError(f"'every_s' must be >= {MIN_EVERY_S:g}", field="every_s")
    return every_s


def _cron(value: object) -> str | None:
    cron = _string(value, "cron")
    if cron is not None:
        check_cron(cron, None)  # the syntax; the zone is the next field's check
    return cron


def _tz(value: object) -> str | None:
    tz = _string(value, "tz")
    if tz is not None:
        check_timezone(tz)
    return tz


def _trace(value: object) -> str | None:
    trace = _string(value, "trace")
    if trace is not None and not _TRACEPARENT.fullmatch(trace):
        raise BodyError("'trace' must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)", field="trace")
    return trace


def _reply(value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise BodyError(f"'reply' must be true or false, got {type(value).__name__}", field="reply")
    return value or None  # false is the default: stored and compared as absent


def _time(name: str) -> Callable[[object], float | None]:
    return lambda value: _number(value, name)


#: The optional fields in the table's order, each with its check (None stays "absent").
_OPTIONAL: dict[str, Callable[[object], Any]] = {
    "priority": _priority,
    "timeout_s": _timeout_s,
    "max_retries": _max_retries,
    "run_at": _time("run_at"),
    "every_s": _every_s,
    "cron": _cron,
    "tz": _tz,
    "until": _time("until"),
    "trace": _trace,
    "reply": _reply,
}


_ORDER = {name: i for i, name in enumerate(_OPTIONAL)}
#: The optional fields of PROTOCOL 4, in the table's order (clients offer each one).
OPTIONAL_FIELDS = tuple(_OPTIONAL)


def _optional(body: dict[Any, Any], present: set[str]) -> dict[str, Any]:
    """The optional fields `present` in the body, checked in the table's order; nil counts as absent."""
    out: dict[str, Any] = {}
    for name in sorted(present, key=_ORDER.__getitem__):
        value = _OPTIONAL[name](body[name])
        if value is not None:
            out[name] = value
    if "cron" in out and "every_s" in out:
        raise BodyError("give either 'every_s' or 'cron', not both", field="cron")
    return out


@dataclass(frozen=True)
class Task:
    """A task body that passed check 4."""

    id: str
    kernel: str
    params: dict[str, Any]
    target: str
    issued_at: float
    expires_at: float
    nonce: bytes
    priority: int = DEFAULT_PRIORITY
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    run_at: float | None = None
    every_s: float | None = None
    cron: str | None = None
    tz: str | None = None
    until: float | None = None
    trace: str | None = None
    reply: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def recurring(self) -> bool:
        return self.every_s is not None or self.cron is not None

    @staticmethod
    def readable_id(body: object) -> str | None:
        """The `id` of a body if it is readable, so a failing body can still be answered."""
        if isinstance(body, dict):
            task_id = body.get("id")
            if is_valid_id(task_id):
                return task_id
        return None

    @classmethod
    def from_body(cls, body: object) -> Task:
        """Check 4: required fields present and of the right types, optional ones in range."""
        if not isinstance(body, dict):
            raise BodyError("the task body must be a map", field="body")
        values = _required(body)
        values["extra"] = {}
        others = len(body) - len(_REQUIRED_NAMES)
        if others:
            present = body.keys() & _ORDER.keys()
            if present:
                values.update(_optional(body, present))
            if others > len(present):
                values["extra"] = {k: v for k, v in body.items() if k not in _FIELD_NAMES}
        # Filling __dict__ skips the frozen dataclass's per-field object.__setattr__, which costs
        # more than all the checks above. An optional field left out reads as its default, the
        # class attribute dataclass keeps for it.
        task = object.__new__(cls)
        task.__dict__.update(values)
        return task

    def to_body(self) -> dict[str, Any]:
        """The wire map: required fields always, optional ones only when set."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if v is not None and v is not False}
        out.update(self.extra)
        return out


_FIELD_NAMES = frozenset(f for f in Task.__dataclass_fields__ if f != "extra")
_REQUIRED_NAMES = ("id", "kernel", "params", "target", "issued_at", "expires_at", "nonce")
assert {*_REQUIRED_NAMES, *_OPTIONAL} == _FIELD_NAMES, "the checks must cover every field of Task"
