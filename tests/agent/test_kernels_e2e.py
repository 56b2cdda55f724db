"""Every kernel through the whole path: a device signs a task, the agent runs it in a worker and
publishes a signed result, verified with the agent's key and compared with numpy's answer."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.protocol import Result
from native import Registry
from native.agreement import result_mismatch
from tests.agent.conftest import TOPICS, Site

RNG = np.random.default_rng(5)
SIGNAL = RNG.normal(size=257)
CASES: dict[str, dict[str, Any]] = {
    "matrix_multiply": {"matrix_a": RNG.normal(size=(7, 5)), "matrix_b": RNG.normal(size=(5, 3)).tolist()},
    "fir_filter": {"signal": SIGNAL, "taps": [0.25, 0.5, 0.25]},
    "moving_average": {"signal": SIGNAL.tolist(), "window": 8},
    "stats": {"signal": SIGNAL},
    "fft_magnitude": {"signal": SIGNAL, "sample_rate": 100.0},
    "zscore_anomalies": {"signal": np.concatenate([SIGNAL, [40.0]]), "threshold": 3.0},
    "conv2d": {"image": RNG.normal(size=(9, 11)), "kernel": RNG.normal(size=(3, 3))},
    "histogram": {"signal": SIGNAL, "bins": 12},
}
REFERENCE = Registry(None)


def _expected(kernel: str, params: dict[str, Any]) -> Any:
    spec = REFERENCE.get(kernel)
    return spec.reference(spec.validate(params))


def test_every_kernel_end_to_end(any_site: Site) -> None:
    site = any_site
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device, mcu = site.client("sensor-1"), site.client("mcu-1")
    with site.agent() as agent:
        tasks = {}
        for n, (kernel, params) in enumerate(CASES.items()):
            issuer, client = ("mcu-1", mcu) if n % 2 else ("sensor-1", device)  # HMAC and Ed25519 devices
            tasks[site.submit(client, issuer, kernel, params).id] = kernel
        results = {r.id: r for r in site.results(watcher, len(CASES))}
        assert agent.run_until_idle()
    for task_id, kernel in tasks.items():
        result: Result = results[task_id]
        assert (result.status, result.kernel, result.node, result.attempt, result.run) == (
            "completed",
            kernel,
            "node-1",
            1,
            1,
        ), result.error
        assert result.started_at is not None and result.finished_at is not None
        assert result.received_at <= result.started_at <= result.finished_at
        assert result.duration_ms is not None and result.duration_ms >= 0
        mismatch = result_mismatch(kernel, result.result, _expected(kernel, CASES[kernel]))
        assert mismatch is None, mismatch
