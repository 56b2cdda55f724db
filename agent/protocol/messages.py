"""The bodies an agent publishes (PROTOCOL 5 to 7), as value objects with validation.

Each class has `to_body()` for the agent and `from_body()` for clients, which checks the
fields a consumer relies on and keeps unknown ones in `extra` (newer agents may add some).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from .errors import BodyError

RESULT_STATUSES = frozenset({"completed", "abandoned", "expired", "cancelled", "rejected"})
EVENT_STATUSES = frozenset(
    {
        "submitted",
        "queued",
        "scheduled",
        "running",
        "completed",
        "failed",
        "retrying",
        "abandoned",
        "expired",
        "cancelled",
        "rejected",
    }
)
FAILURE_CODES = frozenset({"kernel_error", "timeout", "worker_crashed", "out_of_memory", "cancelled"})

M = TypeVar("M", bound="_Message")

_CHECKS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "map": (dict,),
    "list": (list,),
    "bool": (bool,),
    "digest": (bytes, str),  # sha256 as bin or hex text
    "any": (object,),
}


@dataclass(frozen=True)
class _Message:
    """Shared from_body/to_body; subclasses declare `_types` for the fields they require."""

    _types: ClassVar[dict[str, str]] = {}
    _optional: ClassVar[frozenset[str]] = frozenset()
    #: Optional fields sent as nil rather than left out when unset (PROTOCOL 7: "null if it never ran").
    _nullable: ClassVar[frozenset[str]] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, kw_only=True)

    @classmethod
    def from_body(cls: type[M], body: object) -> M:
        name = cls.__name__.lower()
        if not isinstance(body, dict):
            raise BodyError(f"a {name} body must be a map", field="body")
        values: dict[str, Any] = {}
        for fname, kind in cls._types.items():
            value = body.get(fname)
            if value is None:
                if fname in cls._optional:
                    values[fname] = None
                    continue
                raise BodyError(f"{name}: '{fname}' is required", field=fname)
            if (isinstance(value, bool) and kind not in ("bool", "any")) or not isinstance(
                value, _CHECKS[kind]
            ):
                raise BodyError(f"{name}: '{fname}' must be a {kind}", field=fname)
            values[fname] = float(value) if kind == "float" else value  # type: ignore[arg-type]
        extra = {k: v for k, v in body.items() if k not in cls._types}
        msg = cls(**values, extra=extra)
        msg._validate()
        return msg

    def _validate(self) -> None:
        """Field relations beyond types; overridden where the protocol has them."""

    def to_body(self) -> dict[str, Any]:
        """The wire map: unset optional fields are left out (or nil where the protocol says null)."""
        out = {
            f.name: value
            for f in fields(self)
            if f.name != "extra"
            and (
                (value := getattr(self, f.name)) is not None
                or f.name not in self._optional
                or f.name in self._nullable
            )
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Result(_Message):
    """A task's terminal outcome: one per run (PROTOCOL 7)."""

    id: str
    node: str
    kernel: str
    status: str
    run: int
    attempt: int
    received_at: float
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: float | None = None
    result: Any = None
    error: dict[str, str] | None = None
    trace: str | None = None

    _types: ClassVar[dict[str, str]] = {
        "id": "str",
        "node": "str",
        "kernel": "str",
        "status": "str",
        "run": "int",
        "attempt": "int",
        "received_at": "float",
        "started_at": "float",
        "finished_at": "float",
        "duration_ms": "float",
        "result": "any",
        "error": "map",
        "trace": "str",
    }
    _optional: ClassVar[frozenset[str]] = frozenset(
        {"started_at", "finished_at", "duration_ms", "result", "error", "trace"}
    )
    _nullable: ClassVar[frozenset[str]] = frozenset({"started_at", "finished_at"})

    def _validate(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise BodyError(f"result: unknown status {self.status!r}", field="status")
        if self.status != "completed" and (
            not isinstance(self.error, dict) or not isinstance(self.error.get("code"), str)
        ):
            raise BodyError("result: a non-completed result needs error.code", field="error")
        if self.error is not None and not isinstance(self.error.get("message", ""), str):
            raise BodyError("result: error.message must be a string", field="error")
        if self.run < 1 or self.attempt < 0:
            raise BodyError(
                "result: run must be >= 1 and attempt >= 0", field="run" if self.run < 1 else "attempt"
            )

    @property
    def ok(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True)
class Event(_Message):
    id: str
    node: str
    status: str
    attempt: int
    run: int
    at: float
    code: str | None = None
    message: str | None = None
    trace: str | None = None  # the task's traceparent, when it had one (PROTOCOL 4: copied into events)

    _types: ClassVar[dict[str, str]] = {
        "id": "str",
        "node": "str",
        "status": "str",
        "attempt": "int",
        "run": "int",
        "at": "float",
        "code": "str",
        "message": "str",
        "trace": "str",
    }
    _optional: ClassVar[frozenset[str]] = frozenset({"code", "message", "trace"})

    def _validate(self) -> None:
        if self.status not in EVENT_STATUSES:
            raise BodyError(f"event: unknown status {self.status!r}", field="status")


@dataclass(frozen=True)
class Heartbeat(_Message):
    node: str
    seq: int
    at: float
    uptime_s: float
    state: str
    queued: int
    running: int
    completed_total: int
    abandoned_total: int
    rejected_total: int
    outbox: int
    rss_bytes: int
    cpu_percent: float
    load1: float
    backend: str
    version: str

    _types: ClassVar[dict[str, str]] = {
        "node": "str",
        "seq": "int",
        "at": "float",
        "uptime_s": "float",
        "state": "str",
        "queued": "int",
        "running": "int",
        "completed_total": "int",
        "abandoned_total": "int",
        "rejected_total": "int",
        "outbox": "int",
        "rss_bytes": "int",
        "cpu_percent": "float",
        "load1": "float",
        "backend": "str",
        "version": "str",
    }

    def _validate(self) -> None:
        if self.state not in ("running", "draining"):
            raise BodyError(f"heartbeat: unknown state {self.state!r}", field="state")
        if self.backend not in ("native", "numpy"):
            raise BodyError(f"heartbeat: unknown backend {self.backend!r}", field="backend")


@dataclass(frozen=True)
class Presence(_Message):
    node: str
    state: str
    session: int
    at: float
    version: str
    kernels: list[str]

    _types: ClassVar[dict[str, str]] = {
        "node": "str",
        "state": "str",
        "session": "int",
        "at": "float",
        "version": "str",
        "kernels": "list",
    }

    def _validate(self) -> None:
        if self.state not in ("online", "offline"):
            raise BodyError(f"presence: unknown state {self.state!r}", field="state")
        if not all(isinstance(k, str) for k in self.kernels):
            raise BodyError("presence: kernels must be a list of names", field="kernels")


@dataclass(frozen=True)
class RejectReport(_Message):
    node: str
    topic: str
    code: str
    sha256: bytes | str
    at: float
    kid: str | None = None
    id: str | None = None

    _types: ClassVar[dict[str, str]] = {
        "node": "str",
        "topic": "str",
        "code": "str",
        "sha256": "digest",
        "at": "float",
        "kid": "str",
        "id": "str",
    }
    _optional: ClassVar[frozenset[str]] = frozenset({"kid", "id"})

    def _validate(self) -> None:
        from .errors import REJECT_CODES

        if self.code not in REJECT_CODES:
            raise BodyError(f"rejects: unknown code {self.code!r}", field="code")
