"""Small, JSON-safe pictures of values that may be megabytes: a result for the dashboard's stream
and detail view (`preview`), a task's params for its record (`params_summary`).

    preview(3.5)                          -> 3.5
    preview({"mean": 1.0, "indices": a})  -> {"mean": 1.0, "indices": {<array preview>}}
    preview(numpy.arange(1000.0))         -> {"shape": [1000], "dtype": "float64", "head": [0.0, ... 7.0],
                                              "plot": [64 values evenly spread], "min": 0.0, "max": 999.0}
    params_summary({"signal": [1, 2], "window": 2})
                                          -> {"signal": {"shape": [2], "dtype": "int64"}, "window": 2}

Arrays arrive as numpy arrays (ndarray ext 1, decoded by the protocol library straight over the
message's bytes) or as lists of numbers (a JSON request, a `sys.*` answer). Whatever the size, a
preview holds at most 8 + 64 numbers per array, 20 keys per map, 8 items per list of non-numbers,
200 characters per string, and two levels of nesting; NaN and infinity become null (JSON has none),
and min/max skip them. Costs O(size) only for min/max, in numpy.

Thread rules: pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

HEAD = 8
PLOT = 64
KEYS = 20
ITEMS = 8
TEXT = 200
DEPTH = 2
_NUMERIC = frozenset("biuf")


def preview(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if len(value) <= TEXT else value[:TEXT] + "…"
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": len(value)}
    if isinstance(value, Mapping):
        if depth >= DEPTH:
            return {"keys": len(value)}
        return {str(k): preview(v, depth + 1) for k, v in list(value.items())[:KEYS]}
    if isinstance(value, np.generic):
        return preview(value.item(), depth)
    array = numeric_array(value)
    if array is not None:
        return array_preview(array)
    if isinstance(value, (list, tuple)):
        items = [preview(v, depth + 1) for v in value[:ITEMS]] if depth < DEPTH else []
        return {
            "shape": [len(value)],
            "dtype": "object",
            "head": items,
            "plot": None,
            "min": None,
            "max": None,
        }
    return preview(str(value), depth)


def numeric_array(value: Any) -> np.ndarray | None:
    """`value` as a numeric numpy array (itself when it is one), or None when it is not numbers."""
    if isinstance(value, np.ndarray):
        return value if value.dtype.kind in _NUMERIC else None
    if not isinstance(value, (list, tuple)):
        return None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged, or not numbers
        return None
    return array if array.dtype.kind in _NUMERIC else None


def array_preview(array: np.ndarray) -> dict[str, Any]:
    """Cheap for the common case (a few numpy calls on the whole array: min and max); NaN and
    infinity cost a second pass."""
    flat = array.reshape(-1)
    if flat.dtype.kind == "b":
        flat = flat.astype(np.int8)
    low = high = None
    if flat.size:
        low, high = flat.min(), flat.max()
        finite = flat.dtype.kind != "f" or (math.isfinite(low) and math.isfinite(high))
        if not finite:
            numbers = flat[np.isfinite(flat)]
            low, high = (numbers.min(), numbers.max()) if numbers.size else (None, None)
    plot = flat[_plot_indices(flat.size)] if flat.size > PLOT else flat
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "head": _numbers(flat[:HEAD]),
        "plot": _numbers(plot) if flat.size else None,
        "min": _number(low),
        "max": _number(high),
    }


@lru_cache(maxsize=256)
def _plot_indices(size: int) -> np.ndarray:
    """PLOT indices evenly spread over `size` (first and last included): results of one kernel
    tend to have one size, so this is computed once per size."""
    indices: np.ndarray = np.linspace(0, size - 1, PLOT).round().astype(np.intp)
    indices.flags.writeable = False  # shared by every caller
    return indices


def _numbers(values: np.ndarray) -> list[Any]:
    out: list[Any] = values.tolist()
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return [v if math.isfinite(v) else None for v in out]
    return out


def _number(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def shape_of(value: Any) -> dict[str, Any] | None:
    """{"shape", "dtype"} of an array or a list of numbers; None for anything else."""
    array = numeric_array(value)
    if array is None:
        return None
    return {"shape": list(array.shape), "dtype": str(array.dtype)}


def params_summary(params: Mapping[str, Any]) -> dict[str, Any]:
    """A task's params as its record keeps them: arrays by shape and dtype, scalars as they are."""
    out: dict[str, Any] = {}
    for name, value in list(params.items())[:KEYS]:
        shape = shape_of(value) if isinstance(value, (np.ndarray, list, tuple)) else None
        out[str(name)] = shape if shape is not None else preview(value, DEPTH - 1)
    return out
