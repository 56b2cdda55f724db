"""Loading: the numpy fallback (warning once, backend numpy, same answers) and target selection."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from native import NativeLibraryError, Registry, load_registry
from native.loader import ENV_BACKEND, ENV_LIBRARY, load_binding, target_name
from tests.native.compare import assert_result_matches

SAMPLES: list[tuple[str, dict[str, object]]] = [
    ("matrix_multiply", {"matrix_a": [[1.0, 2.0], [3.0, 4.0]], "matrix_b": [[0.5], [-1.0]]}),
    ("fir_filter", {"signal": [1.0, 2.0, 3.0, 4.0], "taps": [0.5, 0.25]}),
    ("moving_average", {"signal": [1.0, 2.0, 3.0, 4.0], "window": 3}),
    ("stats", {"signal": [1.0, 2.0, float("nan")]}),
    ("fft_magnitude", {"signal": [1.0, 0.0, -1.0, 0.0, 2.0], "sample_rate": 10.0}),
    ("zscore_anomalies", {"signal": [0.0] * 10 + [9.0], "threshold": 2.0}),
    ("conv2d", {"image": np.arange(12.0).reshape(3, 4), "kernel": [[0.0, 1.0, 0.0]]}),
    ("histogram", {"signal": [0.0, 0.5, 1.0, 1.0], "bins": 2}),
]


def test_missing_library_falls_back_to_numpy_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {ENV_LIBRARY: str(tmp_path / "libedge_kernels.so")}
    with caplog.at_level(logging.WARNING, logger="native.registry"):
        first = load_registry(env=env)
        second = load_registry(env=env)
    assert first.backend == second.backend == "numpy"
    assert all(first.get(name).backend == "numpy" for name in first.names())
    warnings = [r for r in caplog.records if "numpy references" in r.getMessage()]
    assert len(warnings) == 1
    assert str(tmp_path) in warnings[0].getMessage()


def test_broken_library_falls_back(tmp_path: Path) -> None:
    bogus = tmp_path / "libedge_kernels.so"
    bogus.write_bytes(b"not an ELF file")
    assert load_registry(env={ENV_LIBRARY: str(bogus)}).backend == "numpy"


def test_numpy_backend_can_be_chosen_and_native_can_be_required(tmp_path: Path) -> None:
    assert load_registry(env={ENV_BACKEND: "numpy"}).backend == "numpy"
    with pytest.raises(NativeLibraryError, match="no native library loads"):
        load_binding({ENV_BACKEND: "native", ENV_LIBRARY: str(tmp_path / "missing.so")})
    with pytest.raises(NativeLibraryError, match="expected auto, native or numpy"):
        load_binding({ENV_BACKEND: "fast"})


@pytest.mark.parametrize(("kernel", "params"), SAMPLES, ids=[k for k, _ in SAMPLES])
def test_fallback_gives_the_same_answers(
    registry: Registry, numpy_registry: Registry, kernel: str, params: dict[str, object]
) -> None:
    assert_result_matches(kernel, registry.get(kernel)(params), numpy_registry.get(kernel)(params))


def test_native_backend_reports_itself(registry: Registry) -> None:
    assert registry.backend == "native"
    assert registry.binding is not None
    assert "edge_kernels" in registry.build_info
    explicit = os.environ.get(ENV_LIBRARY)
    if explicit:  # e.g. make asan: the sanitized library must be the one under test
        assert registry.binding.mode == "abi" and registry.binding.origin == explicit


@pytest.mark.parametrize(
    ("machine", "bits", "target"),
    [
        ("x86_64", 64, "x86_64"),
        ("AMD64", 64, "x86_64"),
        ("aarch64", 64, "aarch64"),
        ("arm64", 64, "aarch64"),
        ("aarch64", 32, "armhf"),  # 32-bit Raspberry Pi OS on a 64-bit kernel
        ("armv7l", 32, "armhf"),
        ("armv8l", 32, "armhf"),
        ("riscv64", 64, "riscv64"),
    ],
)
def test_target_name(machine: str, bits: int, target: str) -> None:
    assert target_name(machine, bits) == target


def test_board_check_passes_with_the_native_library(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    from native.__main__ import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "backend: native" in out and out.rstrip().endswith(" passed, 0 failed")


def test_board_check_fails_on_the_numpy_fallback_unless_allowed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from native.__main__ import main

    monkeypatch.setenv(ENV_BACKEND, "numpy")
    assert main([]) == 1
    assert main(["--allow-numpy"]) == 0
    assert "backend: numpy" in capsys.readouterr().out
