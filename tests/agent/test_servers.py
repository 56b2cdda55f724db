"""Several broker endpoints (`[mqtt] servers`, EDGE_MQTT_SERVERS): parsed by the one settings
loader, tried in turn by the agent, the tools and the gateway. Here one endpoint is dead and the
next one is the embedded broker; tests/cluster/ moves them between live NATS nodes."""

from __future__ import annotations

import random

import pytest

from agent.common.endpoints import Endpoints, parse_endpoint
from agent.common.errors import ConfigError
from agent.node.link.mqtt import failover_delay
from agent.tools.errors import EXIT_OK
from tests.agent.conftest import Site
from tests.agent.toolrun import bundle_file, run, tool_env
from tests.support.services import free_port


def test_endpoints_parse_and_rotate() -> None:
    assert parse_endpoint("n1.lan:8883") == ("n1.lan", 8883)
    assert parse_endpoint("[::1]:8883") == ("::1", 8883)
    for bad in ("n1", "n1:", ":8883", "n1:0", "n1:70000", "::1:8883", "n1:88x3"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)
    servers = Endpoints([("a", 1), ("b", 2), ("c", 3)])
    assert [servers.current, servers.advance(), servers.advance(), servers.advance()] == [
        ("a", 1),
        ("b", 2),
        ("c", 3),
        ("a", 1),
    ]
    shuffled = {
        Endpoints([("a", 1), ("b", 2), ("c", 3)], "random", random.Random(seed)).current for seed in range(20)
    }
    assert len(shuffled) > 1, "random order spreads the first endpoint"


def test_no_wait_within_a_round_of_endpoints_then_the_back_off() -> None:
    rng = random.Random(1)
    assert [failover_delay(f, 3, 0.5, 30, rng) for f in (1, 2, 4, 5)] == [0.0, 0.0, 0.0, 0.0]
    assert 0.5 <= failover_delay(0, 3, 0.5, 30, rng) <= 0.5  # a lost connection: the shortest wait
    assert 0.5 <= failover_delay(3, 3, 0.5, 30, rng) <= 1.0  # one whole round failed
    assert 0.5 <= failover_delay(1, 1, 0.5, 30, rng) <= 1.0  # one endpoint: the back-off as before


def test_servers_come_from_the_environment_and_a_bad_one_names_the_key(site: Site) -> None:
    config = site.config(mqtt_servers="n1:8883, [::1]:8884")
    assert config.mqtt.endpoints() == [("n1", 8883), ("::1", 8884)]
    with pytest.raises(ConfigError) as caught:
        site.config(mqtt_servers="n1:8883,n2")
    assert caught.value.key == "mqtt.servers"


def test_the_agent_goes_on_to_the_next_endpoint(site: Site) -> None:
    dead = f"127.0.0.1:{free_port()}"
    live = f"127.0.0.1:{site.broker.tls_port}"
    watcher = site.watch("edge/results/node-1/#")
    device = site.client("sensor-1")
    with site.agent(mqtt_servers=f"{dead},{live}", mqtt_port=dead.rpartition(":")[2]) as agent:
        assert agent.link.endpoint == live
        task = site.submit(device, "sensor-1", "stats", {"signal": [1.0, 2.0]})
        [result] = site.results(watcher, 1)
    assert (result.id, result.status) == (task.id, "completed")


def test_edge_submit_goes_on_to_the_next_endpoint(site: Site) -> None:
    op = bundle_file(site, "op-1")
    dead = free_port()
    servers = f"127.0.0.1:{dead},127.0.0.1:{site.broker.tls_port}"
    env = tool_env(site, EDGE_MQTT_SERVERS=servers, EDGE_MQTT_PORT=str(dead))  # host and port: dead too
    with site.agent():
        done = run(site, "submit", "-c", op, "--node", "node-1", "--kernel", "stats",
                   "--param", "signal=[1,3]", env=env)  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert "stats completed" in done.stdout
    assert "connection refused" in done.stderr and "trying the next broker endpoint" in done.stderr
