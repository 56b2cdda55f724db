"""Conversion and checking of kernel params: every failure is InvalidParams naming the field.

Arrays arrive as numpy arrays (often read-only, from numpy.frombuffer) or as nested lists of
numbers; both are converted once to C-contiguous, aligned float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from numbers import Integral, Real

import numpy as np
import numpy.typing as npt

from native.errors import InvalidParams

FloatArray = npt.NDArray[np.float64]
Params = Mapping[str, object]

_NUMERIC_KINDS = frozenset("iuf")
_FLOAT64 = np.dtype(np.float64)


@dataclass(frozen=True)
class Limits:
    """Size limits of kernel inputs; the defaults suit a Raspberry Pi class board."""

    max_elements: int = 1 << 22  # per array: 4,194,304 float64 = 32 MiB
    max_matrix_dim: int = 2048  # rows or columns of a matrix_multiply operand
    max_taps: int = 4096  # fir_filter taps
    max_kernel_dim: int = 63  # rows or columns of a conv2d kernel
    max_bins: int = 65536  # histogram bins (PROTOCOL 9 allows up to 65536)
    #: Bytes the kernel's output may take in a result, estimated by `output_fits` (None: no limit).
    #: The agent sets it from its maximum payload (PROTOCOL 6: a result envelope must fit in it),
    #: so that check 8 refuses params whose output could never be published.
    max_output_bytes: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "max_output_bytes":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{f.name} must be an int >= 1, not {value!r}")


#: What an output costs in a result, by PROTOCOL 2's encoding of arrays (ext type 1 of
#: `[dtype, shape, data]`): 8 bytes per element (float64, or int64 for indices and counts), and per
#: array at most 64 bytes more: the ext32 header (6), the list header (1), the dtype string (4), a
#: shape of up to 2 dimensions as uint64 (19), the bin32 header of the data (5), and its key when the
#: output is a map (up to 12): 47, rounded up.
ENCODED_ELEMENT_BYTES = 8
ENCODED_ARRAY_OVERHEAD = 64


def output_bytes(elements: int, arrays: int = 1) -> int:
    """An upper bound of the encoded size of `arrays` arrays holding `elements` elements in all."""
    return ENCODED_ELEMENT_BYTES * elements + ENCODED_ARRAY_OVERHEAD * arrays


def output_fits(limits: Limits, field: str, shape: str, elements: int, arrays: int = 1) -> None:
    """The output the params promise (`shape`, for the message) fits in `limits.max_output_bytes`;
    else InvalidParams naming `field`, the param that makes it that large."""
    limit = limits.max_output_bytes
    if limit is None:
        return
    size = output_bytes(elements, arrays)
    if size > limit:
        raise InvalidParams(
            f"gives a result of {shape} ({size:,} bytes encoded), more than the {limit:,} bytes "
            "a result may carry (the agent's maximum payload less the result's other fields)",
            field=field,
        )


def check_fields(params: Params, allowed: frozenset[str]) -> None:
    """params is a map whose keys are all among `allowed`."""
    if type(params) is dict and allowed.issuperset(params):  # the common case, inline and cheapest
        return
    if not isinstance(params, Mapping):
        raise InvalidParams(f"must be a map, not {type(params).__name__}", field="params")
    if not allowed.issuperset(params):
        unexpected = sorted(str(key) for key in params if key not in allowed)
        raise InvalidParams(f"unexpected field (expected {', '.join(sorted(allowed))})", field=unexpected[0])


def _numeric(value: object, field: str, limits: Limits) -> np.ndarray:
    if isinstance(value, np.ndarray):
        arr = value
    elif isinstance(value, (list, tuple)):
        if len(value) > limits.max_elements:
            raise InvalidParams(f"has more than {limits.max_elements} elements", field=field)
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InvalidParams("must be a list of numbers with a regular shape", field=field) from exc
    else:
        raise InvalidParams(f"must be an array or a list of numbers, not {type(value).__name__}", field=field)
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise InvalidParams(f"must hold numbers only (got {arr.dtype})", field=field)
    return arr


def array(params: Params, field: str, ndim: int, limits: Limits) -> FloatArray:
    """The required array `field` with `ndim` dimensions, at least one element, within the limits."""
    value = params.get(field)
    if value is None:
        raise InvalidParams("is required", field=field)
    if (  # the common case: a C-contiguous float64 array, used as is (inline: on every call's path)
        type(value) is np.ndarray
        and value.dtype == _FLOAT64
        and value.ndim == ndim
        and value.flags.c_contiguous
        and value.flags.aligned  # an ext array's data is wherever msgpack put it (see below)
    ):
        if not 0 < value.size <= limits.max_elements:
            _size_error(value, field, limits)
        return value
    arr = _numeric(value, field, limits)
    if arr.ndim != ndim:
        raise InvalidParams(f"must have {ndim} dimension(s), got shape {arr.shape}", field=field)
    if not 0 < arr.size <= limits.max_elements:
        _size_error(arr, field, limits)
    # Aligned too, copying if need be: numpy.frombuffer over a decoded ext array gives a view at any
    # byte offset, and C++ may not read a double there. On armhf the kernels' VFP/NEON loads of an
    # unaligned double fault: the worker died of SIGBUS on an emulated board (tests/boards).
    return np.require(arr, np.float64, ("C_CONTIGUOUS", "ALIGNED"))


def _size_error(arr: np.ndarray, field: str, limits: Limits) -> None:
    if arr.size == 0:
        raise InvalidParams(f"must not be empty (shape {arr.shape})", field=field)
    raise InvalidParams(f"has {arr.size} elements, more than the limit {limits.max_elements}", field=field)


def integer(params: Params, field: str, lo: int, hi: int, default: int | None = None) -> int:
    """The int `field` (a float with an integral value is accepted), lo <= value <= hi."""
    value = params.get(field, default)
    if type(value) is int:  # the common case, without the slower ABC checks below
        number = value
    elif value is None:
        raise InvalidParams("is required", field=field)
    elif isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidParams(f"must be an integer, not {type(value).__name__}", field=field)
    elif isinstance(value, Integral):
        number = int(value)
    else:
        as_float = float(value)
        if not (math.isfinite(as_float) and as_float.is_integer()):
            raise InvalidParams(f"must be an integer, not {value!r}", field=field)
        number = int(as_float)
    if not lo <= number <= hi:
        raise InvalidParams(f"must be between {lo} and {hi}, not {number}", field=field)
    return number


def real(params: Params, field: str, default: float | None = None) -> float:
    """The real number `field` (NaN and infinity pass: callers bound them)."""
    value = params.get(field, default)
    if type(value) is float or type(value) is int:  # the common cases first
        return float(value)
    if value is None:
        raise InvalidParams("is required", field=field)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidParams(f"must be a number, not {type(value).__name__}", field=field)
    return float(value)


def positive(params: Params, field: str, default: float | None = None, *, finite: bool = False) -> float:
    """A number > 0 (and finite if asked)."""
    value = real(params, field, default)
    if not value > 0 or (finite and math.isinf(value)):
        raise InvalidParams(f"must be {'finite and ' if finite else ''}> 0, not {value!r}", field=field)
    return value


def interval(params: Params, field: str, limits: Limits) -> tuple[float, float] | None:
    """An optional [lo, hi] of finite numbers with lo <= hi."""
    if params.get(field) is None:
        return None
    value = _numeric(params[field], field, limits)
    if value.shape != (2,):
        raise InvalidParams(f"must be [lo, hi], got shape {value.shape}", field=field)
    lo, hi = (float(v) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InvalidParams(f"must be finite, got [{lo}, {hi}]", field=field)
    if lo > hi:
        raise InvalidParams(f"max must be larger than min, got [{lo}, {hi}]", field=field)
    if not math.isfinite(hi - lo):
        raise InvalidParams(f"is too wide: {hi} - {lo} overflows", field=field)
    return lo, hi
