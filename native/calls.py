"""Native implementations: allocate the outputs, call the C ABI, return numpy arrays and maps.

Each function takes arguments already validated by native.specs. No cffi object is returned.
"""

from __future__ import annotations

import numpy as np

from native.adapter import check, error_buffer
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


def matrix_multiply(b: Binding, args: MatmulArgs) -> FloatArray:
    (m, k), n = args.a.shape, args.b.shape[1]
    out = np.empty((m, n))
    f, err = b.ffi.from_buffer, error_buffer(b)
    status = b.lib.ek_matrix_multiply(f("double[]", args.a), f("double[]", args.b), f("double[]", out), m, k, n, err)
    check(status, b, err, "matrix_multiply")
    return out


def fir_filter(b: Binding, args: FirArgs) -> FloatArray:
    out = np.empty(args.signal.size)
    f, err = b.ffi.from_buffer, error_buffer(b)
    x, taps = args.signal, args.taps
    status = b.lib.ek_fir_filter(f("double[]", x), x.size, f("double[]", taps), taps.size, f("double[]", out), err)
    check(status, b, err, "fir_filter")
    return out


def moving_average(b: Binding, args: WindowArgs) -> FloatArray:
    x = args.signal
    out = np.empty(x.size - args.window + 1)
    f, err = b.ffi.from_buffer, error_buffer(b)
    status = b.lib.ek_moving_average(f("double[]", x), x.size, args.window, f("double[]", out), err)
    check(status, b, err, "moving_average")
    return out


def stats(b: Binding, args: SignalArgs) -> dict[str, object]:
    x = args.signal
    out, err = b.ffi.new("ek_stats_result *"), error_buffer(b)
    check(b.lib.ek_stats(b.ffi.from_buffer("double[]", x), x.size, out, err), b, err, "stats")
    return {"count": out.count, "mean": out.mean, "std": out.std, "min": out.min, "max": out.max, "rms": out.rms}


def fft_magnitude(b: Binding, args: FftArgs) -> dict[str, object]:
    x = args.signal
    magnitude, frequency = np.empty(x.size // 2 + 1), np.empty(x.size // 2 + 1)
    f, err = b.ffi.from_buffer, error_buffer(b)
    status = b.lib.ek_fft_magnitude(
        f("double[]", x), x.size, args.spacing, f("double[]", magnitude), f("double[]", frequency), err
    )
    check(status, b, err, "fft_magnitude")
    return {"magnitude": magnitude, "frequency": frequency}


def zscore_anomalies(b: Binding, args: ZscoreArgs) -> dict[str, object]:
    x = args.signal
    indices = np.empty(x.size, dtype=np.int64)
    out, err = b.ffi.new("ek_zscore_result *"), error_buffer(b)
    f = b.ffi.from_buffer
    status = b.lib.ek_zscore_anomalies(f("double[]", x), x.size, args.threshold, f("int64_t[]", indices), out, err)
    check(status, b, err, "zscore_anomalies")
    return {"indices": indices[: out.count].copy(), "mean": out.mean, "std": out.std}


def conv2d(b: Binding, args: Conv2dArgs) -> FloatArray:
    (h, w), (kh, kw) = args.image.shape, args.kernel.shape
    out = np.empty((h, w))
    f, err = b.ffi.from_buffer, error_buffer(b)
    status = b.lib.ek_conv2d(f("double[]", args.image), h, w, f("double[]", args.kernel), kh, kw, f("double[]", out), err)
    check(status, b, err, "conv2d")
    return out


def histogram(b: Binding, args: HistogramArgs) -> dict[str, object]:
    x = args.signal
    counts, edges = np.empty(args.bins, dtype=np.int64), np.empty(args.bins + 1)
    lo, hi = args.range if args.range is not None else (0.0, 0.0)
    f, err = b.ffi.from_buffer, error_buffer(b)
    status = b.lib.ek_histogram(
        f("double[]", x), x.size, args.bins, args.range is not None, lo, hi,
        f("int64_t[]", counts), f("double[]", edges), err,
    )  # fmt: skip
    check(status, b, err, "histogram")
    return {"counts": counts, "edges": edges}
