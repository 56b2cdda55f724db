"""Values for people (arrays summarized: dtype, shape, first values) and for scripts (JSON).

print(describe_result(result))            # node-1 t-1 stats completed (run 1, attempt 1) 0.12 ms ...
json.dumps(jsonable(result.to_body()))    # arrays as (nested) lists, bytes as hex
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np

from agent.protocol import Result

PREVIEW = 6  # array values shown without --full


def jsonable(value: Any) -> Any:
    """`value` with arrays as lists, numpy scalars as numbers, bytes as hex, tuples as lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """One line of JSON (NaN and infinities as JSON's non-standard literals, as Python writes them)."""
    return json.dumps(jsonable(value), separators=(",", ":"))


def _number(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _scalar(key: str, value: Any) -> str:
    """A leaf for people: times (`*_at` keys) as local date and time, the rest as numbers or text."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key.endswith("_at") and is_number and value > 1e9:
        return dt.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, dict):
        return dumps(value)
    return _number(value)


def describe_array(arr: np.ndarray[Any, Any], full: bool = False) -> str:
    """`float64 (3, 4) [0.1, 0.2, ...]`, or every value with `full`."""
    head = f"{arr.dtype.name} {tuple(arr.shape)}"
    if full:
        with np.printoptions(threshold=arr.size + 1, linewidth=100):
            return f"{head}\n{arr}"
    flat = arr.reshape(-1)
    shown = ", ".join(_number(x) for x in flat[:PREVIEW].tolist())
    more = f", ... ({flat.size - PREVIEW} more)" if flat.size > PREVIEW else ""
    return f"{head} [{shown}{more}]"


def describe_value(value: Any, full: bool = False, indent: str = "  ") -> list[str]:
    """Lines showing `value`: maps one key per line, arrays summarized, lists as arrays."""
    if isinstance(value, dict):
        lines: list[str] = []
        for key, item in value.items():
            if not isinstance(item, (dict, list, np.ndarray)):
                lines.append(f"{indent}{key}: {_scalar(str(key), item)}")
                continue
            inner = describe_value(item, full, indent + "  ")
            if len(inner) == 1 and not isinstance(item, dict):
                lines.append(f"{indent}{key}: {inner[0].strip()}")
            else:
                lines.append(f"{indent}{key}:")
                lines.extend(inner)
        return lines or [f"{indent}{{}}"]
    if isinstance(value, np.ndarray):
        return [indent + line for line in describe_array(value, full).splitlines()]
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return describe_value(np.asarray(value), full, indent)
    if isinstance(value, list):
        shown = value if full or len(value) <= PREVIEW * 2 else value[: PREVIEW * 2]
        lines = [f"{indent}- {_item(v)}" for v in shown] or [f"{indent}[]"]
        if len(shown) < len(value):
            lines.append(f"{indent}- ... ({len(value) - len(shown)} more; --full or --json shows all)")
        return lines
    if isinstance(value, (bytes, bytearray)):
        return [f"{indent}{bytes(value).hex()}"]
    return [f"{indent}{_number(value)}"]


def _item(value: Any) -> str:
    """One list item on one line: a map (a task record of sys.list) as `key value` pairs."""
    if isinstance(value, dict):
        return "  ".join(f"{k} {_scalar(str(k), v)}" for k, v in value.items() if v is not None)
    return dumps(value)


def clock(epoch: float) -> str:
    """Local wall-clock time of day, as people read logs."""
    return dt.datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.3g} ms" if ms < 1000 else f"{ms / 1000:.3g} s"


def error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    code, message = error.get("code", "?"), error.get("message", "")
    return f"{code}: {message}" if message else str(code)


def describe_result(result: Result, full: bool = False) -> str:
    """A heading line, then the output (completed) or the error (otherwise)."""
    head = (
        f"{result.node} {result.id} {result.kernel} {result.status}"
        f" (run {result.run}, attempt {result.attempt}) {duration(result.duration_ms)}"
    )
    if result.status != "completed":
        return f"{head}\n  error: {error_text(result.error)}"
    return "\n".join([head, *describe_value(result.result, full)])


def result_document(result: Result) -> dict[str, Any]:
    """The result as one JSON-ready map (its wire fields, verified)."""
    return {**jsonable(result.to_body()), "verified": True}
