"""Observability of a real agent on a real broker: /metrics counts what the test did (parsed by
Prometheus' own parser), /health follows the broker and the workers, the endpoint's errors are
clear, and JSON log lines about a task carry its id and trace."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from agent.node.app import Agent
from agent.node.errors import ConfigError
from agent.protocol import RejectReport, Result
from tests.agent.conftest import TIMEOUT, TOPICS, Site, agent_process

RESULTS = TOPICS.prefix + "/results/node-1/#"
GOOD = {"signal": [1.0, 2.0, 3.0]}
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never a proxy


def http_get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, whatever the status."""
    try:
        with _DIRECT.open(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def scrape(base_url: str) -> Samples:
    status, content_type, text = http_get(base_url + "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4"), (status, content_type)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of `name` over the samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def health(base_url: str) -> tuple[int, dict[str, Any]]:
    status, content_type, body = http_get(base_url + "/health")
    assert content_type == "application/json"
    return status, json.loads(body)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached in {timeout} s"
        time.sleep(0.05)


def url_of(agent: Agent) -> str:
    assert agent.http is not None and agent.http.port != 0
    return agent.http.url


def test_metrics_count_what_the_agent_did(any_site: Site) -> None:
    site = any_site
    watcher = site.watch(RESULTS, TOPICS.rejects("node-1"))
    device = site.client("sensor-1")
    with site.agent() as agent:
        base = url_of(agent)
        start = scrape(base)
        for status in ("completed", "abandoned", "expired", "cancelled", "rejected"):
            assert value(start, "edge_agent_tasks_total", status=status) == 0  # exist before any task
        for reason in ("timeout", "crash", "memory", "cancel"):
            assert value(start, "edge_agent_worker_restarts_total", reason=reason) == 0

        for n in range(3):
            site.submit(device, "sensor-1", "stats", GOOD, task_id=f"ok-{n}")
        site.submit(device, "sensor-1", "no_such_kernel", {}, task_id="unknown-1")
        site.submit(device, "sensor-1", "no_such_kernel", {}, task_id="unknown-2")
        site.submit(device, "sensor-1", "stats", {"signal": "not numbers"}, task_id="bad-params")
        topic, payload, _ = site.task("sensor-1", "stats", GOOD, task_id="forged")
        forged = bytearray(payload)
        forged[-5] ^= 0x01  # inside the signature
        device.publish(topic, bytes(forged))
        site.submit(device, "sensor-1", "test.hang", {}, task_id="hang", timeout_s=1.0, max_retries=0)

        opened: list[Any] = []
        deadline = time.monotonic() + TIMEOUT
        while sum(isinstance(m, Result) for m in opened) < 7 or not any(
            isinstance(m, RejectReport) for m in opened
        ):
            assert time.monotonic() < deadline, [getattr(m, "id", m) for m in opened]
            opened += [site.open(m) for m in watcher.expect(1, TIMEOUT)]
        assert agent.run_until_idle()
        statuses = sorted(r.status for r in opened if isinstance(r, Result))
        assert statuses == ["abandoned"] + ["completed"] * 3 + ["rejected"] * 3
        wait_for(lambda: agent.pool.alive == 2, "the worker killed by the timeout replaced")
        samples = scrape(base)
        status, body = health(base)
        _, _, missing = http_get(base + "/nope")
        assert http_get(base + "/nope")[0] == 404 and "/metrics" in missing

    expected_tasks = {"completed": 3, "abandoned": 1, "expired": 0, "cancelled": 0, "rejected": 3}
    for state, count in expected_tasks.items():
        assert value(samples, "edge_agent_tasks_total", status=state) == count, state
    assert value(samples, "edge_agent_tasks_accepted_total") == 4
    assert value(samples, "edge_agent_rejects_total", code="unknown_kernel", kind="result") == 2
    assert value(samples, "edge_agent_rejects_total", code="invalid_params", kind="result") == 1
    assert value(samples, "edge_agent_rejects_total", code="bad_signature", kind="report") == 1
    assert total(samples, "edge_agent_rejects_total") == 4
    assert value(samples, "edge_agent_worker_restarts_total", reason="timeout") == 1
    assert total(samples, "edge_agent_worker_restarts_total") == 1
    assert value(samples, "edge_agent_attempts_failed_total", code="timeout") == 1
    # Histograms: one observation per attempt (4 ran) and per one-shot result (4 accepted tasks).
    assert value(samples, "edge_agent_queue_wait_seconds_count") == 4
    assert value(samples, "edge_agent_queue_wait_seconds_bucket", le="+Inf") == 4
    assert value(samples, "edge_agent_run_seconds_count", kernel="stats") == 3
    assert value(samples, "edge_agent_run_seconds_count", kernel="test.hang") == 1
    assert value(samples, "edge_agent_run_seconds_sum", kernel="test.hang") >= 1.0  # killed after 1 s
    assert value(samples, "edge_agent_run_seconds_bucket", kernel="test.hang", le="0.5") == 0
    assert value(samples, "edge_agent_accept_to_result_seconds_count", status="completed") == 3
    assert value(samples, "edge_agent_accept_to_result_seconds_count", status="abandoned") == 1
    # Gauges read at scrape time.
    assert value(samples, "edge_agent_connected") == 1
    assert value(samples, "edge_agent_draining") == 0
    assert value(samples, "edge_agent_reconnects_total") == 0
    assert value(samples, "edge_agent_workers") == 2
    assert value(samples, "edge_agent_workers_alive") == 2
    assert value(samples, "edge_agent_outbox_size") == 0
    assert value(samples, "edge_agent_queue_bytes") == 0
    assert all(
        value(samples, "edge_agent_queue_depth", state=s) == 0 for s in ("queued", "scheduled", "running")
    )
    assert value(samples, "edge_agent_healthy") == 1
    assert value(samples, "edge_agent_rss_bytes") > 10e6
    [(info_labels, info)] = [(dict(ls), v) for (n, ls), v in samples.items() if n == "edge_agent_info"]
    assert info == 1 and info_labels["node"] == "node-1" and info_labels["version"] == __version__
    assert info_labels["backend"] in ("native", "numpy")
    assert status == 200 and body["status"] == "ok" and body["failed"] == [] and body["node"] == "node-1"
    assert set(body["checks"]) == {"broker", "store", "workers"}


def test_queue_depth_counts_queued_and_scheduled_tasks(site: Site) -> None:
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent(workers_count=1) as agent:
        base = url_of(agent)
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 2.0}, task_id="busy")
        wait_for(lambda: agent.pool.busy == 1, "the first task running")
        site.submit(device, "sensor-1", "stats", GOOD, task_id="waits-1")
        site.submit(device, "sensor-1", "stats", GOOD, task_id="waits-2")
        site.submit(device, "sensor-1", "stats", GOOD, task_id="later", run_at=time.time() + 600)
        # Stored (active) first, then queued: wait for both, or the gauge may be read in between.
        wait_for(lambda: agent.lifecycle.active() == 4 and len(agent.lifecycle.ready) == 2, "four tasks in")
        samples = scrape(base)
        assert value(samples, "edge_agent_queue_depth", state="running") == 1
        assert value(samples, "edge_agent_queue_depth", state="queued") == 2
        assert value(samples, "edge_agent_queue_depth", state="scheduled") == 1
        assert value(samples, "edge_agent_queue_bytes") == sum(
            len(row["body"]) for _, row in agent.store.rows("tasks")
        )
        assert [r.id for r in site.results(watcher, 3)] == ["busy", "waits-1", "waits-2"]
        wait_for(lambda: agent.pool.busy == 0, "the worker idle")
        samples = scrape(base)
        assert value(samples, "edge_agent_queue_depth", state="queued") == 0
        assert value(samples, "edge_agent_queue_depth", state="scheduled") == 1
        # The two that waited behind "busy" waited about a second or more; "busy" itself hardly.
        assert value(samples, "edge_agent_queue_wait_seconds_count") == 3
        assert value(samples, "edge_agent_queue_wait_seconds_bucket", le="0.5") == 1


