"""`GET /api/v1/task/{id}` for the dashboard's detail view, against a real fleet: the params summary
recorded at submit, the timings and a preview for a task the gateway submitted; a task a device
submitted straight over MQTT answered from the results the gateway saw (`source: seen`)."""

from __future__ import annotations

import numpy as np

from tests.gateway.conftest import conforms
from tests.gateway.sse import EventReader
from tests.support.gateway import GatewaySite, gateway_process


def test_a_submitted_task_has_its_params_summary_timings_and_preview(gw_site: GatewaySite) -> None:
    gw = gw_site
    a, b = np.ones((40, 30)), np.ones((30, 20))
    body = {
        "algorithm": "matrix_multiply",
        "parameters": {"matrix_a": a.tolist(), "matrix_b": b.astype(int).tolist()},
        "priority": 8,
    }
    with gw.site.agent(), gateway_process(gw):
        token = gw.token("webapp")
        status, posted, _ = gw.call("POST", "/api/v1/compute?wait=20", body, token=token)
        assert status == 200
        assert posted["params_summary"] == {
            "matrix_a": {"shape": [40, 30], "dtype": "float64"},
            "matrix_b": {"shape": [30, 20], "dtype": "int64"},
        }
        status, detail, _ = gw.call("GET", posted["links"]["self"], token=token)
    assert status == 200 and detail["source"] == "record"
    assert detail["params_summary"] == posted["params_summary"]
    t = detail["timings"]
    assert t["submitted_at"] <= t["received_at"] <= t["started_at"] <= t["finished_at"]
    assert t["latency_ms"] == detail["results"][0]["latency_ms"] > 0
    assert detail["preview"]["shape"] == [40, 20] and detail["preview"]["max"] == 30.0
    assert detail["priority"] == 8 and np.array(detail["result"]).shape == (40, 20)
    conforms("Task", detail)


def test_a_task_the_gateway_only_saw_is_answered_from_its_results(gw_site: GatewaySite) -> None:
    gw = gw_site
    signal = [3.0, 1.0, 2.0]
    with gw.site.agent(), gateway_process(gw):
        viewer, webapp = gw.token("viewer"), gw.token("webapp")
        stats = {"algorithm": "stats", "parameters": {"signal": signal}}
        with EventReader(gw.port, token=viewer) as events:
            events.next("snapshot")
            device = gw.site.client("sensor-1")
            task = gw.site.submit(device, "sensor-1", "stats", {"signal": signal})  # not through the gateway
            events.next("result", lambda r: r["id"] == task.id)
            status, mine, _ = gw.call("POST", "/api/v1/compute?wait=20", stats, token=webapp)
            assert status == 200
            events.next("result", lambda r: r["id"] == mine["task_id"])  # in the ring too, now
        status, seen, _ = gw.call("GET", f"/api/v1/task/{task.id}", token=viewer)
        assert status == 200, seen
        expected = {"task_id": task.id, "source": "seen", "status": "completed", "algorithm": "stats",
                    "node": "node-1", "params_summary": None, "priority": None}  # fmt: skip
        assert expected.items() <= seen.items()
        assert seen["preview"]["mean"] == 2.0 and seen["preview"]["max"] == 3.0
        assert seen["timings"]["submitted_at"] is None and seen["timings"]["latency_ms"] is not None
        assert [r["id"] for r in seen["results"]] == [task.id] and seen["results"][0]["verified"] is True
        conforms("SeenTask", seen)
        # another client's task is not read from the ring either: its record says whose it is
        assert gw.call("GET", f"/api/v1/task/{mine['task_id']}", token=viewer)[0] == 404
        assert gw.call("GET", f"/api/v1/task/{mine['task_id']}", token=webapp)[0] == 200
        assert gw.call("GET", "/api/v1/task/never-seen", token=viewer)[0] == 404
