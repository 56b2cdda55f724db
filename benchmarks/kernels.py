"""Native kernels against their numpy references, through the full Python call path.

    .venv/bin/python benchmarks/kernels.py [--quick] [--repeats N] [--cpu] [--overhead]

Each row times `registry.get(name)(params)` -- validation, conversion, the call and the result --
for the native registry and for the numpy-reference registry, interleaved in the same run so
that both see the same machine load, and prints the medians and the ratio numpy / native (> 1:
native is faster) with the target of issue 3. The last rows are the call overhead of trivial
kernels (one sample) through the same path. Wall-clock medians: numpy's BLAS may use every core.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from native import Registry, load_registry

SIGNALS = (256, 4096, 65536)
TAPS = 32
WINDOW = 16
BINS = 64
OVERHEAD_TARGET_US = 3.0


@dataclass(frozen=True)
class Case:
    kernel: str
    size: str
    params: dict[str, object]
    target: float  # minimum numpy / native ratio


def _target(kernel: str, size: str) -> float:
    if kernel == "matrix_multiply" and size in ("64x64", "256x256"):
        return 0.5 if size == "256x256" else 1.0
    if kernel == "fft_magnitude" and size == "65536":
        return 0.5
    if kernel in ("stats", "zscore_anomalies", "moving_average", "fir_filter") and size == "4096":
        return 2.0
    return 1.0


def cases() -> list[Case]:
    rng = np.random.default_rng(1)
    out: list[tuple[str, str, dict[str, object]]] = []
    for n in SIGNALS:
        x = rng.standard_normal(n)
        out += [
            ("fir_filter", str(n), {"signal": x, "taps": rng.standard_normal(TAPS)}),
            ("moving_average", str(n), {"signal": x, "window": WINDOW}),
            ("stats", str(n), {"signal": x}),
            ("fft_magnitude", str(n), {"signal": x, "sample_rate": 1000.0}),
            ("zscore_anomalies", str(n), {"signal": x, "threshold": 3.0}),
            ("histogram", str(n), {"signal": x, "bins": BINS}),
        ]
    for m in (8, 64, 256):
        a, b = rng.standard_normal((m, m)), rng.standard_normal((m, m))
        out.append(("matrix_multiply", f"{m}x{m}", {"matrix_a": a, "matrix_b": b}))
    for side in (64, 256):
        image = rng.standard_normal((side, side))
        for k in (3, 5):
            params: dict[str, object] = {"image": image, "kernel": rng.standard_normal((k, k))}
            out.append(("conv2d", f"{side}x{side} k{k}x{k}", params))
    return [Case(k, s, p, _target(k, s)) for k, s, p in out]


CLOCK: Callable[[], float] = time.perf_counter  # --cpu: time.process_time (all threads' CPU time)


def _batch(call: Callable[[], object], budget_s: float) -> int:
    """How many calls make one timed batch of about budget_s."""
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < budget_s / 4:
        call()
        calls += 1
    return max(1, calls * 4)


def median_us(calls: Sequence[Callable[[], object]], repeats: int, budget_s: float) -> list[float]:
    """Median time per call of each callable, batches interleaved."""
    return [statistics.median(s) for s in samples_us(calls, repeats, budget_s)]


def samples_us(calls: Sequence[Callable[[], object]], repeats: int, budget_s: float) -> list[list[float]]:
    """Time per call of each callable in each of `repeats` batches, batches interleaved."""
    sizes = [_batch(c, budget_s) for c in calls]
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, size, out in zip(calls, sizes, samples, strict=True):
            start = CLOCK()
            for _ in range(size):
                call()
            out.append((CLOCK() - start) / size * 1e6)
    return samples


def _fmt(us: float) -> str:
    return f"{us:10.1f}" if us >= 10 else f"{us:10.2f}"


def run(native: Registry, reference: Registry, repeats: int, budget_s: float) -> int:
    return speed(native, reference, repeats, budget_s) + overhead(native, repeats, budget_s)


def speed(native: Registry, reference: Registry, repeats: int, budget_s: float) -> int:
    """The table of native against numpy at edge sizes; the number of targets missed."""
    print(f"{'kernel':18} {'size':16} {'native us':>10} {'numpy us':>10} {'ratio':>7} {'target':>7}  met")
    missed = 0
    for case in cases():
        calls = [partial(registry.get(case.kernel), case.params) for registry in (native, reference)]
        t_native, t_numpy = median_us(calls, repeats, budget_s)
        ratio = t_numpy / t_native
        met = ratio >= case.target
        missed += not met
        print(
            f"{case.kernel:18} {case.size:16} {_fmt(t_native)} {_fmt(t_numpy)} {ratio:7.2f} "
            f"{case.target:6.1f}x  {'yes' if met else 'NO'}"
        )
    print()
    return missed


def overhead(native: Registry, repeats: int, budget_s: float) -> int:
    """The call overhead of trivial kernels (one sample); the number of targets missed."""
    missed = 0
    trivial: list[tuple[str, dict[str, object]]] = [
        ("stats", {"signal": np.ones(1)}),
        ("moving_average", {"signal": np.ones(1), "window": 1}),
    ]
    bare = _bare_calls(native)
    for kernel, params in trivial:
        calls = [partial(native.get(kernel), params), bare[kernel]]
        times, floor = samples_us(calls, repeats * 4, budget_s / 4)
        t = statistics.median(times)
        met = t <= OVERHEAD_TARGET_US
        missed += not met
        verdict = "yes" if met else "NO"
        print(
            f"overhead, {kernel} of 1 sample: median {t:.2f} us, best batch {min(times):.2f} us "
            f"(target <= {OVERHEAD_TARGET_US:g} us) {verdict}; the bare cffi call in the same batches: "
            f"{statistics.median(floor):.2f} us"
        )
    return missed


def _bare_calls(native: Registry) -> dict[str, Callable[[], object]]:
    """The same kernels called straight through cffi (no validation, no result built): the
    baseline that shows how fast this machine is right now (the VM's speed varies 1.5-2x)."""
    assert native.binding is not None
    ffi, lib = native.binding.ffi, native.binding.lib
    x, out = np.ones(1), np.empty(1)
    stats_out, err = ffi.new("ek_stats_result *"), ffi.new("ek_error *")

    def stats() -> object:
        return lib.ek_stats(ffi.from_buffer("double[]", x), 1, stats_out, err)

    def moving_average() -> object:
        signal, result = ffi.from_buffer("double[]", x), ffi.from_buffer("double[]", out)
        return lib.ek_moving_average(signal, 1, 1, result, err)

    return {"stats": stats, "moving_average": moving_average}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed batches per kernel and backend")
    parser.add_argument("--quick", action="store_true", help="5 repeats of 5 ms batches (a smoke run)")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="CPU time of the process (all threads) instead of wall clock: steadier on a busy machine",
    )
    parser.add_argument("--overhead", action="store_true", help="only the call-overhead rows (a few seconds)")
    args = parser.parse_args(argv)
    global CLOCK
    if args.cpu:
        CLOCK = time.process_time
    repeats, budget = (5, 0.005) if args.quick else (args.repeats, 0.02)
    native = load_registry()
    if native.backend != "native":
        print("the native library did not load (pip install -e . builds it)", file=sys.stderr)
        return 1
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    versions = f"python {platform.python_version()}, numpy {np.__version__}"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, {versions}")
    print(f"library: {native.build_info} ({native.binding.mode if native.binding else '-'})")
    print(f"params: fir taps {TAPS}, moving_average window {WINDOW}, histogram bins {BINS}, threshold 3")
    clock = "process CPU time (all threads)" if args.cpu else "wall clock"
    print(f"timing: medians of {repeats} interleaved batches of ~{budget * 1e3:.0f} ms, {clock}")
    print("gc: start-up objects frozen (gc.freeze), as a worker process does before its first task\n")
    reference = Registry(None)
    gc.freeze()  # as agent/node/exec/child.py: collections scan only what kernel calls allocate
    missed = overhead(native, repeats, budget) if args.overhead else run(native, reference, repeats, budget)
    print(f"\n{missed} target(s) missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
