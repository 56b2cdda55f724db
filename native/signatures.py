"""What each kernel's params are, declared: names, kinds, which are required, bounds, defaults and an
example, for clients that build a request (edge-gateway's `GET /api/v1/kernels`, the dashboard's
kernel picker). The validators in specs.py take their field names from here, and
tests/native/test_signatures.py checks every other claim against what the validators accept, so a
declaration and its validator cannot drift apart.

    SIGNATURES["moving_average"].params   # (Param("signal", "ndarray", ...), Param("window", "int", ...))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["ndarray", "int", "float", "range"]


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind  # ndarray: numbers (float64 once checked); range: [lo, hi] of finite numbers, lo <= hi
    required: bool
    doc: str
    ndim: int | None = None  # an ndarray's dimensions
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    exclusive_minimum: float | None = None
    default: Any = None
    example: Any = None

    def view(self) -> dict[str, Any]:
        """As JSON, without the bounds that do not apply."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "required": self.required,
            "doc": self.doc,
        }
        for key in ("ndim", "minimum", "maximum", "exclusive_minimum", "default", "example"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class Signature:
    doc: str
    params: tuple[Param, ...] = field(default_factory=tuple)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params)


def _signal(at_least: int = 1) -> Param:
    more = f", at least {at_least} samples" if at_least > 1 else ""
    return Param(
        "signal", "ndarray", True, f"the samples (n{more})", ndim=1, example=[1.0, 4.0, 2.0, 8.0, 5.0]
    )


SIGNATURES: dict[str, Signature] = {
    "matrix_multiply": Signature(
        "the matrix product A x B (m x n)",
        (
            Param("matrix_a", "ndarray", True, "A, m x k", ndim=2, example=[[1, 2], [3, 4]]),
            Param("matrix_b", "ndarray", True, "B, k x n (k: A's columns)", ndim=2, example=[[5, 6], [7, 8]]),
        ),
    ),
    "fir_filter": Signature(
        "y[i] = sum_j taps[j] * signal[i-j], zero before the start (n samples)",
        (
            _signal(),
            Param(
                "taps",
                "ndarray",
                True,
                "the coefficients (at most 4096)",
                ndim=1,
                example=[0.5, 0.5],
            ),
        ),
    ),
    "moving_average": Signature(
        "the means of each window of w samples (n - w + 1 means)",
        (
            _signal(),
            Param("window", "int", True, "w, 1 <= w <= n", minimum=1, example=2),
        ),
    ),
    "stats": Signature("count, mean, std (population), min, max, rms of the samples", (_signal(),)),
    "fft_magnitude": Signature(
        "abs of the real FFT (n // 2 + 1 bins) and each bin's frequency",
        (
            _signal(2),
            Param(
                "sample_rate",
                "float",
                False,
                "samples per second: frequencies in Hz, else in cycles per sample",
                exclusive_minimum=0,
                example=100.0,
            ),
        ),
    ),
    "zscore_anomalies": Signature(
        "the indices of samples whose z-score exceeds the threshold, with the mean and std",
        (
            _signal(2),
            Param(
                "threshold",
                "float",
                False,
                "the z-score above which a sample is anomalous",
                exclusive_minimum=0,
                default=3.0,
                example=1.5,
            ),
        ),
    ),
    "conv2d": Signature(
        "the zero-padded 'same' correlation of the image with the kernel (h x w)",
        (
            Param("image", "ndarray", True, "h x w", ndim=2, example=[[1, 2, 3], [4, 5, 6], [7, 8, 9]]),
            Param(
                "kernel",
                "ndarray",
                True,
                "kh x kw, odd sizes, at most 63",
                ndim=2,
                example=[[0, 1, 0], [1, -4, 1], [0, 1, 0]],
            ),
        ),
    ),
    "histogram": Signature(
        "counts and bin edges, as numpy.histogram",
        (
            _signal(),
            Param("bins", "int", False, "how many bins", minimum=1, maximum=65536, default=10, example=4),
            Param(
                "range", "range", False, "[lo, hi] (default: the signal's [min, max])", example=[0.0, 10.0]
            ),
        ),
    ),
}
