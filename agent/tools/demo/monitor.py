"""The orchestrator's own view of the agent: its signed, retained presence record.

`make run` says "agent demo-node online" only once the agent's birth record verifies with the
dashboard's trust store, and "offline (clean stop)" only once the agent published its death
record itself, with the session of that birth, before the broker goes away.
"""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as paho

from agent.protocol import Presence, ProtocolError, open_agent_message

from .bundle import Login, connect


class PresenceMonitor:
    """Subscribed to one node's presence as a dashboard; the newest verified record is `latest`."""

    def __init__(self, login: Login, node: str) -> None:
        self.node = node
        self._trust = login.trust()
        self._topics = login.topics
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.latest: Presence | None = None
        self.online_session: int | None = None
        self.client: paho.Client = connect(login, f"{login.name}-demo-monitor")
        self.client.on_message = self._on_message
        self.client.subscribe(self._topics.presence(node), qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            msg = open_agent_message(bytes(message.payload), message.topic, self._trust, topics=self._topics)
        except ProtocolError:
            return  # edge-watch shows it as FORGED; here it proves nothing either way
        if isinstance(msg, Presence):
            with self._lock:
                self.latest = msg
                if msg.state == "online":
                    self.online_session = msg.session
                self._changed.notify_all()

    def online(self) -> bool:
        with self._lock:
            return self.latest is not None and self.latest.state == "online"

    def wait_offline(self, timeout: float) -> bool:
        """True once the node's own death record of its current session has arrived."""
        with self._lock:
            return self._changed.wait_for(
                lambda: (
                    self.latest is not None
                    and self.latest.state == "offline"
                    and self.latest.session == self.online_session
                ),
                timeout,
            )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
