"""`GET /metrics`: the fleet in Prometheus' text format, from the agents' heartbeats over MQTT, so
Prometheus and Grafana see boards they cannot reach over HTTP.

Per node (label `node`): `edge_fleet_node_online`, `_heartbeat_age_seconds`, `_queued`, `_running`,
`_outbox`, `_rss_bytes`, `_cpu_percent`, `_load1`, `_draining`, and the agents' own counters
`_completed_total`, `_abandoned_total`, `_rejected_total`. The gateway's: `edge_gateway_tasks{status}`,
`edge_gateway_forged_messages_total{code}`, `edge_gateway_rejects_total{code}`,
`edge_gateway_result_latency_seconds` (a histogram of finished_at - received_at of every result
it verified), `edge_gateway_broker_connected`.
"""

from __future__ import annotations

from typing import Any

from .nodes import LATENCY_BUCKETS, FleetView

_NODE_GAUGES = (
    ("queued", "tasks queued on the node", "gauge"),
    ("running", "tasks running on the node", "gauge"),
    ("outbox", "results the node has not had acknowledged", "gauge"),
    ("rss_bytes", "the agent's resident memory", "gauge"),
    ("cpu_percent", "the agent's CPU use", "gauge"),
    ("load1", "the node's 1-minute load average", "gauge"),
    ("completed_total", "runs completed (the agent's counter)", "counter"),
    ("abandoned_total", "tasks abandoned (the agent's counter)", "counter"),
    ("rejected_total", "tasks rejected (the agent's counter)", "counter"),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(lines: list[str], name: str, help_text: str, kind: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def render(fleet: FleetView, counts: dict[str, int], connected: bool) -> str:
    nodes = fleet.nodes()
    lines: list[str] = []
    _family(lines, "edge_fleet_node_online", "1 while the node's presence is online", "gauge")
    lines += [f'edge_fleet_node_online{{node="{_label(n["node"])}"}} {int(n["online"])}' for n in nodes]
    _family(
        lines, "edge_fleet_node_heartbeat_age_seconds", "seconds since the node's last heartbeat", "gauge"
    )
    lines += [
        f'edge_fleet_node_heartbeat_age_seconds{{node="{_label(n["node"])}"}} {n["last_heartbeat_age_s"]}'
        for n in nodes
        if n["last_heartbeat_age_s"] is not None
    ]
    _family(lines, "edge_fleet_node_draining", "1 while the node drains", "gauge")
    lines += [
        f'edge_fleet_node_draining{{node="{_label(n["node"])}"}} {int(n["state"] == "draining")}'
        for n in nodes
        if "state" in n
    ]
    for key, help_text, kind in _NODE_GAUGES:
        name = f"edge_fleet_node_{key}"
        _family(lines, name, help_text, kind)
        lines += [f'{name}{{node="{_label(n["node"])}"}} {n[key]}' for n in nodes if key in n]
    _gateway(lines, fleet, counts, connected)
    return "\n".join(lines) + "\n"


def _counter(lines: list[str], name: str, help_text: str, label: str, values: dict[str, Any]) -> None:
    _family(lines, name, help_text, "counter" if name.endswith("_total") else "gauge")
    lines += [f'{name}{{{label}="{_label(k)}"}} {v}' for k, v in sorted(values.items())]


def _gateway(lines: list[str], fleet: FleetView, counts: dict[str, int], connected: bool) -> None:
    _family(lines, "edge_gateway_broker_connected", "1 while the gateway's MQTT link is up", "gauge")
    lines.append(f"edge_gateway_broker_connected {int(connected)}")
    _counter(lines, "edge_gateway_tasks", "tasks in the gateway's record, by status", "status", counts)
    _counter(lines, "edge_gateway_forged_messages_total", "messages that failed verification", "code",
             dict(fleet.forged))  # fmt: skip
    _counter(
        lines, "edge_gateway_rejects_total", "rejects reports agents published", "code", dict(fleet.rejects)
    )
    buckets, total = fleet.latency()
    name = "edge_gateway_result_latency_seconds"
    _family(lines, name, "a result's finished_at - received_at (the agent's clock)", "histogram")
    running = 0
    for bound, count in zip([*map(str, LATENCY_BUCKETS), "+Inf"], buckets, strict=True):
        running += count
        lines.append(f'{name}_bucket{{le="{bound}"}} {running}')
    lines.append(f"{name}_sum {total}")
    lines.append(f"{name}_count {running}")
