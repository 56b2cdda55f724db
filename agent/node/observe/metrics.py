"""A small metrics registry of our own, exposed in the Prometheus text format 0.0.4.

    registry = Registry()
    tasks = registry.counter("edge_agent_tasks_total", "Tasks that ended, by status.", ["status"])
    tasks.labels("completed").inc()
    wait = registry.histogram("edge_agent_queue_wait_seconds", "...", buckets=(0.01, 0.1, 1.0))
    wait.observe(0.004)
    registry.gauge_function("edge_agent_connected", "...", lambda: {(): 1.0})
    registry.expose()   # the text a scraper reads

Why not `prometheus_client`: its import costs about 1 MiB of RSS on top of the agent's own imports
(measured; the agent idles near its 60 MB budget) and brings a process-wide default registry,
while the agent needs only counters, gauges and histograms. Every metric is thread-safe (one small
lock per labelled child, held for an addition); gauges whose value the agent already knows are
functions read at scrape time, so the task path never pays for them.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: Seconds, from a millisecond to an hour: queue waits, kernel runs and result latencies all fit.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

LabelValues = tuple[str, ...]
#: What a function metric returns at scrape time: a value per tuple of label values.
Reading = Callable[[], dict[LabelValues, float]]


class MetricError(ValueError):
    """A metric defined or used the wrong way (a bug in the caller, caught at start-up)."""


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: `+Inf`, `-Inf`, `NaN`, integers without a dot."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def escape_label(value: str) -> str:
    """Label values escape backslash, double quote and line feed (format 0.0.4)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes backslash and line feed."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{escape_label(v)}"' for n, v in zip(names, values, strict=True)) + "}"


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        if not _NAME.match(name):
            raise MetricError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL.match(label) or label.startswith("__") or label == "le":
                raise MetricError(f"{name}: invalid label name {label!r}")
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)

    def _key(self, values: Sequence[object]) -> LabelValues:
        if len(values) != len(self.labelnames):
            raise MetricError(f"{self.name} takes labels {self.labelnames}, got {tuple(values)}")
        return tuple(str(v) for v in values)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> Iterable[str]:
        raise NotImplementedError


class _Value:
    """One number behind a lock: a counter's or a gauge's child."""

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0

    def get(self) -> float:
        return self._value


class CounterChild(_Value):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise MetricError("a counter only goes up")
        with self._lock:
            self._value += amount


class GaugeChild(_Value):
    __slots__ = ()

    def set(self, value: float) -> None:
        self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)


class _Family(_Metric):
    """A metric with one child per tuple of label values (created on first use)."""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, help_text, labelnames)
        self._children: dict[LabelValues, _Value] = {}
        self._lock = threading.Lock()
        if not self.labelnames:
            self.labels()  # a metric without labels exists from the start, at 0

    def _new(self) -> _Value:
        raise NotImplementedError

    def _child(self, values: tuple[object, ...]) -> _Value:
        child = self._children.get(values)  # type: ignore[arg-type]  # the hot path: labels seen before
        if child is None:
            key = self._key(values)
            with self._lock:
                child = self._children.setdefault(key, self._new())
        return child

    def labels(self, *values: object) -> _Value:
        return self._child(values)

    def samples(self) -> Iterable[str]:
        with self._lock:
            children = sorted(self._children.items())
        for values, child in children:
            yield f"{self.name}{_labels_text(self.labelnames, values)} {format_value(child.get())}"


class Counter(_Family):
    kind = "counter"

    def _new(self) -> CounterChild:
        return CounterChild()

    def labels(self, *values: object) -> CounterChild:
        child = self._child(values)
        assert isinstance(child, CounterChild)
        return child

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)


class Gauge(_Family):
    kind = "gauge"

    def _new(self) -> GaugeChild:
        return GaugeChild()

    def labels(self, *values: object) -> GaugeChild:
        child = self._child(values)
        assert isinstance(child, GaugeChild)
        return child

    def set(self, value: float) -> None:
        self.labels().set(value)


