"""The params of each kernel of PROTOCOL 9: one argument class per kernel and its validator.

Where the size of a kernel's output follows from its params (every kernel but `stats`, whose output
is a few numbers, and `zscore_anomalies`, whose `indices` depend on the data), the validator also
checks that the output fits in `Limits.max_output_bytes` (PROTOCOL 6: check 8 refuses what could
never be published); the agent ends an output that is still too large `result_too_large`.

The argument classes are slotted dataclasses, not frozen ones: building one is on every call's
path and a frozen dataclass costs twice as much. Treat them as read-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from native.errors import InvalidParams
from native.signatures import SIGNATURES
from native.validation import (
    FloatArray,
    Limits,
    Params,
    array,
    check_fields,
    integer,
    interval,
    output_fits,
    positive,
)

# The params each kernel accepts, as signatures.py declares them; any other key is invalid_params
# (a typo must not pass silently).
MATRIX_MULTIPLY_FIELDS = SIGNATURES["matrix_multiply"].names
FIR_FILTER_FIELDS = SIGNATURES["fir_filter"].names
MOVING_AVERAGE_FIELDS = SIGNATURES["moving_average"].names
STATS_FIELDS = SIGNATURES["stats"].names
FFT_MAGNITUDE_FIELDS = SIGNATURES["fft_magnitude"].names
ZSCORE_ANOMALIES_FIELDS = SIGNATURES["zscore_anomalies"].names
CONV2D_FIELDS = SIGNATURES["conv2d"].names
HISTOGRAM_FIELDS = SIGNATURES["histogram"].names


@dataclass(slots=True)
class MatmulArgs:
    a: FloatArray
    b: FloatArray


@dataclass(slots=True)
class FirArgs:
    signal: FloatArray
    taps: FloatArray


@dataclass(slots=True)
class WindowArgs:
    signal: FloatArray
    window: int


@dataclass(slots=True)
class SignalArgs:
    signal: FloatArray


@dataclass(slots=True)
class FftArgs:
    signal: FloatArray
    spacing: float  # seconds per sample: 1 / sample_rate, or 1.0 (cycles per sample)


@dataclass(slots=True)
class ZscoreArgs:
    signal: FloatArray
    threshold: float


@dataclass(slots=True)
class Conv2dArgs:
    image: FloatArray
    kernel: FloatArray


@dataclass(slots=True)
class HistogramArgs:
    signal: FloatArray
    bins: int
    range: tuple[float, float] | None


def _signal(params: Params, limits: Limits, at_least: int) -> FloatArray:
    """`signal` with at least `at_least` samples (kernels that need one call `array` directly:
    a call less on every kernel call's path)."""
    signal = array(params, "signal", 1, limits)
    if signal.size < at_least:
        raise InvalidParams(f"needs at least {at_least} samples, got {signal.size}", field="signal")
    return signal


def _dims(m: FloatArray, field: str, limit: int) -> None:
    rows, cols = m.shape
    if rows > limit or cols > limit:
        raise InvalidParams(f"shape {m.shape} exceeds the limit of {limit} rows or columns", field=field)


def matrix_multiply(params: Params, limits: Limits) -> MatmulArgs:
    check_fields(params, MATRIX_MULTIPLY_FIELDS)
    a = array(params, "matrix_a", 2, limits)
    b = array(params, "matrix_b", 2, limits)
    _dims(a, "matrix_a", limits.max_matrix_dim)
    _dims(b, "matrix_b", limits.max_matrix_dim)
    if a.shape[1] != b.shape[0]:
        raise InvalidParams(f"has {b.shape[0]} rows but matrix_a has {a.shape[1]} columns", field="matrix_b")
    rows, cols = a.shape[0], b.shape[1]
    # The operand with the larger share of the m x n output is the one named.
    output_fits(limits, "matrix_a" if rows >= cols else "matrix_b", f"{rows} x {cols}", rows * cols)
    return MatmulArgs(a, b)


def fir_filter(params: Params, limits: Limits) -> FirArgs:
    check_fields(params, FIR_FILTER_FIELDS)
    taps = array(params, "taps", 1, limits)
    if taps.size > limits.max_taps:
        raise InvalidParams(f"has {taps.size} taps, more than the limit {limits.max_taps}", field="taps")
    signal = array(params, "signal", 1, limits)
    output_fits(limits, "signal", f"{signal.size} samples", signal.size)
    return FirArgs(signal, taps)


def moving_average(params: Params, limits: Limits) -> WindowArgs:
    check_fields(params, MOVING_AVERAGE_FIELDS)
    signal = array(params, "signal", 1, limits)
    window = integer(params, "window", 1, signal.size)
    length = signal.size - window + 1
    output_fits(limits, "signal", f"{length} means", length)
    return WindowArgs(signal, window)


def stats(params: Params, limits: Limits) -> SignalArgs:
    check_fields(params, STATS_FIELDS)
    return SignalArgs(array(params, "signal", 1, limits))


def fft_magnitude(params: Params, limits: Limits) -> FftArgs:
    check_fields(params, FFT_MAGNITUDE_FIELDS)
    signal = _signal(params, limits, 2)
    bins = signal.size // 2 + 1
    output_fits(limits, "signal", f"2 x {bins} bins (magnitude and frequency)", 2 * bins, arrays=2)
    if params.get("sample_rate") is None:
        return FftArgs(signal, 1.0)
    spacing = 1.0 / positive(params, "sample_rate", finite=True)
    if not math.isfinite(spacing):
        raise InvalidParams("is too small: 1 / sample_rate overflows", field="sample_rate")
    return FftArgs(signal, spacing)


def zscore_anomalies(params: Params, limits: Limits) -> ZscoreArgs:
    check_fields(params, ZSCORE_ANOMALIES_FIELDS)
    return ZscoreArgs(_signal(params, limits, 2), positive(params, "threshold", 3.0))


def conv2d(params: Params, limits: Limits) -> Conv2dArgs:
    check_fields(params, CONV2D_FIELDS)
    image = array(params, "image", 2, limits)
    kernel = array(params, "kernel", 2, limits)
    _dims(kernel, "kernel", limits.max_kernel_dim)
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise InvalidParams(
            f"needs odd numbers of rows and columns, not shape {kernel.shape}", field="kernel"
        )
    rows, cols = image.shape
    output_fits(limits, "image", f"{rows} x {cols}", image.size)
    return Conv2dArgs(image, kernel)


def histogram(params: Params, limits: Limits) -> HistogramArgs:
    check_fields(params, HISTOGRAM_FIELDS)
    signal = array(params, "signal", 1, limits)
    bins = integer(params, "bins", 1, limits.max_bins, default=10)
    output_fits(limits, "bins", f"{bins} counts and {bins + 1} edges", 2 * bins + 1, arrays=2)
    return HistogramArgs(signal, bins, interval(params, "range", limits))