def test_health_follows_the_broker_away_and_back(site: Site) -> None:
    with site.agent() as agent:
        base = url_of(agent)
        status, body = health(base)
        assert status == 200 and all(check["ok"] for check in body["checks"].values()), body
        # what `edge-agent install` waits for: this version, its birth acknowledged by the broker
        wait_for(lambda: health(base)[1]["presence"]["online"], "the birth acknowledged")
        first = health(base)[1]
        assert first["version"] == __version__ and first["presence"]["session"] >= 1, first
        assert site.broker.embedded is not None
        site.broker.embedded.stop()  # the broker goes away (restart() below starts it again)

        wait_for(lambda: health(base)[0] == 503, "/health 503 without the broker")
        status, body = health(base)
        assert body["status"] == "unhealthy" and body["failed"] == ["broker"], body
        assert not body["checks"]["broker"]["ok"] and "not connected" in body["checks"]["broker"]["detail"]
        assert body["checks"]["store"]["ok"] and body["checks"]["workers"]["ok"]
        assert body["presence"]["online"] is False
        samples = scrape(base)  # /metrics still answers, and says the same
        assert value(samples, "edge_agent_connected") == 0
        assert value(samples, "edge_agent_healthy") == 0
        assert value(samples, "edge_agent_health_check", check="broker") == 0
        assert value(samples, "edge_agent_health_check", check="store") == 1

        site.broker.restart()
        wait_for(lambda: health(base)[0] == 200, "/health 200 with the broker back")
        wait_for(lambda: health(base)[1]["presence"]["online"], "the new session's birth acknowledged")
        assert health(base)[1]["presence"]["session"] > first["presence"]["session"]
        samples = scrape(base)
        assert value(samples, "edge_agent_connected") == 1
        assert value(samples, "edge_agent_reconnects_total") == 1
        assert value(samples, "edge_agent_healthy") == 1


