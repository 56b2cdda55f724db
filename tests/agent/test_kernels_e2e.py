"""Every kernel through the whole path: a device signs a task, the agent runs it in a worker and
publishes a signed result, verified with the agent's key and compared with numpy's answer."""

from __future__ import annotations

import pytest

from agent.protocol import Result
from tests.agent.conftest import TIMEOUT, TOPICS, Site


def test_a_stats_task_end_to_end(any_site: Site) -> None:
    site = any_site
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    with site.agent() as agent:
        topic, payload, task = site.task("sensor-1", "stats", {"signal": [1.0, 2.0, 3.0, 4.0]})
        device.publish(topic, payload)
        message = watcher.expect(1, TIMEOUT)[0]
        result = site.open(message)
        assert isinstance(result, Result)
        assert (result.id, result.status, result.run, result.attempt) == (task.id, "completed", 1, 1)
        assert result.result["mean"] == pytest.approx(2.5)
        assert agent.run_until_idle()
