"""Nothing the gateway answered for is lost: an agent offline gets its tasks later (202 now, the
result after), and a gateway killed with tasks in flight knows every one of them after its restart,
with the results that came while it was down (its persistent session), on both brokers."""

from __future__ import annotations

import signal
import time

from tests.support.gateway import GatewaySite, gateway_process

COMPUTE = {"algorithm": "stats", "parameters": {"signal": [1, 2, 3, 4]}}


def _completed(
    gw: GatewaySite, token: str, ids: list[str], timeout: float = 60
) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + timeout
    views: dict[str, dict[str, object]] = {}
    while True:
        views = {i: gw.call("GET", f"/api/v1/task/{i}", token=token)[1] for i in ids}
        if all(v["status"] == "completed" for v in views.values()):
            return views
        assert time.monotonic() < deadline, {i: v["status"] for i, v in views.items()}
        time.sleep(0.2)


def test_an_offline_agent_gets_its_tasks_when_it_is_back(any_gw_site: GatewaySite) -> None:
    gw = any_gw_site
    with gw.site.agent():
        pass  # once, so that the broker keeps its session and subscriptions while it is away
    with gateway_process(gw):
        token = gw.token("webapp")
        status, body, _ = gw.call("POST", "/api/v1/compute?wait=1", COMPUTE, token=token)
        assert status == 202 and body["status"] == "published", body
        with gw.site.agent():
            view = _completed(gw, token, [body["task_id"]])[body["task_id"]]
        result = view["result"]
        assert (
            isinstance(result, dict)
            and result["mean"] == 2.5
            and abs(result["std"] - 1.118033988749895) < 1e-12
        )


def test_a_gateway_killed_with_tasks_in_flight_loses_none(any_gw_site: GatewaySite) -> None:
    gw = any_gw_site
    with gw.site.agent():
        pass
    with gateway_process(gw) as running:
        token = gw.token("webapp")
        ids = [gw.call("POST", "/api/v1/compute", COMPUTE, token=token)[1]["task_id"] for _ in range(20)]
        assert running.proc is not None
        running.proc.send_signal(signal.SIGKILL)
        running.proc.wait(30)
    with gw.site.agent():  # the results arrive while the gateway is down: its session keeps them
        time.sleep(2)
    with gateway_process(gw):
        token = gw.token("webapp")
        views = _completed(gw, token, ids)
    assert all(v["result"]["mean"] == 2.5 for v in views.values())  # type: ignore[index]


def test_a_task_accepted_while_the_broker_was_down_is_published_by_the_next_gateway(
    gw_site: GatewaySite,
) -> None:
    """The worst moment: the record has the task (202 `submitted`), the broker never had it, and
    the gateway dies. The next gateway publishes it again from the record."""
    gw = gw_site
    with gw.site.agent():
        pass
    with gateway_process(gw) as running:
        token = gw.token("webapp")
        assert gw.site.broker.embedded is not None
        gw.site.broker.embedded.stop()
        status, body, _ = gw.call("POST", "/api/v1/compute", COMPUTE, token=token)
        assert status == 202 and body["status"] == "submitted", body
        assert running.proc is not None
        running.proc.send_signal(signal.SIGKILL)
        running.proc.wait(30)
    gw.site.broker.restart()
    with gw.site.agent(), gateway_process(gw):
        token = gw.token("webapp")
        view = _completed(gw, token, [body["task_id"]])[body["task_id"]]
    assert "publishing again 1 task(s)" in gw.output()
    assert view["result"]["mean"] == 2.5  # type: ignore[index]