def test_a_worker_killed_while_idle_is_replaced_and_counted(site: Site) -> None:
    with site.agent() as agent:
        base = url_of(agent)
        worker = agent.pool.workers[1]
        old = worker.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: worker.pid != old and worker.alive, "the worker replaced without a task")
        wait_for(lambda: health(base)[0] == 200, "healthy again")
        samples = scrape(base)
        assert value(samples, "edge_agent_worker_restarts_total", reason="crash") == 1
        assert value(samples, "edge_agent_workers_alive") == 2


def test_a_dead_worker_makes_health_503_until_replaced(site: Site) -> None:
    """Checked on the Health object with the driver threads' replacement held back."""
    with site.agent(workers_count=1) as agent:
        worker = agent.pool.workers[0]
        ensure_alive = worker.ensure_alive
        worker.ensure_alive = lambda: False  # type: ignore[method-assign]
        try:
            assert worker.pid is not None
            os.kill(worker.pid, signal.SIGKILL)
            wait_for(lambda: not worker.alive, "the worker seen dead")
            healthy, body = agent.health.report()
            assert not healthy and body["failed"] == ["workers"]
            assert body["checks"]["workers"]["detail"] == "0 of 1 alive; down: worker 0"
        finally:
            worker.ensure_alive = ensure_alive  # type: ignore[method-assign]
        wait_for(lambda: agent.health.ok(), "healthy once the worker is replaced")


def test_the_endpoint_errors_are_clear_and_it_can_be_off(site: Site) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        agent = Agent(site.config(metrics_port=port))
        try:
            with pytest.raises(
                ConfigError, match=rf"^metrics\.port: 127\.0\.0\.1:{port} is in use .*free port"
            ):
                agent.start()
            assert not any(w.pid for w in agent.pool.workers)  # refused before anything started
        finally:
            agent.store.close()
            agent.audit.close()
        with agent_process(site, metrics_port=port) as proc:  # `edge-agent run`: exit status 2
            assert proc.proc.wait(TIMEOUT) == 2, proc.output()
            assert f"configuration error: metrics.port: 127.0.0.1:{port} is in use" in proc.output()
    with pytest.raises(ConfigError, match=r"^metrics\.port: must be from 0 to 65535"):
        site.config(metrics_port=70000)
    with site.agent(metrics_enabled="false") as agent:
        assert agent.http is None and agent.health.ok()


