"""Property tests: every native kernel against its numpy reference (PROTOCOL 9 tolerances).

Kernels whose native code reproduces numpy's operation order (stats, zscore_anomalies, conv2d,
histogram) are tested over the whole float64 range; the others, whose summation order differs
from BLAS / pocketfft, over values within +-100 so that rounding stays inside the tolerance.
NaN and infinities are injected at random positions in every kernel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from native import KernelError, Registry
from native.validation import Params
from tests.native.compare import assert_result_matches

SPECIALS = (math.nan, math.inf, -math.inf)
BOUNDED = st.floats(-100, 100, allow_nan=False, allow_subnormal=False)
ANY_FINITE = st.floats(allow_nan=False, allow_infinity=False)

settings.register_profile(
    "kernels", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
KERNEL_SETTINGS = settings.get_profile("kernels")


@st.composite
def arrays(
    draw: st.DrawFn, shape: tuple[int, ...], elements: st.SearchStrategy[float] = BOUNDED
) -> np.ndarray:
    """A float64 array of `shape`, sometimes with NaN / inf at a few random positions."""
    x = draw(hnp.arrays(np.float64, shape, elements=elements))
    for _ in range(draw(st.integers(0, 2) | st.just(0))):
        index = tuple(draw(st.integers(0, d - 1)) for d in shape)
        x[index] = draw(st.sampled_from(SPECIALS))
    return x


def sizes(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Sizes in [lo, hi], with the smallest ones often."""
    return st.integers(lo, min(hi, lo + 2)) | st.integers(lo, hi)


def check(registry: Registry, kernel_name: str, params: Params) -> None:
    kernel = registry.get(kernel_name)
    args = kernel.validate(params)
    try:
        want = kernel.reference(args)
    except KernelError as exc:  # the native kernel must fail the same way
        with pytest.raises(type(exc)) as raised:
            kernel.run(args)
        assert raised.value.field == exc.field
        return
    assert_result_matches(kernel_name, kernel.run(args), want)


@KERNEL_SETTINGS
@given(data=st.data(), m=sizes(1, 24), k=sizes(1, 40), n=sizes(1, 24))
def test_matrix_multiply(registry: Registry, data: st.DataObject, m: int, k: int, n: int) -> None:
    a, b = data.draw(arrays((m, k))), data.draw(arrays((k, n)))
    check(registry, "matrix_multiply", {"matrix_a": a, "matrix_b": b})


@KERNEL_SETTINGS
@given(data=st.data(), n=sizes(1, 200), t=sizes(1, 64))
def test_fir_filter(registry: Registry, data: st.DataObject, n: int, t: int) -> None:
    check(registry, "fir_filter", {"signal": data.draw(arrays((n,))), "taps": data.draw(arrays((t,)))})


@KERNEL_SETTINGS
@given(data=st.data(), n=sizes(1, 300))
def test_moving_average(registry: Registry, data: st.DataObject, n: int) -> None:
    window = data.draw(st.integers(1, n) | st.just(n) | st.just(1))
    check(registry, "moving_average", {"signal": data.draw(arrays((n,))), "window": window})


@KERNEL_SETTINGS
@given(data=st.data(), n=sizes(1, 400))
def test_stats(registry: Registry, data: st.DataObject, n: int) -> None:
    check(registry, "stats", {"signal": data.draw(arrays((n,), ANY_FINITE | BOUNDED))})


@KERNEL_SETTINGS
@given(data=st.data(), n=sizes(2, 700))
def test_fft_magnitude(registry: Registry, data: st.DataObject, n: int) -> None:
    rate = data.draw(st.none() | st.floats(1e-3, 1e6))
    check(registry, "fft_magnitude", {"signal": data.draw(arrays((n,))), "sample_rate": rate})


@pytest.mark.parametrize("n", [2, 3, 5, 7, 61, 67, 97, 127, 134, 257, 1009, 2 * 1009, 4096, 65536, 65537])
def test_fft_magnitude_lengths(registry: Registry, n: int) -> None:
    """Powers of two, primes (Bluestein above 61), twice a prime, the benchmark's largest size."""
    signal = np.random.default_rng(n).standard_normal(n)
    check(registry, "fft_magnitude", {"signal": signal, "sample_rate": 8000.0})


@KERNEL_SETTINGS
@given(data=st.data(), n=sizes(2, 400))
def test_zscore_anomalies(registry: Registry, data: st.DataObject, n: int) -> None:
    threshold = data.draw(st.floats(0.01, 10) | st.just(3.0))
    signal = data.draw(arrays((n,), ANY_FINITE | BOUNDED | st.sampled_from([0.1, 1.0])))
    check(registry, "zscore_anomalies", {"signal": signal, "threshold": threshold})


@KERNEL_SETTINGS
@given(
    data=st.data(),
    h=sizes(1, 20),
    w=sizes(1, 20),
    kh=st.sampled_from([1, 3, 5, 7]),
    kw=st.sampled_from([1, 3, 5]),
)
def test_conv2d(registry: Registry, data: st.DataObject, h: int, w: int, kh: int, kw: int) -> None:
    image, kernel = data.draw(arrays((h, w), ANY_FINITE | BOUNDED)), data.draw(arrays((kh, kw)))
    check(registry, "conv2d", {"image": image, "kernel": kernel})


@KERNEL_SETTINGS
@given(data=st.data(), n=sizes(1, 400), bins=st.integers(1, 3) | st.integers(1, 200))
def test_histogram(registry: Registry, data: st.DataObject, n: int, bins: int) -> None:
    signal = data.draw(arrays((n,), ANY_FINITE | BOUNDED))
    bounds = data.draw(st.none() | st.lists(BOUNDED | ANY_FINITE, min_size=2, max_size=2).map(sorted))
    params: dict[str, object] = {"signal": signal, "bins": bins}
    if bounds is not None and math.isfinite(bounds[1] - bounds[0]):
        params["range"] = bounds
    check(registry, "histogram", params)
