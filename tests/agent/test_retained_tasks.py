"""A retained task (PROTOCOL 1: tasks are never retained) runs at most once, on either broker.

The embedded broker refuses a retained publish on a tasks topic: the task never reaches the
agent. Mosquitto cannot refuse it: it keeps the task and delivers it again at every subscribe,
so at every start of the agent; the replay cache (PROTOCOL 4, check 6) acknowledges each
redelivery and runs nothing, also after a kill -9.
"""

from __future__ import annotations

import signal
import time

from agent.protocol import Result
from tests.agent.conftest import TIMEOUT, TOPICS, Site, agent_process
from tests.agent.test_crash import _wait_online
from tests.support.mqtt import TestClient

RESULTS = TOPICS.prefix + "/results/node-1/#"


def _results_until(site: Site, watcher: TestClient, last: str) -> list[tuple[Result, bytes]]:
    """Every result up to and including the one of task `last`, with its payload."""
    got: list[tuple[Result, bytes]] = []
    while not got or got[-1][0].id != last:
        message = watcher.expect(1, TIMEOUT)[0]
        got.append((site.open(message), bytes(message.payload)))
    return got


def _wait_redelivered(counts: dict[str, int], at_least: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while counts["redelivered"] < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return counts["redelivered"]


def test_a_retained_task_runs_at_most_once_across_agent_restarts(any_site: Site) -> None:
    site = any_site
    mosquitto = site.kind == "mosquitto"
    marks = site.tmp / "executions.log"
    watcher = site.watch(RESULTS)
    presence = site.watch(TOPICS.presence("node-1"))
    device = site.client("sensor-1")
    params = {"path": str(marks), "tag": "retained"}
    topic, payload, _ = site.task("sensor-1", "test.mark", params, task_id="kept")
    device.publish(topic, payload, retain=True)
    try:
        with agent_process(site) as proc:  # first life: the task arrives at its first subscribe
            _wait_online(site, presence, proc)
            if mosquitto:
                [result] = site.results(watcher, 1)
                assert (result.id, result.status) == ("kept", "completed")
            proc.proc.kill()  # kill -9: what it learnt must be on disk already
            proc.proc.wait(TIMEOUT)
        with agent_process(site) as proc:  # second life: Mosquitto delivers the retained task again
            _wait_online(site, presence, proc)
            proc.proc.send_signal(signal.SIGTERM)
            assert proc.proc.wait(TIMEOUT) == 0, proc.output()
        with site.agent() as agent:  # third life, in this process: what its intake saw
            redelivered = _wait_redelivered(agent.intake.counts, 1 if mosquitto else 0)
            params = {"path": str(marks), "tag": "after"}
            site.submit(device, "sensor-1", "test.mark", params, task_id="after")
            later = _results_until(site, watcher, "after")
            accepted = agent.intake.counts["accepted"]
    finally:
        device.publish(topic, b"", retain=True)  # Mosquitto keeps it in its data directory
    assert accepted == 1, "only the task published after the restarts is new"
    assert (redelivered >= 1) if mosquitto else (redelivered == 0)
    # The result of "kept" may be re-sent after the kill -9 (not yet marked acknowledged), with
    # the same bytes (PROTOCOL 7); a redelivery of the task itself produces nothing new.
    assert len({payload for result, payload in later if result.id == "kept"}) <= (1 if mosquitto else 0)
    runs = [line.split()[0] for line in marks.read_text().splitlines()]
    assert runs == (["retained", "after"] if mosquitto else ["after"])
    if site.broker.embedded is not None:
        assert site.broker.embedded.stats()["refused_publish"] >= 1
