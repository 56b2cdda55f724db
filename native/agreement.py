"""PROTOCOL 9's agreement rule between a kernel's result and the numpy reference's.

allclose(out, ref, rtol=R, atol=R * max(1, max|ref|)) with R = 1e-9 (1e-6 for fft_magnitude),
NaN equal to NaN, infinities exactly, integer outputs equal. Used by the tests and by
`python -m native` on a board.
"""

from __future__ import annotations

import numpy as np

R_DEFAULT = 1e-9
R_FFT = 1e-6
EXACT = frozenset({"indices", "counts", "count"})  # integer outputs: equal


def tolerance(kernel: str) -> float:
    return R_FFT if kernel == "fft_magnitude" else R_DEFAULT


def mismatch(label: str, got: object, want: object, r: float, exact: bool = False) -> str | None:
    """Why got does not agree with want, or None."""
    g = np.asarray(got)
    w = np.asarray(want)
    if g.shape != w.shape:
        return f"{label}: shape {g.shape} != {w.shape}"
    if exact:
        if g.dtype != w.dtype:
            return f"{label}: dtype {g.dtype} != {w.dtype}"
        return None if np.array_equal(g, w) else f"{label}: {g} != {w}"
    finite = w[np.isfinite(w)]
    scale = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
    ok = np.isclose(g, w, rtol=r, atol=r * scale, equal_nan=True) | (np.isinf(w) & (g == w))
    if ok.all():
        return None
    return f"{label}: mismatch at {np.argwhere(~ok)[0]}: got {g[~ok][:3]} want {w[~ok][:3]}"


def result_mismatch(kernel: str, got: object, want: object) -> str | None:
    """Why a kernel's result (array or map) does not agree with the reference's, or None."""
    r = tolerance(kernel)
    if not isinstance(want, dict):
        return mismatch(kernel, got, want, r)
    if not isinstance(got, dict):
        return f"{kernel}: {type(got).__name__} is not a map"
    if got.keys() != want.keys():
        return f"{kernel}: keys {sorted(got)} != {sorted(want)}"
    for key, value in want.items():
        why = mismatch(f"{kernel}.{key}", got[key], value, r, exact=key in EXACT)
        if why:
            return why
    return None
