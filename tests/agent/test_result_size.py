"""Results that would not fit in the maximum payload (PROTOCOL 6, `result_too_large`).

A 39 KB task could ask for a 33.5 MB result: published, it was over the broker's packet limit, the
connection was closed, and paho (then the outbox, after a restart) sent it again at every reconnect.
Check 8 now refuses params whose output size follows from them (`invalid_params` naming the field),
and an output still too large ends `abandoned` with `result_too_large`, never retried, never
published or stored at that size. Through a real agent and broker: the agent stays connected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.node.publish.signing import pack_with_raw
from agent.node.store import OUTBOX, Op, Store
from agent.protocol import Result, packb
from tests.agent.conftest import TOPICS, Site

MAX_PAYLOAD = 1 << 20  # the default of security.max_payload
BYTES = np.dtype("|i1")  # one byte per sample on the wire, eight per output element


def _alternating(n: int) -> np.ndarray:
    """+1, -1, ...: every sample's z-score is 1."""
    return np.tile(np.array([1, -1], dtype=BYTES), n // 2)


#: (task id, kernel, params, field named): each output is 2 to 32 MB, each task under 400 KB.
OVERSIZED: list[tuple[str, str, dict[str, Any], str]] = [
    ("mm", "matrix_multiply", {"matrix_a": np.ones((2048, 1)), "matrix_b": np.ones((1, 2048))}, "matrix_a"),
    (
        "mm-wide",
        "matrix_multiply",
        {"matrix_a": np.ones((64, 1)), "matrix_b": np.ones((1, 2048))},
        "matrix_b",
    ),
    ("fir", "fir_filter", {"signal": np.ones(200_000, BYTES), "taps": [0.5, 0.5]}, "signal"),
    ("ma", "moving_average", {"signal": np.ones(200_000, BYTES), "window": 1}, "signal"),
    ("fft", "fft_magnitude", {"signal": np.ones(300_000, BYTES)}, "signal"),
    ("conv", "conv2d", {"image": np.ones((512, 512), BYTES), "kernel": [[1.0]]}, "image"),
    ("hist", "histogram", {"signal": [1.0, 2.0], "bins": 65536}, "bins"),
]


def _by_id(site: Site, watcher: Any, count: int) -> dict[str, Result]:
    return {r.id: r for r in site.results(watcher, count)}


def test_outputs_larger_than_a_result_may_carry_are_refused_at_check_8(any_site: Site) -> None:
    site = any_site
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    with site.agent() as agent:
        for task_id, kernel, params, _ in OVERSIZED:
            site.submit(device, "sensor-1", kernel, params, task_id=task_id)
        results = _by_id(site, watcher, len(OVERSIZED))
        for task_id, kernel, _, field in OVERSIZED:
            result = results[task_id]
            assert (result.kernel, result.status) == (kernel, "rejected"), (task_id, result.error)
            assert result.error is not None and result.error["code"] == "invalid_params"
            assert result.error["message"].startswith(f"{field}: gives a result of "), result.error
        # just under the limit: accepted, run, published
        site.submit(device, "sensor-1", "histogram", {"signal": [1.0, 2.0], "bins": 65000}, task_id="h-ok")
        [ok] = site.results(watcher, 1)
        assert (ok.id, ok.status) == ("h-ok", "completed") and len(ok.result["counts"]) == 65000
        assert agent.link.connected and agent.link.connects == 1


def test_an_output_still_too_large_ends_abandoned_at_once_and_the_agent_keeps_working(any_site: Site) -> None:
    """zscore_anomalies' `indices` depend on the data: 1,000,000 one-byte samples, every one an
    anomaly, are 8 MB of indices. Abandoned at the first attempt (max_retries 2 is not used)."""
    site = any_site
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    with site.agent() as agent:
        params = {"signal": _alternating(1_000_000), "threshold": 0.5}
        site.submit(device, "sensor-1", "zscore_anomalies", params, task_id="z", max_retries=2)
        [result] = site.results(watcher, 1)
        assert (result.id, result.status, result.attempt) == ("z", "abandoned", 1), result.error
        assert result.error is not None and result.error["code"] == "result_too_large"
        assert "security.max_payload" in result.error["message"]
        site.submit(device, "sensor-1", "stats", {"signal": [1.0, 2.0]}, task_id="after")
        [after] = site.results(watcher, 1)
        assert (after.id, after.status) == ("after", "completed")
        assert agent.outbox.wait_empty(10)
        assert agent.link.connected and agent.link.connects == 1
        assert agent.lifecycle.totals["abandoned"] == 1


def test_a_stored_result_too_large_is_published_as_result_too_large_after_a_restart(site: Site) -> None:
    """An outbox row stored before sizes were checked (or under a larger max_payload) was
    re-published at every start; it is replaced by its `result_too_large` answer."""
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    with site.agent() as agent:
        data_dir = agent.config.agent.data_dir
    fields = {
        "id": "big",
        "node": "node-1",
        "kernel": "matrix_multiply",
        "status": "completed",
        "run": 1,
        "attempt": 1,
        "received_at": 1.0e9,
        "started_at": 1.0e9,
        "finished_at": 1.0e9 + 1,
        "duration_ms": 2.5,
        "error": None,
        "trace": None,
    }
    body = pack_with_raw(fields, {"result": packb(np.ones((600, 600)))})  # 2.9 MB
    assert len(body) > MAX_PAYLOAD
    store = Store.open(data_dir)  # as the agent before this change stored it
    store.commit_sync(
        [Op(OUTBOX, "sensor-1/big#1", {"topic": TOPICS.results("node-1", "big"), "body": body, "at": 1.0})]
    )
    store.close()
    with site.agent() as agent:
        [result] = site.results(watcher, 1)
        assert (result.id, result.status, result.run) == ("big", "abandoned", 1)
        assert result.error is not None and result.error["code"] == "result_too_large"
        assert result.finished_at == 1.0e9 + 1  # the stored result's own fields
        assert agent.outbox.wait_empty(10)
        assert agent.store.count(OUTBOX) == 0
        assert agent.link.connects == 1
