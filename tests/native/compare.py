"""PROTOCOL 9's agreement rule, for comparing a kernel's result with the numpy reference."""

from __future__ import annotations

import numpy as np

R_DEFAULT = 1e-9
R_FFT = 1e-6
EXACT = frozenset({"indices", "counts", "count"})  # integer outputs: equal


def tolerance(kernel: str) -> float:
    return R_FFT if kernel == "fft_magnitude" else R_DEFAULT


def assert_close(label: str, got: object, want: object, r: float, exact: bool = False) -> None:
    """allclose(got, want, rtol=r, atol=r * max(1, max|want|)), NaN equal NaN, infinities exact."""
    g = np.asarray(got)
    w = np.asarray(want)
    assert g.shape == w.shape, f"{label}: shape {g.shape} != {w.shape}"
    if exact:
        assert g.dtype == w.dtype, f"{label}: dtype {g.dtype} != {w.dtype}"
        assert np.array_equal(g, w), f"{label}: {g} != {w}"
        return
    finite = w[np.isfinite(w)]
    scale = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
    ok = np.isclose(g, w, rtol=r, atol=r * scale, equal_nan=True) | (np.isinf(w) & (g == w))
    assert ok.all(), f"{label}: mismatch at {np.argwhere(~ok)[0]}: got {g[~ok][:3]} want {w[~ok][:3]}"


def assert_result_matches(kernel: str, got: object, want: object) -> None:
    """A kernel's result (array or map) agrees with the reference's."""
    r = tolerance(kernel)
    if not isinstance(want, dict):
        assert_close(kernel, got, want, r)
        return
    assert isinstance(got, dict), f"{kernel}: {type(got).__name__} is not a map"
    assert got.keys() == want.keys(), f"{kernel}: keys {sorted(got)} != {sorted(want)}"
    for key, value in want.items():
        assert_close(f"{kernel}.{key}", got[key], value, r, exact=key in EXACT)
