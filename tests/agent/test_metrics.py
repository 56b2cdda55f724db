"""The metrics registry against Prometheus' own parser: names, labels and their escaping, histogram
buckets (cumulative, +Inf = count), counters from many threads, and readings that fail."""

from __future__ import annotations

import math
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.node.observe.metrics import CONTENT_TYPE, MetricError, Registry, escape_label, format_value


def _families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, as Prometheus parses the exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_and_gauges_parse_with_types_and_help() -> None:
    registry = Registry()
    tasks = registry.counter("edge_agent_tasks_total", "Tasks by status.", ["status"])
    tasks.labels("completed").inc()
    tasks.labels("completed").inc(2)
    tasks.labels("rejected").inc()
    plain = registry.counter("edge_agent_plain_total", "No labels: exists at 0.")
    depth = registry.gauge("edge_agent_depth", "A gauge.")
    depth.set(7)
    depth.labels().dec(2.5)
    text = registry.expose()
    families = _families(text)
    assert families["edge_agent_tasks"].type == "counter"  # type: ignore[attr-defined]
    assert families["edge_agent_tasks"].documentation == "Tasks by status."  # type: ignore[attr-defined]
    assert families["edge_agent_depth"].type == "gauge"  # type: ignore[attr-defined]
    samples = _samples(text)
    assert samples[("edge_agent_tasks_total", (("status", "completed"),))] == 3
    assert samples[("edge_agent_tasks_total", (("status", "rejected"),))] == 1
    assert samples[("edge_agent_plain_total", ())] == 0
    assert samples[("edge_agent_depth", ())] == 4.5
    plain.inc()
    assert _samples(registry.expose())[("edge_agent_plain_total", ())] == 1
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_label_values_are_escaped_and_read_back_exactly() -> None:
    registry = Registry()
    help_text = "Help with a \\ backslash\nand a new line."
    counter = registry.counter("edge_agent_odd_total", help_text, ["a", "b"])
    nasty = 'back\\slash "quoted"\nnew line, {braces} = and ünïcode'
    counter.labels(nasty, "").inc()
    text = registry.expose()
    assert '\\"quoted\\"' in text and "\\n" in text  # escaped on the wire, one sample per line
    assert len([line for line in text.splitlines() if line.startswith("edge_agent_odd_total")]) == 1
    samples = _samples(text)
    assert samples[("edge_agent_odd_total", (("a", nasty), ("b", "")))] == 1
    family = _families(text)["edge_agent_odd"]
    assert family.documentation == "Help with a \\ backslash\nand a new line."  # type: ignore[attr-defined]
    assert escape_label('a"b') == 'a\\"b'


def test_histogram_buckets_are_cumulative_with_inf_equal_to_count() -> None:
    registry = Registry()
    hist = registry.histogram("edge_agent_wait_seconds", "Waits.", ["kind"], buckets=(0.1, 1.0, 10.0))
    values = [0.05, 0.1, 0.5, 1.0, 2.0, 20.0, 30.0]  # bounds are inclusive: 0.1 is in le="0.1"
    for v in values:
        hist.labels("x").observe(v)
    hist.labels("y").observe(float("nan"))  # only +Inf counts a NaN
    text = registry.expose()
    family = _families(text)["edge_agent_wait_seconds"]
    assert family.type == "histogram"  # type: ignore[attr-defined]
    samples = _samples(text)

    def bucket(kind: str, le: str) -> float:
        return samples[("edge_agent_wait_seconds_bucket", (("kind", kind), ("le", le)))]

    assert [bucket("x", le) for le in ("0.1", "1.0", "10.0", "+Inf")] == [2, 4, 5, 7]
    assert samples[("edge_agent_wait_seconds_count", (("kind", "x"),))] == len(values)
    assert samples[("edge_agent_wait_seconds_sum", (("kind", "x"),))] == pytest.approx(sum(values))
    assert [bucket("y", le) for le in ("0.1", "1.0", "10.0", "+Inf")] == [0, 0, 0, 1]
    assert math.isnan(samples[("edge_agent_wait_seconds_sum", (("kind", "y"),))])


def test_function_metrics_are_read_at_scrape_time_and_a_failing_one_is_left_out() -> None:
    registry = Registry()
    state = {"depth": 3.0}
    registry.gauge_function("edge_agent_read", "Read when scraped.", lambda: {(): state["depth"]})
    registry.counter_function(
        "edge_agent_by_reason_total", "By reason.", lambda: {("timeout",): 2.0, ("crash",): 0.0}, ["reason"]
    )

    def broken() -> dict[tuple[str, ...], float]:
        raise RuntimeError("the part is gone")

    registry.gauge_function("edge_agent_broken", "Fails.", broken)
    registry.counter("edge_agent_after_total", "Defined after the broken one.")
    text = registry.expose()
    samples = _samples(text)
    assert samples[("edge_agent_read", ())] == 3
    assert samples[("edge_agent_by_reason_total", (("reason", "timeout"),))] == 2
    assert samples[("edge_agent_after_total", ())] == 0
    assert "# edge_agent_broken not read: RuntimeError" in text
    assert not any(name == "edge_agent_broken" for name, _ in samples)
    state["depth"] = 5
    assert _samples(registry.expose())[("edge_agent_read", ())] == 5


def test_counters_are_exact_under_concurrent_increments() -> None:
    registry = Registry()
    counter = registry.counter("edge_agent_racy_total", "Incremented from 8 threads.", ["t"])
    hist = registry.histogram("edge_agent_racy_seconds", "Observed from 8 threads.")
    per_thread = 5000

    def work() -> None:
        child = counter.labels("same")
        for _ in range(per_thread):
            child.inc()
            hist.observe(0.01)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples = _samples(registry.expose())
    assert samples[("edge_agent_racy_total", (("t", "same"),))] == 8 * per_thread
    assert samples[("edge_agent_racy_seconds_count", ())] == 8 * per_thread


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: r.counter("bad name", "x"), "invalid metric name"),
        (lambda r: r.counter("edge_ok_total", "x", ["le"]), "invalid label name"),
        (lambda r: r.gauge("edge_ok", "x", ["__reserved"]), "invalid label name"),
        (lambda r: r.histogram("edge_h", "x", buckets=(1.0, 0.5)), "increasing"),
        (lambda r: r.counter("edge_ok_total", "x", ["a"]).labels("1", "2"), "takes labels"),
        (lambda r: r.counter("edge_ok_total", "x").inc(-1), "only goes up"),
    ],
)
def test_misuse_is_a_clear_error(make: object, message: str) -> None:
    with pytest.raises(MetricError, match=message):
        make(Registry())  # type: ignore[operator]


def test_a_name_is_defined_once() -> None:
    registry = Registry()
    registry.counter("edge_agent_once_total", "x")
    with pytest.raises(MetricError, match="defined twice"):
        registry.gauge("edge_agent_once_total", "y")


def test_values_are_written_as_prometheus_writes_them() -> None:
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(float("inf")) == "+Inf"
    assert format_value(float("-inf")) == "-Inf"
    assert format_value(float("nan")) == "NaN"
    assert format_value(1e20) == "1e+20"
