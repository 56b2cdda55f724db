"""Validation: bad params give invalid_params naming the field, on both backends; nothing crashes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from native import InvalidParams, KernelError, Limits, Registry, UnknownKernel, load_registry
from native.registry import SPECS
from native.validation import array, output_bytes

X = [1.0, 2.0, 3.0, 4.0]
M = [[1.0, 2.0], [3.0, 4.0]]

# (kernel, params, field named in the error)
BAD: list[tuple[str, object, str]] = [
    ("stats", "not a map", "params"),
    ("stats", {}, "signal"),
    ("stats", {"signal": None}, "signal"),
    ("stats", {"signal": "1,2,3"}, "signal"),
    ("stats", {"signal": b"\x00" * 8}, "signal"),
    ("stats", {"signal": 5.0}, "signal"),
    ("stats", {"signal": {"a": 1}}, "signal"),
    ("stats", {"signal": []}, "signal"),
    ("stats", {"signal": ["a", "b"]}, "signal"),
    ("stats", {"signal": ["1.5"]}, "signal"),
    ("stats", {"signal": [1.0, None]}, "signal"),
    ("stats", {"signal": [True, False]}, "signal"),
    ("stats", {"signal": [1, [2, 3]]}, "signal"),
    ("stats", {"signal": [1 + 2j]}, "signal"),
    ("stats", {"signal": [2**70]}, "signal"),
    ("stats", {"signal": [[1.0, 2.0]]}, "signal"),
    ("stats", {"signal": np.array(["x"])}, "signal"),
    ("stats", {"signal": np.array([1, 2], dtype=object)}, "signal"),
    ("stats", {"signal": np.zeros((2, 2))}, "signal"),
    ("stats", {"signal": X, "extra": 1}, "extra"),
    ("matrix_multiply", {"matrix_a": M}, "matrix_b"),
    ("matrix_multiply", {"matrix_a": X, "matrix_b": M}, "matrix_a"),
    ("matrix_multiply", {"matrix_a": M, "matrix_b": [[1.0, 2.0, 3.0]]}, "matrix_b"),
    ("matrix_multiply", {"matrix_a": [[1.0], [2.0, 3.0]], "matrix_b": M}, "matrix_a"),
    ("matrix_multiply", {"matrix_a": np.zeros((0, 2)), "matrix_b": M}, "matrix_a"),
    ("matrix_multiply", {"matrix_a": np.zeros((1, 3000)), "matrix_b": np.zeros((3000, 1))}, "matrix_a"),
    ("fir_filter", {"signal": X}, "taps"),
    ("fir_filter", {"signal": X, "taps": []}, "taps"),
    ("fir_filter", {"signal": X, "taps": np.ones(5000)}, "taps"),
    ("moving_average", {"signal": X}, "window"),
    ("moving_average", {"signal": X, "window": 0}, "window"),
    ("moving_average", {"signal": X, "window": 5}, "window"),
    ("moving_average", {"signal": X, "window": 2.5}, "window"),
    ("moving_average", {"signal": X, "window": True}, "window"),
    ("moving_average", {"signal": X, "window": "2"}, "window"),
    ("moving_average", {"signal": X, "window": float("nan")}, "window"),
    ("fft_magnitude", {"signal": [1.0]}, "signal"),
    ("fft_magnitude", {"signal": X, "sample_rate": 0}, "sample_rate"),
    ("fft_magnitude", {"signal": X, "sample_rate": -5.0}, "sample_rate"),
    ("fft_magnitude", {"signal": X, "sample_rate": float("inf")}, "sample_rate"),
    ("fft_magnitude", {"signal": X, "sample_rate": 1e-320}, "sample_rate"),
    ("fft_magnitude", {"signal": X, "sample_rate": "fast"}, "sample_rate"),
    ("zscore_anomalies", {"signal": [1.0]}, "signal"),
    ("zscore_anomalies", {"signal": X, "threshold": 0}, "threshold"),
    ("zscore_anomalies", {"signal": X, "threshold": float("nan")}, "threshold"),
    ("zscore_anomalies", {"signal": X, "threshold": [3]}, "threshold"),
    ("conv2d", {"image": M, "kernel": [[1.0, 2.0]]}, "kernel"),
    ("conv2d", {"image": X, "kernel": [[1.0]]}, "image"),
    ("conv2d", {"image": M, "kernel": np.ones((65, 65))}, "kernel"),
    ("conv2d", {"image": M}, "kernel"),
    ("histogram", {"signal": X, "bins": 0}, "bins"),
    ("histogram", {"signal": X, "bins": 65537}, "bins"),
    ("histogram", {"signal": X, "bins": 1.5}, "bins"),
    ("histogram", {"signal": X, "range": [1.0, 0.0]}, "range"),
    ("histogram", {"signal": X, "range": [float("nan"), 1.0]}, "range"),
    ("histogram", {"signal": X, "range": [0.0, float("inf")]}, "range"),
    ("histogram", {"signal": X, "range": [-1e308, 1e308]}, "range"),
    ("histogram", {"signal": X, "range": [1.0]}, "range"),
    ("histogram", {"signal": X, "range": "0..1"}, "range"),
]


@pytest.fixture(params=["native", "numpy"])
def either(request: pytest.FixtureRequest, registry: Registry, numpy_registry: Registry) -> Registry:
    return registry if request.param == "native" else numpy_registry


@pytest.mark.parametrize(
    ("kernel", "params", "field"), BAD, ids=[f"{k}-{f}-{i}" for i, (k, _, f) in enumerate(BAD)]
)
def test_invalid_params_name_the_field(either: Registry, kernel: str, params: object, field: str) -> None:
    with pytest.raises(InvalidParams) as raised:
        either.get(kernel)(params)  # type: ignore[arg-type]
    assert raised.value.code == "invalid_params"
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_oversized_inputs_are_refused_before_conversion(either: Registry) -> None:
    small = Registry(either.binding, Limits(max_elements=8))
    for signal in (list(range(9)), np.ones(9)):
        with pytest.raises(InvalidParams, match="more than") as raised:
            small.get("stats")({"signal": signal})
        assert raised.value.field == "signal"
    with pytest.raises(InvalidParams) as raised:
        small.get("matrix_multiply")({"matrix_a": np.ones((3, 3)), "matrix_b": np.ones((3, 3))})
    assert raised.value.field == "matrix_a"


def test_unknown_kernel(either: Registry) -> None:
    with pytest.raises(UnknownKernel) as raised:
        either.get("sys.status")
    assert raised.value.code == "unknown_kernel"
    assert "sys.status" not in either
    assert set(either.names()) == {s.name for s in SPECS}


@pytest.mark.parametrize(
    "signal",
    [
        np.frombuffer(np.arange(6, dtype="<f8").tobytes(), dtype="<f8"),  # read-only, as decoded
        np.arange(6, dtype=">f8"),
        np.arange(6, dtype="<f4"),
        np.arange(6, dtype="<i2"),
        np.arange(6, dtype="|u1"),
        (np.arange(12, dtype="<f8") / 2)[::2],  # not contiguous
        [0, 1, 2, 3, 4, 5],
        (0.0, 1.0, 2.0, 3.0, 4.0, 5.0),
    ],
)
def test_accepted_array_forms(either: Registry, signal: object) -> None:
    result = either.get("stats")({"signal": signal})
    assert isinstance(result, dict)
    assert result["count"] == 6
    assert result["mean"] == pytest.approx(2.5)


# float64 data at an odd byte offset, as numpy.frombuffer gives it over a decoded ext array
UNALIGNED = np.frombuffer(b"\x00" + np.arange(12, dtype="<f8").tobytes(), dtype="<f8", count=12, offset=1)


@pytest.mark.parametrize("value", [UNALIGNED, UNALIGNED.reshape(3, 4)], ids=["1-d", "2-d"])
def test_an_unaligned_array_reaches_the_kernels_aligned(value: np.ndarray) -> None:
    """C++ may not read a double at an unaligned address: on armhf the kernels' loads fault (a worker
    on the emulated armhf board died of SIGBUS, tests/boards). The array is copied, once."""
    assert not value.flags.aligned
    got = array({"x": value}, "x", value.ndim, Limits())
    assert got.flags.aligned and got.flags.c_contiguous and got.dtype == np.float64
    np.testing.assert_array_equal(got, value)
    aligned = np.arange(12, dtype="<f8")
    assert array({"x": aligned}, "x", 1, Limits()) is aligned  # no copy when there is nothing to fix


def test_defaults(either: Registry) -> None:
    z = either.get("zscore_anomalies")({"signal": [0.0] * 20 + [100.0]})
    assert isinstance(z, dict)
    indices = np.asarray(z["indices"])
    assert indices.tolist() == [20] and indices.dtype == np.int64
    h = either.get("histogram")({"signal": X})
    assert (
        isinstance(h, dict)
        and np.asarray(h["counts"]).shape == (10,)
        and np.asarray(h["edges"]).shape == (11,)
    )
    f = either.get("fft_magnitude")({"signal": X})
    assert isinstance(f, dict) and np.asarray(f["frequency"]).tolist() == [0.0, 0.25, 0.5]


@pytest.mark.parametrize("signal", [[1.0, float("nan")], [1.0, float("inf")], [-float("inf"), 0.0]])
def test_histogram_of_non_finite_data_is_a_kernel_error(either: Registry, signal: list[float]) -> None:
    """numpy.histogram raises for a non-finite autodetected range: a kernel_error naming signal."""
    with pytest.raises(KernelError) as raised:
        either.get("histogram")({"signal": signal})
    assert raised.value.code == "kernel_error" and raised.value.field == "signal"
    with_range = either.get("histogram")({"signal": signal, "range": [0, 2]})
    assert isinstance(with_range, dict) and int(np.sum(np.asarray(with_range["counts"]))) == 1


def test_too_many_bins_is_a_kernel_error(either: Registry) -> None:
    with pytest.raises(KernelError) as raised:
        either.get("histogram")({"signal": [1e17, 1e17 + 16], "bins": 4})
    assert raised.value.code == "kernel_error" and raised.value.field == "bins"


def test_native_status_codes_reach_python_as_typed_errors(registry: Registry) -> None:
    """Calls that bypass validation: the C ABI checks its arguments itself and reports the field."""
    from native.adapter import check

    binding = registry.binding
    assert binding is not None
    ffi, lib = binding.ffi, binding.lib
    err = ffi.new("ek_error *")
    x = ffi.new("double[]", 4)
    out = ffi.new("double[]", 4)
    calls: list[tuple[Callable[[], int], str]] = [
        (lambda: lib.ek_moving_average(x, 4, 0, out, err), "window"),
        (lambda: lib.ek_fir_filter(x, 0, x, 1, out, err), "signal"),
        (lambda: lib.ek_conv2d(x, 2, 2, x, 2, 1, out, err), "kernel"),
        (lambda: lib.ek_matrix_multiply(ffi.NULL, x, out, 1, 1, 1, err), "matrix_a"),
        (lambda: lib.ek_histogram(x, 4, 3, 1, 2.0, 1.0, ffi.NULL, out, err), "counts"),
    ]
    for call, field in calls:
        status = call()
        assert status == lib.EK_INVALID_ARGUMENT
        with pytest.raises(InvalidParams) as raised:
            check(status, binding, err, "test")
        assert raised.value.field == field
    assert lib.ek_stats(x, 4, ffi.NULL, ffi.NULL) == lib.EK_INVALID_ARGUMENT  # no error buffer: no crash


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_limits_refuse_nonsense(bad: object) -> None:
    with pytest.raises(ValueError, match="max_taps"):
        Limits(max_taps=bad)  # type: ignore[arg-type]


def test_limits_reach_the_kernels(registry: Registry) -> None:
    tight = load_registry(Limits(max_taps=3))
    assert tight.limits.max_taps == 3
    with pytest.raises(InvalidParams, match="limit 3") as raised:
        tight.get("fir_filter")({"signal": X, "taps": [1.0] * 4})
    assert raised.value.field == "taps"


# (kernel, params, field named when the output is too large, elements of the output, arrays in it)
SIZED_OUTPUTS: list[tuple[str, dict[str, object], str, int, int]] = [
    ("matrix_multiply", {"matrix_a": np.ones((3, 2)), "matrix_b": np.ones((2, 5))}, "matrix_b", 15, 1),
    ("matrix_multiply", {"matrix_a": np.ones((6, 2)), "matrix_b": np.ones((2, 5))}, "matrix_a", 30, 1),
    ("fir_filter", {"signal": np.ones(100), "taps": [0.5, 0.5, 0.25]}, "signal", 100, 1),
    ("moving_average", {"signal": np.ones(100), "window": 10}, "signal", 91, 1),
    ("fft_magnitude", {"signal": np.ones(100), "sample_rate": 8.0}, "signal", 102, 2),
    ("conv2d", {"image": np.ones((7, 9)), "kernel": np.ones((3, 3))}, "image", 63, 1),
    ("histogram", {"signal": np.arange(50.0), "bins": 40}, "bins", 81, 2),
]


@pytest.mark.parametrize(
    ("kernel", "params", "field", "elements", "arrays"),
    SIZED_OUTPUTS,
    ids=[f"{k}-{f}" for k, _, f, _, _ in SIZED_OUTPUTS],
)
def test_an_output_larger_than_a_result_may_carry_is_refused_naming_the_field(
    either: Registry, kernel: str, params: dict[str, object], field: str, elements: int, arrays: int
) -> None:
    """PROTOCOL 6: where the output's size follows from the params, check 8 refuses params whose
    output would not fit in a result; the estimate is an upper bound of the real encoding."""
    from agent.protocol import packb

    estimate = output_bytes(elements, arrays)
    fits = Registry(either.binding, Limits(max_output_bytes=estimate))
    output = fits.get(kernel)(params)  # at the limit: accepted and run
    assert len(packb(output)) <= estimate
    over = Registry(either.binding, Limits(max_output_bytes=estimate - 1))
    with pytest.raises(InvalidParams) as raised:
        over.get(kernel).validate(params)
    assert raised.value.code == "invalid_params" and raised.value.field == field
    assert f"{estimate:,} bytes encoded" in str(raised.value)


def test_outputs_are_unbounded_without_a_limit_and_stats_is_never_refused(either: Registry) -> None:
    assert Limits().max_output_bytes is None
    big = {"matrix_a": np.ones((2048, 1)), "matrix_b": np.ones((1, 2048))}
    either.get("matrix_multiply").validate(big)  # 4M elements: no limit on outputs by default
    tiny = Registry(either.binding, Limits(max_output_bytes=1))
    with pytest.raises(InvalidParams):
        tiny.get("matrix_multiply").validate(big)
    assert isinstance(tiny.get("stats")({"signal": np.ones(1000)}), dict)  # a few numbers, whatever n
    with pytest.raises(ValueError, match="max_output_bytes"):
        Limits(max_output_bytes=0)
