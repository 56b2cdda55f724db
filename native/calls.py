"""Native implementations: allocate the outputs, call the C ABI, return numpy arrays and maps.

Each function here binds one kernel to a loaded library and returns the call, which takes
arguments already validated by native.specs. `bind` looks up what every binding needs once, when
the registry is built (the library's function, from_buffer, the per-thread scratch structs, and
the raise of a failed status): the per-call path is a handful of Python operations around the
native call, with no helper call in between (a Python-level call costs ~0.3 us, a tenth of the
trivial kernels' budget). No cffi object is returned.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from native.adapter import check
from native.binding import Binding
from native.specs import (
    Conv2dArgs,
    FftArgs,
    FirArgs,
    HistogramArgs,
    MatmulArgs,
    SignalArgs,
    WindowArgs,
    ZscoreArgs,
)
from native.validation import FloatArray

Map = dict[str, object]


class Bound(NamedTuple):
    fn: Any  # the kernel's C function: fn(..., err) -> status
    buf: Callable[[str, Any], Any]  # ffi.from_buffer
    scratch: Any  # the per-thread output structs (native.binding.Scratch)
    fail: Callable[[int, Any], None]  # raises what a non-zero status and its error struct report


def bind(b: Binding, kernel: str) -> Bound:
    """What the binding of `kernel` needs from the loaded library, looked up once."""

    def fail(status: int, err: Any) -> None:
        check(status, b, err, kernel)

    return Bound(getattr(b.lib, f"ek_{kernel}"), b.ffi.from_buffer, b.scratch, fail)


def matrix_multiply(b: Binding) -> Callable[[MatmulArgs], FloatArray]:
    fn, buf, scratch, fail = bind(b, "matrix_multiply")

    def call(args: MatmulArgs) -> FloatArray:
        (m, k), n = args.a.shape, args.b.shape[1]
        out = np.empty((m, n))
        err = scratch.err
        if status := fn(buf("double[]", args.a), buf("double[]", args.b), buf("double[]", out), m, k, n, err):
            fail(status, err)
        return out

    return call


def fir_filter(b: Binding) -> Callable[[FirArgs], FloatArray]:
    fn, buf, scratch, fail = bind(b, "fir_filter")

    def call(args: FirArgs) -> FloatArray:
        x, taps = args.signal, args.taps
        out = np.empty(x.size)
        err = scratch.err
        status = fn(buf("double[]", x), x.size, buf("double[]", taps), taps.size, buf("double[]", out), err)
        if status:
            fail(status, err)
        return out

    return call


def moving_average(b: Binding) -> Callable[[WindowArgs], FloatArray]:
    fn, buf, scratch, fail = bind(b, "moving_average")

    def call(args: WindowArgs) -> FloatArray:
        x = args.signal
        out = np.empty(x.size - args.window + 1)
        err = scratch.err
        if status := fn(buf("double[]", x), x.size, args.window, buf("double[]", out), err):
            fail(status, err)
        return out

    return call


def stats(b: Binding) -> Callable[[SignalArgs], Map]:
    fn, buf, scratch, fail = bind(b, "stats")
    unpack = _stats_layout(b).unpack_from

    def call(args: SignalArgs) -> Map:
        x = args.signal
        out, raw, err = scratch.stats
        if status := fn(buf("double[]", x), x.size, out, err):
            fail(status, err)
        count, mean, std, lo, hi, rms = unpack(raw)
        return {"count": count, "mean": mean, "std": std, "min": lo, "max": hi, "rms": rms}

    return call


def _stats_layout(b: Binding) -> struct.Struct:
    """ek_stats_result as a struct format, checked against the header's layout once."""
    layout = struct.Struct("=q5d")
    ffi = b.ffi
    names = [name for name, _ in ffi.typeof("ek_stats_result").fields]
    offsets = [ffi.offsetof("ek_stats_result", name) for name in names]
    if names != ["count", "mean", "std", "min", "max", "rms"] or offsets != [0, 8, 16, 24, 32, 40]:
        raise RuntimeError(f"ek_stats_result changed ({names}, {offsets}): update native/calls.py")
    if ffi.sizeof("ek_stats_result") != layout.size:
        raise RuntimeError("ek_stats_result changed size: update native/calls.py")
    return layout


def fft_magnitude(b: Binding) -> Callable[[FftArgs], Map]:
    fn, buf, scratch, fail = bind(b, "fft_magnitude")

    def call(args: FftArgs) -> Map:
        x = args.signal
        magnitude, frequency = np.empty(x.size // 2 + 1), np.empty(x.size // 2 + 1)
        err = scratch.err
        mag, freq = buf("double[]", magnitude), buf("double[]", frequency)
        if status := fn(buf("double[]", x), x.size, args.spacing, mag, freq, err):
            fail(status, err)
        return {"magnitude": magnitude, "frequency": frequency}

    return call


def zscore_anomalies(b: Binding) -> Callable[[ZscoreArgs], Map]:
    fn, buf, scratch, fail = bind(b, "zscore_anomalies")

    def call(args: ZscoreArgs) -> Map:
        x = args.signal
        indices = np.empty(x.size, dtype=np.int64)
        out, err = scratch.zscore, scratch.err
        if status := fn(buf("double[]", x), x.size, args.threshold, buf("int64_t[]", indices), out, err):
            fail(status, err)
        return {"indices": indices[: out.count].copy(), "mean": out.mean, "std": out.std}

    return call


def conv2d(b: Binding) -> Callable[[Conv2dArgs], FloatArray]:
    fn, buf, scratch, fail = bind(b, "conv2d")

    def call(args: Conv2dArgs) -> FloatArray:
        (h, w), (kh, kw) = args.image.shape, args.kernel.shape
        out = np.empty((h, w))
        err = scratch.err
        image, kernel = buf("double[]", args.image), buf("double[]", args.kernel)
        if status := fn(image, h, w, kernel, kh, kw, buf("double[]", out), err):
            fail(status, err)
        return out

    return call


def histogram(b: Binding) -> Callable[[HistogramArgs], Map]:
    fn, buf, scratch, fail = bind(b, "histogram")

    def call(args: HistogramArgs) -> Map:
        x, bins = args.signal, args.bins
        counts, edges = np.empty(bins, dtype=np.int64), np.empty(bins + 1)
        lo, hi = args.range if args.range is not None else (0.0, 0.0)
        err = scratch.err
        status = fn(
            buf("double[]", x), x.size, bins, args.range is not None, lo, hi,
            buf("int64_t[]", counts), buf("double[]", edges), err,
        )  # fmt: skip
        if status:
            fail(status, err)
        return {"counts": counts, "edges": edges}

    return call
