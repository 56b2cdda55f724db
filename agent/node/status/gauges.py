"""Gauges read from the running agent when /metrics is scraped: what it is, what it has to do,
and the state of its parts. Nothing here is on the task path: each value is read from the part
that already knows it, at scrape time, without the task path's locks.

It reads the agent's parts through `Watched`, so it sits above the stages it reads (intake,
tasks, exec, publish, link, store) and below the app that wires them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from agent import __version__

from ..config import Config
from ..exec.pool import WorkerPool
from ..intake.intake import Intake
from ..link.mqtt import MqttLink
from ..observe.metrics import LabelValues, Registry
from ..observe.telemetry import QUEUE_STATES, RESTART_REASONS
from ..publish.outbox import Outbox
from ..store import Store
from ..tasks.lifecycle import Lifecycle
from .health import Health


class Watched(Protocol):
    """The parts of the agent the gauges read (agent.node.app.Agent)."""

    config: Config
    state: str
    pool: WorkerPool
    lifecycle: Lifecycle
    intake: Intake
    outbox: Outbox
    store: Store
    link: MqttLink
    health: Health


def _one(value: float) -> dict[LabelValues, float]:
    return {(): float(value)}


def _by(names: tuple[str, ...], read: Callable[[str], float]) -> Callable[[], dict[LabelValues, float]]:
    return lambda: {(name,): float(read(name)) for name in names}


def watch_agent(registry: Registry, agent: Watched) -> None:
    """Gauges and counters read from `agent` at scrape time (no locks of the task path)."""
    _watch_work(registry, agent)
    _watch_parts(registry, agent)


def _watch_work(r: Registry, agent: Watched) -> None:
    """What the agent is and what it has to do."""
    started = time.time()
    pool, lifecycle = agent.pool, agent.lifecycle

    def info() -> dict[LabelValues, float]:
        return {(agent.config.node, __version__, pool.backend): 1.0}

    def depth(state: str) -> float:
        running = pool.busy
        queued = len(lifecycle.ready)
        if state == "running":
            return running
        if state == "queued":
            return queued
        return max(0, lifecycle.active() - queued - running)

    def draining() -> dict[LabelValues, float]:
        return _one(agent.state == "draining" or not agent.intake.accepting)

    r.gauge_function(
        "edge_agent_info",
        "The agent's node, version and kernel backend (always 1).",
        info,
        ["node", "version", "backend"],
    )
    r.gauge_function(
        "edge_agent_start_time_seconds", "When the agent started (Unix time).", lambda: _one(started)
    )
    r.gauge_function("edge_agent_draining", "1 while the agent takes no new tasks (drain or stop).", draining)
    r.gauge_function(
        "edge_agent_queue_depth",
        "Tasks by state: queued (ready), scheduled (waiting for a time), running.",
        _by(QUEUE_STATES, depth),
        ["state"],
    )
    r.gauge_function(
        "edge_agent_queue_bytes",
        "Bytes of the bodies of the tasks held (queued, scheduled, running); limits.queue_bytes bounds it.",
        lambda: _one(agent.lifecycle.active_bytes()),
    )
    r.gauge_function(
        "edge_agent_outbox_size",
        "Results stored but not yet acknowledged by the broker.",
        lambda: _one(agent.outbox.pending),
    )
    r.counter_function(
        "edge_agent_store_compaction_failures_total",
        "Compactions of the state that failed (a full disk?): the journal grows until one succeeds.",
        lambda: _one(agent.store.stats().compaction_failures),
    )


def _watch_parts(r: Registry, agent: Watched) -> None:
    """The state of its parts: broker link, workers, memory, health."""
    import psutil  # the agent imports it already (heartbeats)

    process = psutil.Process()
    pool, link, health = agent.pool, agent.link, agent.health

    def restarts(reason: str) -> float:
        return sum(worker.restarts_by.get(reason, 0) for worker in pool.workers)

    def checks() -> dict[LabelValues, float]:
        return {(check.name,): float(check.ok) for check in health.checks()}

    r.gauge_function("edge_agent_connected", "1 while connected to the broker.", lambda: _one(link.connected))
    r.gauge_function("edge_agent_workers", "Worker processes configured.", lambda: _one(len(pool.workers)))
    r.gauge_function("edge_agent_workers_alive", "Worker processes alive.", lambda: _one(pool.alive))
    r.counter_function(
        "edge_agent_worker_restarts_total",
        "Worker processes replaced, by reason (timeout, crash, memory, cancel).",
        _by(RESTART_REASONS, restarts),
        ["reason"],
    )
    r.counter_function(
        "edge_agent_reconnects_total",
        "Connections to the broker after the first.",
        lambda: _one(max(0, link.connects - 1)),
    )
    r.gauge_function(
        "edge_agent_rss_bytes",
        "Resident memory of the agent process (workers excluded).",
        lambda: _one(process.memory_info().rss),
    )
    r.gauge_function(
        "edge_agent_health_check",
        "1 when the check passes (broker, store, workers), as /health reports it.",
        checks,
        ["check"],
    )
    r.gauge_function(
        "edge_agent_healthy",
        "1 when every health check passes (/health answers 200).",
        lambda: _one(health.ok()),
    )
