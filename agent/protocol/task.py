"""The task body of PROTOCOL 4 as a value object, and check 4 (fields and types).

`Task.from_body` accepts exactly what the table allows and names the field it refuses.
Unknown extra fields are ignored: the protocol grows by new optional fields.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import BodyError
from .topics import ID_PATTERN, is_valid_id

NONCE_MIN, NONCE_MAX = 8, 32
PRIORITY_MIN, PRIORITY_MAX, DEFAULT_PRIORITY = 0, 9, 5
DEFAULT_TIMEOUT_S = 30.0
MAX_RETRIES_LIMIT, DEFAULT_MAX_RETRIES = 10, 2
MIN_EVERY_S = 1.0
MAX_KERNEL_NAME = 64
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _number(body: dict[str, Any], name: str, *, required: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BodyError(f"'{name}' is required (a float, seconds since the epoch)", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BodyError(f"'{name}' must be a number, got {type(value).__name__}", field=name)
    if not math.isfinite(value):
        raise BodyError(f"'{name}' must be finite", field=name)
    return float(value)


def _integer(body: dict[str, Any], name: str, lo: int, hi: int, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BodyError(f"'{name}' must be an integer", field=name)
    if not lo <= value <= hi:
        raise BodyError(f"'{name}' must be between {lo} and {hi}, got {value}", field=name)
    return value


def _string(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BodyError(f"'{name}' is required (a string)", field=name)
        return None
    if not isinstance(value, str):
        raise BodyError(f"'{name}' must be a string, got {type(value).__name__}", field=name)
    return value


def check_cron(expr: str, tz: str | None) -> None:
    """A 5-field cron expression APScheduler can run, in a known time zone."""
    if len(expr.split()) != 5:
        raise BodyError("'cron' must have 5 fields: minute hour day month day_of_week", field="cron")
    from apscheduler.triggers.cron import CronTrigger  # deferred: only recurring tasks pay for it

    try:
        CronTrigger.from_crontab(expr, timezone=tz or "UTC")
    except (ValueError, KeyError) as exc:
        raise BodyError(f"'cron' is not a valid expression: {exc}", field="cron") from None


def check_timezone(tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BodyError(f"'tz' {tz!r} is not an IANA time zone", field="tz") from None


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
        task_id = body.get("id")
        if not is_valid_id(task_id):
            raise BodyError(f"'id' must be a string matching {ID_PATTERN}", field="id")
        kernel = _string(body, "kernel", required=True)
        assert kernel is not None
        if not kernel or len(kernel) > MAX_KERNEL_NAME:
            raise BodyError(f"'kernel' must be 1 to {MAX_KERNEL_NAME} characters", field="kernel")
        params = body.get("params")
        if not isinstance(params, dict):
            raise BodyError("'params' is required (a map, may be empty)", field="params")
        target = _string(body, "target", required=True)
        nonce = body.get("nonce")
        if not isinstance(nonce, bytes) or not NONCE_MIN <= len(nonce) <= NONCE_MAX:
            raise BodyError(f"'nonce' must be {NONCE_MIN} to {NONCE_MAX} bytes (bin)", field="nonce")
        timeout_s = _number(body, "timeout_s")
        if timeout_s is not None and timeout_s <= 0:
            raise BodyError("'timeout_s' must be > 0", field="timeout_s")
        every_s = _number(body, "every_s")
        if every_s is not None and every_s < MIN_EVERY_S:
            raise BodyError(f"'every_s' must be >= {MIN_EVERY_S:g}", field="every_s")
        cron, tz = _string(body, "cron"), _string(body, "tz")
        if cron is not None and every_s is not None:
            raise BodyError("give either 'every_s' or 'cron', not both", field="cron")
        if tz is not None:
            check_timezone(tz)
        if cron is not None:
            check_cron(cron, tz)
        trace = _string(body, "trace")
        if trace is not None and not _TRACEPARENT.fullmatch(trace):
            raise BodyError("'trace' must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)", field="trace")
        known = _FIELD_NAMES
        return cls(
            id=task_id,
            kernel=kernel,
            params=params,
            target=target,  # type: ignore[arg-type]
            issued_at=_number(body, "issued_at", required=True),  # type: ignore[arg-type]
            expires_at=_number(body, "expires_at", required=True),  # type: ignore[arg-type]
            nonce=nonce,
            priority=_integer(body, "priority", PRIORITY_MIN, PRIORITY_MAX, DEFAULT_PRIORITY),
            timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
            max_retries=_integer(body, "max_retries", 0, MAX_RETRIES_LIMIT, DEFAULT_MAX_RETRIES),
            run_at=_number(body, "run_at"),
            every_s=every_s,
            cron=cron,
            tz=tz,
            until=_number(body, "until"),
            trace=trace,
            extra={k: v for k, v in body.items() if k not in known},
        )

    def to_body(self) -> dict[str, Any]:
        """The wire map: required fields always, optional ones only when set."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if v is not None}
        out.update(self.extra)
        return out


_FIELD_NAMES = frozenset(f for f in Task.__dataclass_fields__ if f != "extra")
