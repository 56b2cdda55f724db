"""`POST /api/v1/compute`: a request body checked the way the agent would check it, then signed.

The body of the original specification is accepted as written:

    {"algorithm": "matrix_multiply", "parameters": {"matrix_a": [[1,2],[3,4]], "matrix_b": [[5,6],[7,8]]},
     "timeout_seconds": 30}

plus the optional `node` | `pool` | `all` (else `tasks.default_target`), `priority`, `max_retries`,
`run_at`, `every_s`, `cron`, `tz`, `until`, `trace` (or the W3C `traceparent` header) and
`task_id`. As JSON, or as MessagePack (`application/msgpack`) where arrays may be ndarray ext 1.

The parameters go through the same kernel checks the agent runs at check 8 (`native.registry`'s
specs, default limits), and the task through check 4 (`Task.from_body`), so a request the fleet
would refuse is refused here with `422` and the field named, and never reaches an agent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.protocol import BodyError, Signer, Task, Topics, build_task, sign_task
from agent.protocol.topics import is_valid_id
from native.errors import InvalidParams
from native.registry import SPECS
from native.validation import Limits

from .errors import ApiError

#: The kernels a client may ask for (never a `sys.*` command: those are the admin routes').
VALIDATORS: dict[str, Callable[[Any, Limits], Any]] = {spec.name: spec.validate for spec in SPECS}
#: `GET /api/v1/kernels`: the same kernels with their params as native/signatures.py declares them
#: (tested against the validators above, so the form a client builds from it passes them).
KERNELS: dict[str, Any] = {
    "kernels": [
        {"name": s.name, "doc": s.signature.doc, "params": [p.view() for p in s.signature.params]}
        for s in SPECS
    ]
}
_LIMITS = Limits()
_OPTIONAL = ("priority", "max_retries", "run_at", "every_s", "cron", "tz", "until", "trace")
_KNOWN = {"algorithm", "parameters", "timeout_seconds", "node", "pool", "all", "task_id", *_OPTIONAL}


@dataclass(frozen=True)
class Signed:
    task: Task
    topic: str
    payload: bytes


def _unprocessable(code: str, message: str, field: str) -> ApiError:
    return ApiError(422, code, message, field=field)


def target_of(body: Mapping[str, Any], default: str | None) -> str:
    chosen = [k for k in ("node", "pool", "all") if body.get(k) not in (None, False)]
    if len(chosen) > 1:
        raise _unprocessable(
            "invalid_target", f"give one of node, pool or all, not {' and '.join(chosen)}", chosen[1]
        )
    if not chosen:
        if default is None:
            raise _unprocessable(
                "no_target", "give node, pool or all (this gateway has no default target)", "node"
            )
        return default
    key = chosen[0]
    if key == "all":
        if body["all"] is not True:
            raise _unprocessable("invalid_target", "'all' must be true", "all")
        return "all"
    value = body[key]
    if not is_valid_id(value) or value == "all":
        raise _unprocessable("invalid_target", f"'{key}' must match [A-Za-z0-9_.:-]{{1,64}}", key)
    return f"pool:{value}" if key == "pool" else str(value)


def check_request(
    body: object, default_target: str | None
) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """(kernel, params, target, optional fields) of a request body; ApiError 400/422 naming the field."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON (or MessagePack) object")
    unknown = sorted(str(k) for k in body if k not in _KNOWN)
    if unknown:
        raise _unprocessable("unknown_field", f"unknown field {unknown[0]!r}", unknown[0])
    kernel = body.get("algorithm")
    if not isinstance(kernel, str):
        raise _unprocessable("invalid_field", "'algorithm' is required: a kernel name", "algorithm")
    validate = VALIDATORS.get(kernel)
    if validate is None:
        names = ", ".join(sorted(VALIDATORS))
        raise _unprocessable(
            "unknown_kernel", f"unknown algorithm {kernel!r}; the kernels are {names}", "algorithm"
        )
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        raise _unprocessable("invalid_field", "'parameters' must be an object", "parameters")
    try:
        validate(params, _LIMITS)
    except InvalidParams as exc:
        where = f"parameters.{exc.field}" if exc.field else "parameters"
        raise _unprocessable("invalid_params", f"{where}: {exc.message}", where) from None
    options = {k: body[k] for k in _OPTIONAL if body.get(k) is not None}
    if body.get("timeout_seconds") is not None:
        options["timeout_s"] = body["timeout_seconds"]
    return kernel, params, target_of(body, default_target), options


def sign_request(
    body: object,
    *,
    signer: Signer,
    topics: Topics,
    default_target: str | None,
    ttl_s: float,
    traceparent: str | None = None,
) -> Signed:
    """The signed task of a request, ready to record and publish."""
    kernel, params, target, options = check_request(body, default_target)
    if traceparent is not None and "trace" not in options:
        options["trace"] = traceparent
    task_id = body.get("task_id") if isinstance(body, dict) else None
    if task_id is not None and not is_valid_id(task_id):
        raise _unprocessable("invalid_field", "'task_id' must match [A-Za-z0-9_.:-]{1,64}", "task_id")
    try:
        task = build_task(kernel, params, target, task_id=task_id, ttl_s=ttl_s, **options)
    except BodyError as exc:
        name = "timeout_seconds" if exc.field == "timeout_s" else exc.field
        raise _unprocessable(
            "invalid_field", exc.message.replace("'timeout_s'", "'timeout_seconds'"), name
        ) from None
    return Signed(task, topics.for_target(target), sign_task(task, signer))
