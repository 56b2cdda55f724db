"""numpy float64 reference implementations: the definition of each kernel's numerics.

They are the fallback backend and the oracle of the native kernels' tests. Where numpy's own
behaviour is accidental (an FFT of infinities, a z-score over std 0, a zero-padded border times
an infinite kernel weight) the reference states the rule, and the native code follows it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from native.errors import KernelFailed
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

Result = FloatArray | dict[str, object]


def _quiet() -> np.errstate:
    return np.errstate(all="ignore")


def matrix_multiply(args: MatmulArgs) -> FloatArray:
    with _quiet():
        out: FloatArray = np.matmul(args.a, args.b)
    return out


def fir_filter(args: FirArgs) -> FloatArray:
    """y[i] = sum_j taps[j] * signal[i - j]; samples before the start are absent (no 0 * inf)."""
    with _quiet():
        return np.convolve(args.signal, args.taps)[: args.signal.size]


def moving_average(args: WindowArgs) -> FloatArray:
    with _quiet():
        return np.convolve(args.signal, np.ones(args.window), mode="valid") / args.window


def stats(args: SignalArgs) -> dict[str, object]:
    x = args.signal
    with _quiet():
        return {
            "count": int(x.size),
            "mean": float(x.mean()),
            "std": float(x.std()),
            "min": float(x.min()),
            "max": float(x.max()),
            "rms": float(np.sqrt(np.mean(x * x))),
        }


def fft_magnitude(args: FftArgs) -> dict[str, object]:
    """|rfft|; a NaN sample makes every bin NaN, otherwise an infinite one makes every bin inf."""
    x = args.signal
    frequency = np.fft.rfftfreq(x.size, d=args.spacing)
    if np.isnan(x).any():
        return {"magnitude": np.full(frequency.size, np.nan), "frequency": frequency}
    if np.isinf(x).any():
        return {"magnitude": np.full(frequency.size, np.inf), "frequency": frequency}
    return {"magnitude": np.abs(np.fft.rfft(x)), "frequency": frequency}


def zscore_anomalies(args: ZscoreArgs) -> dict[str, object]:
    """Indices with |x - mean| / std > threshold; none when std is 0 (or NaN)."""
    x = args.signal
    with _quiet():
        mean = x.mean()
        std = x.std()
        if std == 0:
            indices = np.empty(0, dtype=np.int64)
        else:
            indices = np.flatnonzero(np.abs((x - mean) / std) > args.threshold).astype(np.int64)
    return {"indices": indices, "mean": float(mean), "std": float(std)}


def conv2d(args: Conv2dArgs) -> FloatArray:
    """ "Same" correlation; the zero padding contributes nothing, kernel rows then columns in order."""
    image, kernel = args.image, args.kernel
    h, w = image.shape
    kh, kw = kernel.shape
    out = np.zeros((h, w))
    with _quiet():
        for a in range(kh):
            di = a - kh // 2
            r0, r1 = max(0, -di), min(h, h - di)
            for b in range(kw):
                dj = b - kw // 2
                c0, c1 = max(0, -dj), min(w, w - dj)
                if r1 > r0 and c1 > c0:
                    out[r0:r1, c0:c1] += kernel[a, b] * image[r0 + di : r1 + di, c0 + dj : c1 + dj]
    return out


def _outer_edges(args: HistogramArgs) -> tuple[float, float]:
    if args.range is not None:
        return args.range
    lo, hi = float(args.signal.min()), float(args.signal.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        message = f"autodetected range of [{lo}, {hi}] is not finite: the signal holds NaN or infinity"
        raise KernelFailed(f"{message}; give 'range'", field="signal")
    if not np.isfinite(hi - lo):
        raise KernelFailed(f"range width {hi} - {lo} overflows", field="signal")
    return lo, hi


def histogram(args: HistogramArgs) -> dict[str, object]:
    """numpy.histogram with equal bins; a non-finite autodetected range is a kernel error."""
    lo, hi = _outer_edges(args)
    try:
        with _quiet():
            counts, edges = np.histogram(args.signal, bins=args.bins, range=(lo, hi))
    except ValueError as exc:  # too many bins for the range: no finite-sized bins
        raise KernelFailed(str(exc), field="bins") from exc
    counts64: npt.NDArray[np.int64] = counts.astype(np.int64)
    return {"counts": counts64, "edges": edges}
