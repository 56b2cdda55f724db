"""Presence and heartbeats (PROTOCOL 7): birth, Last Will and clean death share a session that
increases at every connect and across restarts; heartbeats carry every field, signed."""

from __future__ import annotations

import signal
import time

from agent.protocol import Heartbeat, Presence
from tests.agent.conftest import TIMEOUT, TOPICS, Site, agent_process


def _presence(site: Site, watcher_messages: list) -> list[Presence]:
    return [site.open(m) for m in watcher_messages]


def test_birth_heartbeat_and_clean_death_share_the_session(any_site: Site) -> None:
    site = any_site
    watcher = site.watch(TOPICS.presence("node-1"), TOPICS.heartbeat("node-1"))
    with site.agent(heartbeat_interval_s=0.2) as agent:
        birth = site.open(watcher.expect_until(TOPICS.presence("node-1"), TIMEOUT)[-1])
        assert isinstance(birth, Presence)
        assert (birth.state, birth.session, birth.node) == ("online", 1, "node-1")
        beats = [site.open(m) for m in watcher.expect(2, TIMEOUT) if m.topic == TOPICS.heartbeat("node-1")]
        assert beats and all(isinstance(b, Heartbeat) for b in beats)
        assert beats[0].state == "running" and beats[0].backend in ("native", "numpy")
        assert beats[0].rss_bytes > 0
        assert agent.presence.session == 1
    messages = watcher.expect_until(TOPICS.presence("node-1"), TIMEOUT)
    death = site.open(messages[-1])
    assert (death.state, death.session) == ("offline", 1)
    with site.agent():
        again = site.open(watcher.expect_until(TOPICS.presence("node-1"), TIMEOUT)[-1])
        assert (again.state, again.session) == ("online", 2)


def test_the_last_will_carries_the_session_of_its_connection(site: Site) -> None:
    watcher = site.watch(TOPICS.presence("node-1"))
    with site.agent() as agent:
        assert site.open(watcher.expect(1, TIMEOUT)[0]).session == 1
        agent.link.drop()  # no DISCONNECT: the broker publishes the Will
        will = site.open(watcher.expect(1, TIMEOUT)[0])
        assert (will.state, will.session) == ("offline", 1)
        reborn = site.open(watcher.expect(1, TIMEOUT)[0])  # the agent reconnects by itself
        assert (reborn.state, reborn.session) == ("online", 2)


def test_the_process_stops_cleanly_on_sigterm(site: Site) -> None:
    watcher = site.watch(TOPICS.presence("node-1"))
    with agent_process(site) as agent:
        assert site.open(watcher.expect(1, TIMEOUT)[0]).state == "online"
        agent.proc.send_signal(signal.SIGHUP)  # reload: keeps running
        # Waited for: sent back to back, the two signals may reach two threads of the agent and
        # SIGTERM's handler may run first, and then the stop comes before the reload.
        assert agent.wait_for("trust store reloaded", TIMEOUT), agent.output()
        assert agent.proc.poll() is None
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.proc.wait(TIMEOUT) == 0, agent.output()
        assert site.open(watcher.expect(1, TIMEOUT)[0]).state == "offline"


def test_auto_falls_back_to_mqtt_311_and_remembers_it(site: Site) -> None:
    """The embedded broker does not answer an MQTT 5 CONNECT: `auto` waits `connack_timeout_s`,
    uses 3.1.1, and connects with 3.1.1 at once the next time."""
    with site.agent(mqtt_protocol="auto", mqtt_connack_timeout_s=1) as agent:
        assert agent.link.protocol == "3.1.1"
    started = time.monotonic()
    with site.agent(mqtt_protocol="auto", mqtt_connack_timeout_s=20) as agent:
        assert agent.link.protocol == "3.1.1"
        assert time.monotonic() - started < 15  # no second probe
