"""`GET /api/v1/events` against a real fleet: the snapshot, a result as an event with a preview that
agrees with numpy, a forged result as an alert and never as a result, an agent's rejects report, a
stopped agent's offline presence as a node event, a slow reader that gets `gap` while the gateway
and the other pages carry on, keepalives, and who may read the stream."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from agent.protocol import Result, Topics, generate_signer, open_envelope, seal
from provisioning.cli import main
from tests.gateway.conftest import conforms
from tests.gateway.sse import EventReader
from tests.support.gateway import GatewaySite, gateway_process

TOPICS = Topics()


def _sign_in(gw: GatewaySite, client: str) -> str:
    """The session cookie's value for `client`."""
    status, _, headers = gw.call(
        "POST", "/api/v1/session", {"client_id": client, "client_secret": gw.secrets[client]}
    )
    assert status == 200
    return headers["Set-Cookie"].split(";")[0].partition("=")[2]


def _result_payload(signer: Any, task_id: str, value: Any, node: str = "node-1") -> bytes:
    now = time.time()
    result = Result(task_id, node, "stats", "completed", 1, 1, now, now, now, 0.1, value)
    return seal(result.to_body(), signer)


def _downsample(values: np.ndarray, most: int = 64) -> np.ndarray:
    flat = values.reshape(-1)
    if flat.size <= most:
        return flat
    return flat[np.linspace(0, flat.size - 1, most).round().astype(int)]


def _check_preview(preview: dict[str, Any], expected: np.ndarray) -> None:
    assert preview["shape"] == list(expected.shape) and preview["dtype"] == str(expected.dtype)
    np.testing.assert_allclose(preview["head"], expected.reshape(-1)[:8], rtol=1e-12)
    np.testing.assert_allclose(preview["plot"], _downsample(expected), rtol=1e-12)
    assert len(preview["plot"]) == min(64, expected.size)
    np.testing.assert_allclose([preview["min"], preview["max"]], [expected.min(), expected.max()], rtol=1e-12)


def test_the_snapshot_then_a_result_with_a_preview_numpy_agrees_with(gw_site: GatewaySite) -> None:
    gw = gw_site
    signal = np.random.default_rng(7).normal(size=1000)
    a, b = np.arange(12.0).reshape(3, 4), np.arange(20.0).reshape(4, 5)
    with gw.site.agent(heartbeat_interval_s=1), gateway_process(gw):
        token = gw.token("webapp")
        with EventReader(gw.port, cookie=_sign_in(gw, "viewer")) as events:
            assert events.status == 200
            assert events.headers["Content-Type"] == "text/event-stream"
            assert events.headers["Cache-Control"] == "no-cache"
            assert events.headers["X-Content-Type-Options"] == "nosniff"
            snapshot = events.next("snapshot")
            assert events.retry == 2000 and [k for k, _ in events.seen] == ["snapshot"]  # first
            assert (
                snapshot["client"] == {"name": "viewer", "roles": ["read"]} and snapshot["verified"] is True
            )
            assert abs(snapshot["server_time"] - time.time()) < 5
            assert snapshot["results"] == [] and snapshot["alerts"] == {
                "forged": {},
                "rejects": {},
                "recent": [],
            }
            assert snapshot["throughput"]["bucket_s"] == 10 and snapshot["throughput"]["end"] > time.time()
            if not any(n["node"] == "node-1" and n["online"] for n in snapshot["nodes"]):
                events.next("node", lambda n: n["node"] == "node-1" and n["online"])
            beat = events.next("node", lambda n: n["node"] == "node-1" and "queued" in n)
            assert beat["verified"] is True and beat["backend"] in ("native", "numpy")
            assert beat["last_heartbeat_at"] <= time.time()

            body = {"algorithm": "fft_magnitude", "parameters": {"signal": signal.tolist()}, "priority": 7}
            status, fft, _ = gw.call("POST", "/api/v1/compute?wait=20", body, token=token)
            assert status == 200, fft
            event = events.next("result", lambda r: r["id"] == fft["task_id"], timeout=2)
            expected = {"node": "node-1", "kernel": "fft_magnitude", "status": "completed", "priority": 7,
                        "run": 1, "attempt": 1, "error": None, "verified": True}  # fmt: skip
            assert expected.items() <= event.items()
            conforms("ResultSummary", event)
            assert event["latency_ms"] == round((event["finished_at"] - event["received_at"]) * 1000, 3)
            assert event["received_at"] <= event["started_at"] <= event["finished_at"]
            _check_preview(event["preview"]["magnitude"], np.abs(np.fft.rfft(signal)))
            _check_preview(event["preview"]["frequency"], np.fft.rfftfreq(signal.size))

            body = {
                "algorithm": "matrix_multiply",
                "parameters": {"matrix_a": a.tolist(), "matrix_b": b.tolist()},
            }
            status, mm, _ = gw.call("POST", "/api/v1/compute?wait=20", body, token=token)
            event = events.next("result", lambda r: r["id"] == mm["task_id"], timeout=2)
            _check_preview(event["preview"], a @ b)
            assert event["priority"] == 5  # the default, from the gateway's record
        # a page that connects later finds both in its snapshot, newest first, and in the throughput
        with EventReader(gw.port, token=token) as later:
            snapshot = later.next("snapshot")
            assert [r["id"] for r in snapshot["results"]] == [mm["task_id"], fft["task_id"]]
            assert snapshot["results"][0]["preview"]["shape"] == [3, 5]
            counts = snapshot["throughput"]["nodes"]["node-1"]
            assert len(counts) == 30 and sum(counts) == 2 and sum(counts[-2:]) == 2
            assert snapshot["client"] == {"name": "webapp", "roles": ["read", "submit"]}
            conforms("Snapshot", snapshot)


