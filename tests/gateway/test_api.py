"""edge-gateway end to end: a real process over HTTP, a real broker (both kinds), a real agent.

Results are compared with numpy; refusals with the status and code the API documents."""

from __future__ import annotations

import time

import numpy as np

from agent.protocol import packb
from tests.support.gateway import GatewaySite, gateway_process

SPEC_BODY = {
    "algorithm": "matrix_multiply",
    "parameters": {"matrix_a": [[1, 2], [3, 4]], "matrix_b": [[5, 6], [7, 8]]},
    "timeout_seconds": 30,
}


def test_the_original_specifications_compute_request_works_as_written(any_gw_site: GatewaySite) -> None:
    gw = any_gw_site
    with gw.site.agent(), gateway_process(gw):
        token = gw.token("webapp")
        status, body, headers = gw.call("POST", "/api/v1/compute?wait=20", SPEC_BODY, token=token)
        assert status == 200, body
        assert (
            body["status"] == "completed"
            and body["node"] == "node-1"
            and body["algorithm"] == "matrix_multiply"
        )
        np.testing.assert_allclose(body["result"], np.array([[1, 2], [3, 4]]) @ np.array([[5, 6], [7, 8]]))
        assert headers["Location"] == f"/api/v1/task/{body['task_id']}"
        [run] = body["results"]
        assert run["latency_ms"] is not None and run["finished_at"] >= run["started_at"] >= run["received_at"]
        # the same task read back, later, by its id
        status, again, _ = gw.call("GET", body["links"]["self"], token=token)
        assert status == 200 and again["result"] == body["result"] and again["client"] == "webapp"