class FunctionMetric(_Metric):
    """A counter or gauge whose values are read from the agent when scraped."""

    def __init__(
        self, name: str, help_text: str, labelnames: Sequence[str], kind: str, read: Reading
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.kind = kind
        self._read = read

    def samples(self) -> Iterable[str]:
        for values, value in sorted(self._read().items()):
            yield f"{self.name}{_labels_text(self.labelnames, self._key(values))} {format_value(value)}"


class HistogramChild:
    """Per-bucket counts (not cumulative: cumulated when exposed), a sum and a count."""

    __slots__ = ("_buckets", "_counts", "_lock", "_sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        # The first bucket whose bound is >= value (NaN only in +Inf, as Prometheus counts it).
        index = len(self._buckets) if math.isnan(value) else bisect.bisect_left(self._buckets, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[int], float]:
        """Cumulative bucket counts (the last is the total count) and the sum, consistent."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        running, cumulative = 0, []
        for count in counts:
            running += count
            cumulative.append(running)
        return cumulative, total


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labelnames: Sequence[str], buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, help_text, labelnames)
        bounds = tuple(float(b) for b in buckets if not math.isinf(b))
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise MetricError(f"{name}: buckets must be increasing and distinct, got {tuple(buckets)}")
        self.buckets = bounds
        self._children: dict[LabelValues, HistogramChild] = {}
        self._lock = threading.Lock()
        if not self.labelnames:
            self.labels()

    def labels(self, *values: object) -> HistogramChild:
        child = self._children.get(values)  # type: ignore[arg-type]  # the hot path: labels seen before
        if child is None:
            key = self._key(values)
            with self._lock:
                child = self._children.setdefault(key, HistogramChild(self.buckets))
        return child

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def samples(self) -> Iterable[str]:
        with self._lock:
            children = sorted(self._children.items())
        names = (*self.labelnames, "le")
        for values, child in children:
            cumulative, total = child.snapshot()
            bounds = [*(repr(b) for b in self.buckets), "+Inf"]
            for bound, count in zip(bounds, cumulative, strict=True):
                yield f"{self.name}_bucket{_labels_text(names, (*values, bound))} {count}"
            plain = _labels_text(self.labelnames, values)
            yield f"{self.name}_sum{plain} {format_value(total)}"
            yield f"{self.name}_count{plain} {cumulative[-1]}"


class Registry:
    """Metrics by name, exposed in the order they were defined."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _add(self, metric: _Metric) -> None:
        with self._lock:
            if metric.name in self._metrics:
                raise MetricError(f"metric {metric.name} is defined twice")
            self._metrics[metric.name] = metric

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help_text, labelnames)
        self._add(metric)
        return metric

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, help_text, labelnames)
        self._add(metric)
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = Histogram(name, help_text, labelnames, buckets)
        self._add(metric)
        return metric

    def gauge_function(
        self, name: str, help_text: str, read: Reading, labelnames: Sequence[str] = ()
    ) -> FunctionMetric:
        metric = FunctionMetric(name, help_text, labelnames, "gauge", read)
        self._add(metric)
        return metric

    def counter_function(
        self, name: str, help_text: str, read: Reading, labelnames: Sequence[str] = ()
    ) -> FunctionMetric:
        metric = FunctionMetric(name, help_text, labelnames, "counter", read)
        self._add(metric)
        return metric

    def names(self) -> list[str]:
        with self._lock:
            return list(self._metrics)

    def expose(self) -> str:
        """The whole registry in the text format; a function metric that fails is left out (and
        named in a comment) rather than failing the scrape."""
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for metric in metrics:
            try:
                samples = list(metric.samples())
            except Exception as exc:  # a reading of the agent failed: the rest is still worth having
                lines.append(f"# {metric.name} not read: {type(exc).__name__}")
                continue
            lines.extend(metric.header())
            lines.extend(samples)
        return "\n".join(lines) + "\n"