def test_a_forged_result_is_an_alert_never_a_result_and_a_reject_is_one_too(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gw.site.agent(), gateway_process(gw):
        token = gw.token("webapp")
        with EventReader(gw.port, token=token) as events:
            events.next("snapshot")
            impostor = gw.site.client("node-1", client_id="impostor")  # node-1's broker account ...
            forged = _result_payload(generate_signer("node-1"), "forged-1", 42.0)  # ... not its key
            impostor.publish(TOPICS.results("node-1", "forged-1"), forged)
            alert = events.next("alert")
            assert {"kind": "forged", "code": "bad_signature", "topic": "edge/results/node-1/forged-1",
                    "node": "node-1", "count": 1, "verified": False}.items() <= alert.items()  # fmt: skip
            # a task signed with a key the agent does not know: the agent's rejects report
            device = gw.site.client("sensor-1")
            topic, payload, _ = gw.site.task("sensor-1", "stats", {"signal": [1.0]})
            device.publish(topic, seal(_forged_task_body(payload), generate_signer("sensor-1")))
            conforms("Alert", alert)
            report = events.next("alert")
            assert {"kind": "reject", "code": "bad_signature", "node": "node-1", "count": 1,
                    "verified": True}.items() <= report.items()  # fmt: skip
            # a real result afterwards: the stream has moved past the forged one, which never came
            stats = {"algorithm": "stats", "parameters": {"signal": [1, 2]}}
            status, done, _ = gw.call("POST", "/api/v1/compute?wait=20", stats, token=token)
            assert status == 200
            events.next("result", lambda r: r["id"] == done["task_id"])
            assert all(data["id"] != "forged-1" for kind, data in events.seen if kind == "result")
            with EventReader(gw.port, token=token) as later:
                snapshot = later.next("snapshot")
                assert snapshot["alerts"]["forged"] == {"bad_signature": 1}
                assert snapshot["alerts"]["rejects"] == {"bad_signature": 1}
                assert [a["kind"] for a in snapshot["alerts"]["recent"]] == ["reject", "forged"]  # newest 1st
                assert [r["id"] for r in snapshot["results"]] == [done["task_id"]]
                conforms("Snapshot", snapshot)
            # a flood of forged results: folded into a few alerts, the last with the whole count
            flood = 300
            for n in range(flood):
                impostor.client.publish(TOPICS.results("node-1", f"flood-{n}"), forged, qos=1)
            events.next("alert", lambda a: a["count"] == flood + 1, timeout=20)
            alerts = [data for kind, data in events.seen if kind == "alert" and data["kind"] == "forged"]
            assert len(alerts) < flood // 4, len(alerts)  # 5 per 50 ms batch at most
            assert not any(kind == "result" and data["id"].startswith("flood-") for kind, data in events.seen)
        assert gw.call("GET", "/api/v1/task/forged-1", token=token)[0] == 404  # never seen as a result


def _forged_task_body(payload: bytes) -> bytes:
    """The body of a signed task (to be signed again with a key the agent does not trust)."""
    return open_envelope(payload).body


def test_a_stopped_agent_turns_offline_as_a_node_event(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gateway_process(gw), EventReader(gw.port, token=gw.token("viewer")) as events:
        events.next("snapshot")
        with gw.site.agent("node-2"):
            online = events.next("node", lambda n: n["node"] == "node-2" and n["online"])
        offline = events.next("node", lambda n: n["node"] == "node-2" and not n["online"])
        assert offline["session"] == online["session"] and offline["verified"] is True


def test_a_slow_reader_gets_a_gap_and_nothing_else_suffers(gw_site: GatewaySite) -> None:
    gw = gw_site
    count = 2000
    signer = gw.site.signer("node-1")  # results as node-1 would sign them, published by the test
    value = np.arange(64.0)
    with gateway_process(gw, EDGE_GATEWAY_EVENTS_QUEUE_MAX="200"):
        token = gw.token("viewer")
        slow = EventReader(gw.port, token=token, receive_buffer=4096)
        fast = EventReader(gw.port, token=token)
        try:
            slow.next("snapshot")
            fast.next("snapshot")
            node = gw.site.client("node-1", client_id="node-1-results")
            payloads = [_result_payload(signer, f"r-{n}", value) for n in range(count)]
            with ThreadPoolExecutor(1) as reader:  # the fast page reads all along, the slow one not
                got = reader.submit(lambda: [fast.next("result")["id"] for _ in range(count)])
                for n, payload in enumerate(payloads):  # 400/s: 20 in each 50 ms batch
                    node.client.publish(TOPICS.results("node-1", f"r-{n}"), payload, qos=1)
                    if n % 20 == 19:
                        time.sleep(0.05)
                assert got.result() == [f"r-{n}" for n in range(count)]  # the fast page misses nothing
            assert not any(kind == "gap" for kind, _ in fast.seen)
            # the slow page, reading again, is told how many it lost, then goes on
            assert 0 < slow.next("gap", timeout=10)["dropped"] < count
            slow.next("result", lambda r: r["id"] == f"r-{count - 1}")
            delivered = [data["id"] for kind, data in slow.seen if kind == "result"]
            dropped = sum(data["dropped"] for kind, data in slow.seen if kind == "gap")
            assert len(delivered) + dropped == count  # every event either came or was counted
            assert delivered == sorted(delivered, key=lambda i: int(i[2:]))  # in order
            assert gw.call("GET", "/health")[0] == 200
            assert gw.proc is not None and gw.proc.poll() is None
        finally:
            slow.close()
            fast.close()


def test_the_stream_needs_a_signed_in_reader_keeps_alive_and_caps_its_pages(gw_site: GatewaySite) -> None:
    gw = gw_site
    settings = {"EDGE_GATEWAY_EVENTS_KEEPALIVE_S": "0.3", "EDGE_GATEWAY_EVENTS_PAGES_MAX": "2"}
    with gateway_process(gw, **settings):
        for kind, credentials in {
            "missing_token": {},
            "malformed_token": {"cookie": "x"},
            "bad_signature": {"token": gw.token("webapp")[:-4] + "AAAA"},
        }.items():
            with EventReader(gw.port, **credentials) as refused:
                assert (refused.status, refused.body()["error"]["code"]) == (401, kind)
        with EventReader(gw.port, cookie=_sign_in(gw, "viewer")) as first:
            first.next("snapshot")
            assert first.next(":", timeout=5) == "keepalive"  # nothing happens in this fleet
            with EventReader(gw.port, token=gw.token("ops")) as second:
                second.next("snapshot")
                with EventReader(gw.port, token=gw.token("ops")) as third:
                    assert (third.status, third.body()["error"]["code"]) == (503, "too_many_pages")
            # the page that went is noticed at the next keepalive: a new one may come
            deadline = time.monotonic() + 5
            while True:
                with EventReader(gw.port, token=gw.token("ops")) as again:
                    if again.status == 200:
                        break
                assert time.monotonic() < deadline, "a closed page was never let go"
                time.sleep(0.3)


def test_a_gateway_with_pages_connected_stops_at_once(gw_site: GatewaySite) -> None:
    """aiohttp's shutdown waits for running handlers: the streams must end first (they did not,
    and a SIGTERM took the 60 s of aiohttp's shutdown timeout)."""
    gw = gw_site
    with gateway_process(gw), EventReader(gw.port, token=gw.token("viewer")) as reader:
        reader.next("snapshot")
        assert gw.proc is not None
        started = time.monotonic()
        gw.proc.terminate()
        assert gw.proc.wait(10) == 0 and time.monotonic() - started < 5
        with pytest.raises(EOFError):
            reader.message(timeout=5)


def _ends(events: EventReader, within_s: float) -> float:
    """Seconds until the stream ends (EOFError), reading whatever comes before."""
    started = time.monotonic()
    while True:
        try:
            events.message(timeout=within_s)
        except EOFError:
            return time.monotonic() - started
        assert time.monotonic() - started < within_s, "the stream did not end"


def test_a_stream_ends_when_its_token_expires_and_the_reconnect_is_refused(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gateway_process(gw, EDGE_GATEWAY_AUTH_TOKEN_TTL_S="1"):
        cookie = _sign_in(gw, "viewer")
        with EventReader(gw.port, cookie=cookie) as events:
            events.next("snapshot")
            took = _ends(events, 60)  # 1 s of token and the 30 s of clock leeway every request gets
        assert 25 < took < 40, took
        with EventReader(gw.port, cookie=cookie) as again:
            assert (again.status, again.body()["error"]["code"]) == (401, "token_expired")


def test_a_stream_ends_when_its_client_is_revoked(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gateway_process(gw, EDGE_GATEWAY_EVENTS_KEEPALIVE_S="1") as running:
        token = gw.token("webapp")
        with EventReader(gw.port, token=token) as events:
            events.next("snapshot")
            assert main(["--fleet", str(gw.site.fleet.root), "revoke", "webapp"]) == 0
            bundle = gw.site.tmp / "bundle-gw-1"
            assert (
                main(["--fleet", str(gw.site.fleet.root), "bundle", "gw-1", "--out", str(bundle), "--force"])
                == 0
            )
            assert running.proc is not None
            running.proc.send_signal(signal.SIGHUP)
            assert _ends(events, 20) < 20
