"""Previews of results and params (gateway/preview.py) and the fixed-size history rings
(gateway/history.py): bounded whatever the input, JSON-safe, and agreeing with numpy."""

from __future__ import annotations

import json

import numpy as np

from gateway.history import SeenResults, Throughput
from gateway.preview import params_summary, preview


def test_an_array_preview_is_small_json_and_agrees_with_numpy() -> None:
    values = np.random.default_rng(1).normal(size=(300, 400))
    got = preview(values)
    json.dumps(got, allow_nan=False)
    assert got["shape"] == [300, 400] and got["dtype"] == "float64"
    assert got["head"] == values.reshape(-1)[:8].tolist() and len(got["plot"]) == 64
    assert got["plot"][0] == values.flat[0] and got["plot"][-1] == values.flat[-1]
    assert (got["min"], got["max"]) == (values.min(), values.max())
    assert len(json.dumps(got)) < 3000  # of 120,000 numbers


def test_nan_and_infinity_become_null_and_min_max_skip_them() -> None:
    got = preview(np.array([np.nan, 2.0, np.inf, -1.0]))
    assert got["head"] == [None, 2.0, None, -1.0] and (got["min"], got["max"]) == (-1.0, 2.0)
    assert preview(np.array([np.nan]))["min"] is None
    assert preview(float("nan")) is None and preview({"std": float("inf")}) == {"std": None}
    json.dumps(preview(np.full(100, np.nan)), allow_nan=False)


def test_maps_lists_and_other_values_are_capped() -> None:
    records = [{"id": f"t-{n}", "status": "completed", "nested": {"deep": {"deeper": 1}}} for n in range(50)]
    got = preview(records)  # what sys.list answers: a list of maps
    assert got["shape"] == [50] and got["dtype"] == "object" and len(got["head"]) == 8
    assert got["head"][0] == {"id": "t-0", "status": "completed", "nested": {"keys": 1}}
    assert len(preview({f"k{n}": n for n in range(100)})) == 20
    assert preview("x" * 1000).endswith("…") and len(preview("x" * 1000)) == 201
    assert preview(b"\x00" * 10) == {"bytes": 10}
    assert preview(np.int64(3)) == 3 and preview(True) is True
    counts = preview(np.array([1, 5, 2], dtype=np.int64))
    assert counts["dtype"] == "int64" and counts["head"] == [1, 5, 2]
    assert (counts["min"], counts["max"]) == (1, 5)
    assert preview(np.array([True, False]))["max"] == 1
    empty = preview(np.zeros((0, 3)))
    assert empty["shape"] == [0, 3] and empty["plot"] is None and empty["min"] is None


def test_params_are_summarized_by_shape_and_dtype() -> None:
    a = np.zeros((40, 30), dtype="<f4")
    summary = params_summary({"matrix_a": a, "matrix_b": [[1, 2], [3, 4]], "window": 5, "task": "t-1"})
    assert summary == {
        "matrix_a": {"shape": [40, 30], "dtype": "float32"},
        "matrix_b": {"shape": [2, 2], "dtype": "int64"},
        "window": 5,
        "task": "t-1",
    }


def test_throughput_keeps_thirty_buckets_of_ten_seconds() -> None:
    t = Throughput()
    start = 1_000_000.0
    for second in range(0, 400, 2):  # one result every 2 s for 400 s: 5 per bucket
        t.add("node-1", start + second)
    view = t.view(start + 399)
    assert view["bucket_s"] == 10 and view["end"] == start + 400
    assert view["nodes"]["node-1"] == [5] * 30
    later = t.view(start + 399 + 100)  # 10 buckets later, nothing came
    assert later["nodes"]["node-1"] == [5] * 20 + [0] * 10
    t.add("node-1", start + 499)
    assert t.view(start + 499)["nodes"]["node-1"] == [5] * 20 + [0] * 9 + [1]
    t.add("node-1", start)  # older than the ring: not counted
    assert sum(t.view(start + 499)["nodes"]["node-1"]) == 101
    assert t.view(start + 10_000)["nodes"]["node-1"] == [0] * 30


def test_seen_results_keep_the_last_thousand_once_each() -> None:
    seen = SeenResults()
    for n in range(1500):
        assert seen.add({"node": "node-1", "id": f"t-{n}", "run": 1})
    assert not seen.add({"node": "node-1", "id": "t-1499", "run": 1})  # a redelivery
    assert seen.add({"node": "node-1", "id": "t-1499", "run": 2})  # the next run of a recurring task
    assert len(seen) == 1000
    assert [s["id"] for s in seen.newest(3)] == ["t-1499", "t-1499", "t-1498"]
    assert seen.of_task("t-10") == [] and [s["run"] for s in seen.of_task("t-1499")] == [1, 2]
