"""deploy/monitoring's fleet view against a real edge-gateway: every edge_fleet_* and edge_gateway_*
metric the Grafana dashboard and the alert rules name is one the gateway's /metrics exports,
parsed with Prometheus' own parser (promtool unit-tests the rules in tests/agent/test_monitoring.py)."""

from __future__ import annotations

import re
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.agent.test_monitoring import dashboard_exprs, rules
from tests.support.gateway import GatewaySite, gateway_process

FLEET_METRIC = re.compile(r"\b(edge_(?:fleet|gateway)_[a-zA-Z0-9_]+)\b")


def test_every_fleet_metric_the_dashboard_and_rules_use_is_exported(gw_site: GatewaySite) -> None:
    gw = gw_site
    texts = dashboard_exprs() + [rule["expr"] for rule in rules()]
    referenced = {name for text in texts for name in FLEET_METRIC.findall(text)}
    with gw.site.agent(heartbeat_interval_s=1), gateway_process(gw):
        token = gw.token("webapp")
        gw.call(
            "POST",
            "/api/v1/compute?wait=20",
            {"algorithm": "stats", "parameters": {"signal": [1]}},
            token=token,
        )
        deadline = time.monotonic() + 30
        while True:  # a heartbeat of node-1 (its gauges) and a forged message (its counter)
            status, text, _ = gw.call("GET", "/metrics")
            if 'edge_fleet_node_queued{node="node-1"}' in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.5)
        device = gw.site.client("node-2")  # an agent identity: may publish on its own heartbeat topic
        device.publish("edge/heartbeat/node-2", b"\x81\xa1x\x01")  # not an envelope: forged, malformed
        time.sleep(1.0)
        status, text, _ = gw.call("GET", "/metrics")
    assert status == 200
    samples = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    unknown = sorted(referenced - samples)
    assert not unknown, f"deploy/monitoring uses metrics the gateway does not export: {unknown}"
    for name in (
        "edge_fleet_node_online",
        "edge_fleet_node_heartbeat_age_seconds",
        "edge_gateway_forged_messages_total",
        "edge_gateway_result_latency_seconds_bucket",
        "edge_gateway_broker_connected",
    ):
        assert name in referenced, name
    assert 'edge_gateway_forged_messages_total{code="malformed"} 1' in text
