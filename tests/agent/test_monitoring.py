"""deploy/monitoring against the real agent: every metric the Grafana dashboard and the alert rules
name is one the agent exports; promtool checks and unit-tests the rules; a real Prometheus scrapes a
real agent, loads the rules (all healthy) and evaluates every dashboard query without an error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.agent.conftest import TOPICS, Site
from tests.agent.test_observability import GOOD, http_get, url_of, wait_for
from tests.support.services import free_port, require_tool, wait_for_port

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES = MONITORING / "alerts.yml"
METRIC = re.compile(r"\b(edge_agent_[a-zA-Z0-9_]+|up)\b")
#: Series that Prometheus makes itself for every target.
PROMETHEUS_MADE = {"up"}


def _exprs(node: Any) -> Iterator[str]:
    """Every `expr` of a dashboard (panels, targets, nested rows)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def dashboard_exprs() -> list[str]:
    return list(_exprs(json.loads(DASHBOARD.read_text())))


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def referenced_metrics() -> set[str]:
    texts = dashboard_exprs() + [rule["expr"] for rule in rules()]
    texts += [
        text for rule in rules() for text in rule.get("annotations", {}).values()
    ]  # `query` in templates
    return {name for text in texts for name in METRIC.findall(text)}


def exported_names(site: Site) -> tuple[set[str], set[str]]:
    """(family names, sample names) of a real agent's /metrics after it ran a task and a reject."""
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    with site.agent() as agent:
        site.submit(device, "sensor-1", "stats", GOOD, task_id="ok")
        site.submit(device, "sensor-1", "no_such_kernel", {}, task_id="nope")
        site.results(watcher, 2)
        status, _, text = http_get(url_of(agent) + "/metrics")
        assert status == 200
    families = list(text_string_to_metric_families(text))
    return {f.name for f in families}, {s.name for f in families for s in f.samples}


def test_every_metric_the_dashboard_and_rules_use_is_exported(site: Site) -> None:
    families, samples = exported_names(site)
    referenced = referenced_metrics()
    unknown = sorted(referenced - samples - PROMETHEUS_MADE)
    assert not unknown, f"deploy/monitoring uses metrics the agent does not export: {unknown}"
    # Not vacuous: the files use the metrics the issue asks for.
    for name in (
        "edge_agent_tasks_total",
        "edge_agent_rejects_total",
        "edge_agent_queue_depth",
        "edge_agent_outbox_size",
        "edge_agent_worker_restarts_total",
        "edge_agent_reconnects_total",
        "edge_agent_queue_wait_seconds_bucket",
        "edge_agent_run_seconds_bucket",
        "edge_agent_accept_to_result_seconds_bucket",
        "edge_agent_connected",
        "edge_agent_healthy",
        "up",
    ):
        assert name in referenced, name
    assert all(name.startswith("edge_agent_") for name in families)


def test_the_dashboard_has_the_panels_an_operator_needs() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])  # Grafana needs unique ids
    titles = " | ".join(p["title"].lower() for p in panels)
    for words in (
        "nodes up",
        "by status",
        "rejects by code",
        "queue depth",
        "outbox",
        "restarts",
        "reconnects",
    ):
        assert words in titles, words
    exprs = dashboard_exprs()
    for histogram in ("queue_wait", "run", "accept_to_result"):
        for quantile in ("0.5", "0.99"):
            assert any(
                f"histogram_quantile({quantile}," in e and f"edge_agent_{histogram}_seconds_bucket" in e
                for e in exprs
            ), (histogram, quantile)
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "job", "instance"}


def test_the_alert_rules_cover_the_failures_and_say_what_to_do() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    for name in (
        "EdgeAgentDown",
        "EdgeAgentAbsent",
        "EdgeAgentOffline",
        "EdgeAgentUnhealthy",
        "EdgeAgentOutboxGrowing",
        "EdgeAgentRejectsSpiking",
        "EdgeAgentWorkerRestarts",
    ):
        rule = by_name[name]
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run([promtool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def _query(base: str, expr: str) -> dict[str, Any]:
    status, _, body = http_get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    doc: dict[str, Any] = json.loads(body)
    assert status == 200 and doc["status"] == "success", (expr, doc)
    return doc


def _scalar(base: str, expr: str) -> float | None:
    result = _query(base, expr)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_agent_loads_the_rules_and_runs_every_dashboard_query(
    site: Site, tmp_path: Path
) -> None:
    binary = require_tool("prometheus")
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    with site.agent() as agent:
        target = url_of(agent).removeprefix("http://")
        shutil.copy(RULES, tmp_path / "alerts.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": "edge-agent", "static_configs": [{"targets": [target]}]}],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_port(port, 30, proc)
            wait_for(lambda: http_get(base + "/-/ready")[0] == 200, "Prometheus ready")
            for n in range(3):
                site.submit(device, "sensor-1", "stats", GOOD, task_id=f"t{n}")
            site.submit(device, "sensor-1", "no_such_kernel", {}, task_id="nope")
            site.results(watcher, 4)
            wait_for(
                lambda: (_scalar(base, 'count_over_time(up{job="edge-agent"}[1m])') or 0) >= 4,
                "four scrapes of the agent",
            )
            assert _scalar(base, 'sum(up{job="edge-agent"})') == 1
            assert _scalar(base, 'sum(edge_agent_connected{job="edge-agent"})') == 1
            assert _scalar(base, 'sum(edge_agent_tasks_total{status="completed"})') == 3

            for expr in dashboard_exprs():
                concrete = (
                    expr.replace("$job", "edge-agent")
                    .replace("$instance", ".*")
                    .replace("$__rate_interval", "1m")
                )
                _query(base, concrete)
            _, _, body = http_get(base + "/api/v1/rules")
            loaded = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
            assert len(loaded) == len(rules())
            wait_for(
                lambda: all(
                    r["health"] == "ok"
                    for g in json.loads(http_get(base + "/api/v1/rules")[2])["data"]["groups"]
                    for r in g["rules"]
                ),
                "every rule evaluated without an error",
            )
            firing = json.loads(http_get(base + "/api/v1/alerts")[2])["data"]["alerts"]
            assert not [a for a in firing if a["state"] == "firing"], firing  # a healthy agent alerts nothing
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    if proc.returncode not in (0, -15):
        pytest.fail((tmp_path / "prometheus.log").read_text())
