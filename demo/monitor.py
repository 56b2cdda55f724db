"""The orchestrator's own view of the agent: its signed, retained presence record.

`make run` says "agent demo-node online" only once the agent's birth record verifies with the
dashboard's trust store, and "offline (clean stop)" only once the agent published its death
record itself, with the session of that birth, before the broker goes away.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from agent.protocol import Presence, ProtocolError, open_agent_message
from agent.tools.connection import ToolClient
from agent.tools.settings import load_client_config


class PresenceMonitor:
    """Subscribed to one node's presence as a dashboard; `latest` is the newest verified record."""

    def __init__(self, dashboard: Path, node: str) -> None:
        config = load_client_config(dashboard, environ={})  # the bundle as written
        self._trust = config.trust()
        self._topics = config.topics
        self._changed = threading.Condition()
        self.latest: Presence | None = None
        self.online_session: int | None = None
        self.client = ToolClient.from_config(config, "demo-monitor")
        self.client.connect()
        self.client.subscribe([self._topics.presence(node)])
        self._reader = threading.Thread(target=self._read, name="presence-monitor", daemon=True)
        self._closed = threading.Event()
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                incoming = self.client.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                msg = open_agent_message(incoming.payload, incoming.topic, self._trust, topics=self._topics)
            except ProtocolError:
                continue  # edge-watch shows it as FORGED; here it proves nothing either way
            if isinstance(msg, Presence):
                with self._changed:
                    self.latest = msg
                    if msg.state == "online":
                        self.online_session = msg.session
                    self._changed.notify_all()

    def online(self) -> bool:
        with self._changed:
            return self.latest is not None and self.latest.state == "online"

    def wait_offline(self, timeout: float) -> bool:
        """True once the node's own death record of its current session has arrived."""
        with self._changed:
            return self._changed.wait_for(
                lambda: (
                    self.latest is not None
                    and self.latest.state == "offline"
                    and self.latest.session == self.online_session
                ),
                timeout,
            )

    def close(self) -> None:
        self._closed.set()
        self._reader.join()
        self.client.close()
