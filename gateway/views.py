"""The JSON shapes of the API: a task, its results, the fleet's figures. One place, so the routes,
the OpenAPI document and the dashboard agree on them."""

from __future__ import annotations

import math
from typing import Any

from agent.protocol import Result

from .nodes import LATENCY_BUCKETS, FleetView
from .preview import preview
from .records import Answer, TaskRow


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null (a kernel's output may hold them); an array
    (ndarray ext 1, as the protocol library decodes it) becomes nested lists."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        value = tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


def latency_ms(received_at: float, finished_at: float | None) -> float | None:
    """The agent's receipt of a task to the end of its run, in ms (None: it never ran)."""
    return None if finished_at is None else round((finished_at - received_at) * 1000.0, 3)


def answer_view(answer: Answer) -> dict[str, Any]:
    latency = latency_ms(answer.received_at, answer.finished_at)
    return {
        "node": answer.node,
        "run": answer.run,
        "attempt": answer.attempt,
        "status": answer.status,
        "received_at": answer.received_at,
        "started_at": answer.started_at,
        "finished_at": answer.finished_at,
        "duration_ms": answer.duration_ms,
        "latency_ms": latency,
        "result": finite(answer.result),
        "error": answer.error,
    }


def timings(submitted_at: float | None, last: dict[str, Any] | None) -> dict[str, Any]:
    """When the task was submitted, and its latest run received, started and finished."""
    keys = ("received_at", "started_at", "finished_at", "latency_ms")
    return {"submitted_at": submitted_at, **{k: last[k] if last else None for k in keys}}


def task_view(row: TaskRow, prefix: str = "/api/v1") -> dict[str, Any]:
    answers = [answer_view(a) for a in row.answers]
    last = answers[-1] if answers else None
    return {
        "task_id": row.id,
        "status": row.status,
        "algorithm": row.kernel,
        "target": row.target,
        "client": row.client,
        "priority": row.priority,
        "submitted_at": row.submitted_at,
        "updated_at": row.updated_at,
        "expires_at": row.expires_at,
        "trace": row.trace,
        "node": last["node"] if last else None,
        "attempts": last["attempt"] if last else 0,
        "result": last["result"] if last and last["status"] == "completed" else None,
        "error": row.error,
        "results": answers,
        "params_summary": row.params_summary,
        "timings": timings(row.submitted_at, last),
        "links": {"self": f"{prefix}/task/{row.id}"},
    }


def task_detail(row: TaskRow, prefix: str = "/api/v1") -> dict[str, Any]:
    """`GET /task/{id}` of a task this gateway submitted: its view plus a preview of the latest
    result (the dashboard plots it without fetching megabytes twice)."""
    view = task_view(row, prefix)
    latest = row.answers[-1].result if row.answers else None
    return {**view, "preview": preview(latest), "source": "record"}


def seen_view(task_id: str, seen: list[dict[str, Any]], prefix: str = "/api/v1") -> dict[str, Any]:
    """`GET /task/{id}` of a task another issuer submitted, from the summaries of its results the
    gateway saw lately (history.SeenResults, oldest first): no params, no full result."""
    last = seen[-1]
    return {
        "task_id": task_id,
        "source": "seen",
        "status": last["status"],
        "algorithm": last["kernel"],
        "node": last["node"],
        "priority": last["priority"],
        "trace": last["trace"],
        "attempts": last["attempt"],
        "error": last["error"],
        "preview": last["preview"],
        "params_summary": None,
        "timings": timings(None, last),
        "results": seen,
        "links": {"self": f"{prefix}/task/{task_id}"},
    }


def result_summary(result: Result, priority: int | None) -> dict[str, Any]:
    """A verified result as the dashboard's stream shows it (`result` events, the snapshot, the
    seen-results ring): the value only as a preview (preview.py), never megabytes."""
    return {
        "id": result.id,
        "node": result.node,
        "kernel": result.kernel,
        "status": result.status,
        "run": result.run,
        "attempt": result.attempt,
        "received_at": result.received_at,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "duration_ms": result.duration_ms,
        "latency_ms": latency_ms(result.received_at, result.finished_at),
        "error": result.error,
        "trace": result.trace,
        "priority": priority,
        "preview": preview(result.result),
        "verified": True,
    }


def fleet_figures(fleet: FleetView, counts: dict[str, int], waiting: int) -> dict[str, Any]:
    nodes = fleet.nodes()
    buckets, total = fleet.latency()
    answered = sum(buckets)
    return {
        "nodes": {"total": len(nodes), "online": sum(1 for n in nodes if n["online"])},
        "queued": sum(n.get("queued", 0) for n in nodes),
        "running": sum(n.get("running", 0) for n in nodes),
        "completed_total": sum(n.get("completed_total", 0) for n in nodes),
        "abandoned_total": sum(n.get("abandoned_total", 0) for n in nodes),
        "gateway_tasks": counts,
        "waiting_requests": waiting,
        "forged": dict(fleet.forged),
        "rejects": dict(fleet.rejects),
        "result_latency": {
            "count": answered,
            "mean_ms": round(total / answered * 1000.0, 3) if answered else None,
            "buckets_s": dict(zip([str(b) for b in LATENCY_BUCKETS] + ["+Inf"], buckets, strict=True)),
        },
        "per_node": nodes,
    }
