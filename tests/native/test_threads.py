"""Many threads calling the same kernel at once get the same answers as one thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from native import Registry

THREADS = 8
ROUNDS = 25


def _jobs() -> list[tuple[str, dict[str, object]]]:
    rng = np.random.default_rng(7)
    jobs: list[tuple[str, dict[str, object]]] = []
    for i in range(16):
        n = 500 + 37 * i
        x = rng.standard_normal(n)
        jobs += [
            (
                "matrix_multiply",
                {"matrix_a": rng.standard_normal((20 + i, 30)), "matrix_b": rng.standard_normal((30, 40))},
            ),
            ("fir_filter", {"signal": x, "taps": rng.standard_normal(1 + i)}),
            ("moving_average", {"signal": x, "window": 1 + i}),
            ("stats", {"signal": x}),
            ("fft_magnitude", {"signal": x}),
            ("zscore_anomalies", {"signal": x, "threshold": 1.0 + i / 8}),
            ("conv2d", {"image": rng.standard_normal((30, 20 + i)), "kernel": rng.standard_normal((3, 5))}),
            ("histogram", {"signal": x, "bins": 5 + i}),
        ]
    return jobs


def _flat(result: object) -> list[np.ndarray]:
    if isinstance(result, dict):
        return [np.asarray(result[k]) for k in sorted(result)]
    return [np.asarray(result)]


def test_concurrent_calls_agree_with_sequential_ones(registry: Registry) -> None:
    jobs = _jobs()
    expected = [_flat(registry.get(name)(params)) for name, params in jobs]

    def worker(offset: int) -> list[int]:
        mismatches = []
        for r in range(ROUNDS):
            index = (offset * 7 + r * 13) % len(jobs)
            name, params = jobs[index]
            got = _flat(registry.get(name)(params))
            if not all(
                np.array_equal(g, e, equal_nan=True) for g, e in zip(got, expected[index], strict=True)
            ):
                mismatches.append(index)
        return mismatches

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS * 4)))
    assert [m for m in results if m] == []