def test_the_endpoint_survives_bad_and_idle_clients(site: Site) -> None:
    with site.agent() as agent:
        base = url_of(agent)
        assert agent.http is not None
        address = ("127.0.0.1", agent.http.port)
        with socket.create_connection(address) as idle, socket.create_connection(address) as bad:
            idle.sendall(b"GET /metr")  # never finishes its request line
            bad.sendall(b"\x00\xffnot http at all\r\n\r\n")
            reply = bad.recv(4096)
            assert b"Error code: 400" in reply  # (stdlib answers a line it cannot parse as HTTP/0.9)
            assert health(base)[0] == 200  # served while the idle client holds its connection
            assert value(scrape(base), "edge_agent_connected") == 1
        request = urllib.request.Request(base + "/metrics", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            _DIRECT.open(request, timeout=10)
        assert refused.value.code == 501
        refused.value.close()
        assert health(base)[0] == 200 and http_get(base + "/metrics?name[]=x")[0] == 200


def test_json_logs_carry_the_task_id_and_trace(site: Site) -> None:
    watcher = site.watch(RESULTS)
    presence = site.watch(TOPICS.presence("node-1"))
    device = site.client("sensor-1")
    traces = {"ok": TRACE, "crashes": TRACE.replace("00f067aa", "11111111"), "nope": TRACE[:-2] + "00"}
    with agent_process(site, log_level="debug") as proc:  # default format "auto": not a tty, so JSON
        deadline = time.monotonic() + TIMEOUT
        while not any(site.open(m).state == "online" for m in presence.expect(1, TIMEOUT)):
            assert time.monotonic() < deadline and proc.proc.poll() is None, proc.output()
        site.submit(device, "sensor-1", "stats", GOOD, task_id="ok", trace=traces["ok"])
        site.submit(
            device, "sensor-1", "test.crash", {}, task_id="crashes", max_retries=0, trace=traces["crashes"]
        )
        site.submit(device, "sensor-1", "no_such_kernel", {}, task_id="nope", trace=traces["nope"])
        site.submit(device, "sensor-1", "stats", GOOD, task_id="untraced")
        assert sorted(r.id for r in site.results(watcher, 4)) == ["crashes", "nope", "ok", "untraced"]
        found = re.search(r"metrics on (http://127\.0\.0\.1:(\d+))/metrics", proc.output())
        assert found is not None and found.group(2) != "0", proc.output()  # port 0: the bound one is logged
        assert value(scrape(found.group(1)), "edge_agent_tasks_total", status="completed") == 2
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(TIMEOUT) == 0, proc.output()

    lines = proc.output().splitlines()
    text_lines = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ", line)]
    assert not text_lines, text_lines[:3]
    docs = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(docs) > 10
    for doc in docs:
        assert {"ts", "level", "logger", "message", "node"} <= set(doc) and doc["node"] == "node-1"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["ts"])
        assert ("trace" not in doc) or ("task" in doc)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        if "task" in doc:
            by_task.setdefault(doc["task"], []).append(doc)
    for task_id, trace in traces.items():
        assert by_task.get(task_id), f"no log line about {task_id}"
        assert all(doc.get("trace") == trace for doc in by_task[task_id]), by_task[task_id]
    assert all("trace" not in doc for doc in by_task["untraced"])

    def messages(task_id: str, level: str) -> list[str]:
        return [doc["message"] for doc in by_task[task_id] if doc["level"] == level]

    assert any("accepted" in m for m in messages("ok", "debug"))
    assert any("attempt 1 started" in m for m in messages("ok", "debug"))
    assert any("ended: completed" in m for m in messages("ok", "debug"))
    assert any("attempt 1 failed: worker_crashed" in m for m in messages("crashes", "warning"))
    assert any("ended: abandoned" in m for m in messages("crashes", "warning"))
    assert any("rejected: unknown_kernel" in m for m in messages("nope", "info"))