def test_without_wait_202_then_the_result_by_polling_and_a_list(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gw.site.agent(), gateway_process(gw):
        token = gw.token("webapp")
        signal = list(np.random.default_rng(3).normal(size=100))
        status, body, _ = gw.call(
            "POST",
            "/api/v1/compute",
            {"algorithm": "stats", "parameters": {"signal": signal}, "node": "node-1", "priority": 8},
            token=token,
        )
        assert status == 202 and body["status"] in ("published", "completed"), body  # no wait: 202 either way
        status, done, _ = gw.call("GET", f"/api/v1/task/{body['task_id']}?wait=20", token=token)
        assert status == 200 and done["status"] == "completed"
        assert abs(done["result"]["mean"] - float(np.mean(signal))) < 1e-9
        status, page, _ = gw.call("GET", "/api/v1/tasks?limit=10", token=token)
        assert status == 200 and [t["task_id"] for t in page["tasks"]] == [body["task_id"]]


def test_msgpack_bodies_carry_ndarrays(gw_site: GatewaySite) -> None:
    gw = gw_site
    a = np.random.default_rng(1).normal(size=(40, 30))
    b = np.random.default_rng(2).normal(size=(30, 20))
    raw = packb({"algorithm": "matrix_multiply", "parameters": {"matrix_a": a, "matrix_b": b}})
    with gw.site.agent(), gateway_process(gw):
        token = gw.token("webapp")
        status, body, _ = gw.call(
            "POST",
            "/api/v1/compute?wait=20",
            raw=raw,
            token=token,
            headers={"Content-Type": "application/msgpack"},
        )
        assert status == 200, body
        np.testing.assert_allclose(body["result"], a @ b, rtol=1e-12)
        bad = gw.call(
            "POST",
            "/api/v1/compute",
            raw=b"\xc1",
            token=token,
            headers={"Content-Type": "application/msgpack"},
        )
        assert bad[0] == 400 and bad[1]["error"]["code"] == "invalid_body"


def test_bad_requests_are_refused_with_the_field_and_never_reach_the_fleet(gw_site: GatewaySite) -> None:
    gw = gw_site
    cases = [
        ({"algorithm": "nope"}, 422, "unknown_kernel", "algorithm"),
        ({"parameters": {}}, 422, "invalid_field", "algorithm"),
        ({"algorithm": "stats", "parameters": {"signal": "x"}}, 422, "invalid_params", "parameters.signal"),
        (
            {"algorithm": "matrix_multiply", "parameters": {"matrix_a": [[1, 2]], "matrix_b": [[1, 2]]}},
            422,
            "invalid_params",
            "parameters.matrix_b",
        ),
        (
            {"algorithm": "stats", "parameters": {"signal": [1]}, "priority": 12},
            422,
            "invalid_field",
            "priority",
        ),
        (
            {"algorithm": "stats", "parameters": {"signal": [1]}, "timeout_seconds": -1},
            422,
            "invalid_field",
            "timeout_seconds",
        ),
        ({"algorithm": "stats", "parameters": {"signal": [1]}, "node": "a/b"}, 422, "invalid_target", "node"),
        (
            {"algorithm": "stats", "parameters": {"signal": [1]}, "node": "n", "all": True},
            422,
            "invalid_target",
            "all",
        ),
        ({"algorithm": "stats", "color": "red"}, 422, "unknown_field", "color"),
        ([1, 2], 400, "invalid_body", None),
        ({"algorithm": "sys.drain"}, 422, "unknown_kernel", "algorithm"),
    ]
    with gw.site.agent() as agent, gateway_process(gw):
        token = gw.token("webapp")
        for body, status, code, field in cases:
            got, answer, _ = gw.call("POST", "/api/v1/compute", body, token=token)
            assert (got, answer["error"]["code"], answer["error"].get("field")) == (status, code, field), body
        got, answer, _ = gw.call(
            "POST",
            "/api/v1/compute",
            raw=b"{not json",
            token=token,
            headers={"Content-Type": "application/json"},
        )
        assert got == 400 and answer["error"]["code"] == "invalid_body"
        got, answer, _ = gw.call(
            "POST", "/api/v1/compute", raw=b"x", token=token, headers={"Content-Type": "text/csv"}
        )
        assert got == 415
        got, answer, _ = gw.call("POST", "/api/v1/compute", raw=b"0" * (17 << 20), token=token)
        assert got == 413 and answer["error"]["code"] == "body_too_large"
        got, answer, _ = gw.call("GET", "/api/v1/tasks?limit=0", token=token)
        assert got == 400 and answer["error"]["field"] == "limit"
        assert agent.intake.counts["accepted"] == 0 and agent.intake.counts["rejected"] == 0
        status, _, _ = gw.call("GET", "/health")
        assert status == 200  # still serving


def test_an_agents_rejection_maps_to_a_clear_answer(gw_site: GatewaySite) -> None:
    """A check only the agent can make: an output too large for its results (check 8 with its
    max_payload) is `rejected` by the agent; with ?wait that is 422 with the agent's code. A task
    id used twice is the gateway's own 409."""
    gw = gw_site
    column, row = np.ones((2048, 1)).tolist(), np.ones((1, 2048)).tolist()
    with gw.site.agent(), gateway_process(gw):
        token = gw.token("webapp")
        status, answer, _ = gw.call(
            "POST",
            "/api/v1/compute?wait=20",
            {"algorithm": "matrix_multiply", "parameters": {"matrix_a": column, "matrix_b": row}},
            token=token,
        )
        assert status == 422 and answer["status"] == "rejected", answer
        assert answer["error"]["code"] == "invalid_params" and "matrix_a" in answer["error"]["message"]
        body = {"algorithm": "stats", "parameters": {"signal": [1, 2]}, "task_id": "dup-1"}
        assert gw.call("POST", "/api/v1/compute?wait=20", body, token=token)[1]["status"] == "completed"
        status, answer, _ = gw.call(
            "POST", "/api/v1/compute", {**body, "parameters": {"signal": [3]}}, token=token
        )
        assert status == 409 and answer["error"] == {
            "code": "duplicate_task_id",
            "message": "task 'dup-1' was already submitted through this gateway",
            "field": "task_id",
        }


def test_roles_decide_and_clients_see_only_their_own_tasks(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gw.site.agent(), gateway_process(gw):
        web, viewer, ops = gw.token("webapp"), gw.token("viewer"), gw.token("ops")
        status, body, _ = gw.call(
            "POST", "/api/v1/compute", {"algorithm": "stats", "parameters": {"signal": [1]}}, token=viewer
        )
        assert status == 403 and body["error"]["code"] == "forbidden"
        status, task, _ = gw.call(
            "POST",
            "/api/v1/compute?wait=20",
            {"algorithm": "stats", "parameters": {"signal": [1]}},
            token=web,
        )
        assert status == 200
        assert gw.call("GET", f"/api/v1/task/{task['task_id']}", token=viewer)[0] == 404
        assert gw.call("GET", f"/api/v1/task/{task['task_id']}", token=ops)[0] == 200
        assert gw.call("GET", "/api/v1/tasks", token=viewer)[1]["tasks"] == []
        assert len(gw.call("GET", "/api/v1/tasks", token=ops)[1]["tasks"]) == 1
        assert gw.call("POST", "/api/v1/nodes/node-1/drain", token=web)[0] == 403


def test_nodes_drain_resume_and_the_fleets_figures(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gw.site.agent(), gateway_process(gw):
        ops = gw.token("ops")
        deadline = time.monotonic() + 30
        while True:  # presence is retained: the gateway knows node-1 at once, heartbeats follow
            status, node, _ = gw.call("GET", "/api/v1/nodes/node-1", token=ops)
            if status == 200 and node["online"] and node.get("state") == "running":
                break
            assert time.monotonic() < deadline, node
            time.sleep(0.2)
        assert "stats" in node["kernels"] and node["backend"] in ("native", "numpy")
        status, drained, _ = gw.call("POST", "/api/v1/nodes/node-1/drain?wait=20", token=ops)
        assert status == 200 and drained["status"] == "completed" and drained["algorithm"] == "sys.drain"
        status, resumed, _ = gw.call("POST", "/api/v1/nodes/node-1/resume?wait=20", token=ops)
        assert status == 200 and resumed["status"] == "completed"
        gw.call(
            "POST",
            "/api/v1/compute?wait=20",
            {"algorithm": "stats", "parameters": {"signal": [1]}},
            token=ops,
        )
        # ?wait answers as soon as the verified result arrives; the figures count it once it is
        # committed, a moment later
        deadline = time.monotonic() + 10
        while True:
            status, figures, _ = gw.call("GET", "/api/v1/metrics", token=ops)
            assert status == 200 and figures["nodes"]["online"] >= 1
            if figures["gateway_tasks"]["completed"] >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert figures["result_latency"]["count"] >= 3 and figures["gateway_tasks"]["completed"] == 3
        status, text, _ = gw.call("GET", "/metrics")
        assert status == 200 and 'edge_fleet_node_online{node="node-1"} 1' in text
        assert 'edge_gateway_tasks{status="completed"} 3' in text
        assert gw.call("GET", "/api/v1/nodes/nowhere", token=ops)[0] == 404


def test_an_admin_reads_a_task_the_gateway_did_not_submit_through_sys_status(gw_site: GatewaySite) -> None:
    gw = gw_site
    site = gw.site
    with site.agent(), gateway_process(gw):
        device = site.client("sensor-1")
        watcher = site.watch("edge/results/node-1/#")
        task = site.submit(device, "sensor-1", "stats", {"signal": [1.0, 5.0]})
        site.results(watcher, 1)
        ops, web = gw.token("ops"), gw.token("webapp")
        status, body, _ = gw.call("GET", f"/api/v1/task/{task.id}?node=node-1&kid=sensor-1", token=ops)
        assert status == 200 and body["source"] == "sys.status", body
        assert body["status"]["id"] == task.id and body["status"]["status"] == "completed"
        # not admin: no sys.status; the result the gateway saw (the dashboard's ring), once it is there
        assert gw.call("GET", "/api/v1/task/never-run?node=node-1", token=web)[0] == 404
        deadline = time.monotonic() + 5
        while (seen := gw.call("GET", f"/api/v1/task/{task.id}?node=node-1", token=web))[0] != 200:
            assert seen[0] == 404 and time.monotonic() < deadline, seen
            time.sleep(0.05)
        assert seen[1]["source"] == "seen" and seen[1]["status"] == "completed"


def test_delete_cancels_a_waiting_task_on_its_node(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gw.site.agent(), gateway_process(gw):
        token = gw.token("webapp")
        later = {"algorithm": "stats", "parameters": {"signal": [1]}, "run_at": time.time() + 600}
        status, task, _ = gw.call("POST", "/api/v1/compute", later, token=token)
        assert status == 202
        status, answer, _ = gw.call("DELETE", f"/api/v1/task/{task['task_id']}", token=token)
        assert status == 202 and answer["cancel"]["algorithm"] == "sys.cancel"
        status, view, _ = gw.call("GET", f"/api/v1/task/{task['task_id']}?wait=20", token=token)
        assert status == 200 and view["status"] == "cancelled", view
        status, again, _ = gw.call("DELETE", f"/api/v1/task/{task['task_id']}", token=token)
        assert status == 409 and again["error"]["code"] == "already_finished"
        assert gw.call("DELETE", "/api/v1/task/nope", token=token)[0] == 404


def test_many_concurrent_submissions_are_all_accepted(gw_site: GatewaySite) -> None:
    """Requests racing their own PUBACKs: paho reports a PUBACK holding its lock while a request
    publishes on another thread (a lock-order deadlock hung the gateway here once)."""
    from concurrent.futures import ThreadPoolExecutor

    gw = gw_site
    with (
        gw.site.agent(),
        gateway_process(gw, EDGE_GATEWAY_LIMITS_RATE_PER_S="100000", EDGE_GATEWAY_LIMITS_BURST="100000"),
    ):
        token = gw.token("webapp")
        body = {"algorithm": "stats", "parameters": {"signal": [1, 2]}}
        with ThreadPoolExecutor(16) as pool:
            statuses = list(
                pool.map(lambda _: gw.call("POST", "/api/v1/compute", body, token=token)[0], range(400))
            )
        assert statuses == [202] * 400
        assert gw.call("GET", "/health")[0] == 200
