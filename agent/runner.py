"""The agent process: every part wired together, started and stopped in the right order.

    agent = Agent(config)        # loads keys and trust store, opens the store (ConfigError / StoreError)
    agent.start()                # connects; returns at once
    agent.stop()                 # clean stop: offline presence, disconnect, store closed

`run_agent(config)` is what `edge-agent run` calls: start, wait for SIGTERM/SIGINT (clean stop,
exit 0) while SIGHUP reloads the trust store.
"""

from __future__ import annotations

import logging
import queue
import signal
import time
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .config import Config
from .identity import link_settings, load_agent_signer, load_trust
from .mqtt import Delivery, Handlers, MqttLink
from .presence import Counts, Heartbeats, PresenceRecords
from .protocol import TrustStoreError
from .store import Store

log = logging.getLogger(__name__)


class Agent:
    """One agent: its store, its MQTT link, its presence and heartbeats."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.topics = config.topics
        self.signer = load_agent_signer(config)
        self.trust = load_trust(config)
        self.store = Store.open(
            config.agent.data_dir,
            fsync=config.store.fsync,
            compact_bytes=config.store.compact_bytes,
            retention_days=config.store.retention_days,
        )
        self.kernel_names: list[str] = []
        self.backend = "numpy"
        self.presence = PresenceRecords(config.node, self.topics, self.signer, self.store, self.kernel_names)
        self.heartbeats = Heartbeats(config.node, self.topics, self.signer, self.backend, self.counts)
        self.link = MqttLink(
            link_settings(config),
            Handlers(
                message=self._on_message,
                connected=self._on_connected,
                before_connect=self.presence.will,
            ),
        )
        self.scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(2)}, timezone="UTC")
        self.state = "running"
        self.started_at = time.time()

    # -- callbacks from the network thread --------------------------------------------------------

    def _on_message(self, delivery: Delivery) -> None:
        log.debug("message on %s not handled yet", delivery.topic)

    def _on_connected(self, session_present: bool, protocol: str) -> None:
        log.info(
            "connected (MQTT %s, session present: %s, presence session %d)",
            protocol,
            session_present,
            self.presence.session,
        )
        self.link.publish(self.presence.topic, self.presence.birth(), qos=1, retain=True)

    # -- periodic work -------------------------------------------------------------------------------

    def counts(self) -> Counts:
        return Counts(state=self.state)

    def publish_heartbeat(self) -> None:
        if self.link.connected:
            self.link.publish(self.heartbeats.topic, self.heartbeats.payload(), qos=0)

    # -- life cycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        self.scheduler.add_job(
            self.publish_heartbeat,
            "interval",
            seconds=self.config.heartbeat.interval_s,
            id="heartbeat",
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.start()
        self.link.start()

    def reload(self) -> None:
        """SIGHUP: re-read the trust store; a broken file keeps the current keys."""
        try:
            self.trust.reload()
        except TrustStoreError as exc:
            log.error("trust store not reloaded, keeping the current keys: %s", exc)
            return
        log.info("trust store reloaded: %d keys", len(self.trust))

    def stop(self, timeout: float = 10.0) -> None:
        """Clean stop: offline presence (acknowledged by the broker), DISCONNECT, store closed."""
        self.state = "draining"
        self.scheduler.shutdown(wait=False)
        if self.link.connected:
            delivered = self.link.publish_and_wait(
                self.presence.topic, self.presence.death(), qos=1, retain=True, timeout=timeout
            )
            if not delivered:
                log.warning("offline presence not acknowledged by the broker")
        self.link.stop(timeout)
        self.store.close()


def run_agent(config: Config) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP reloads. Returns the exit status."""
    agent = Agent(config)
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.put(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    agent.start()
    log.info("agent %s running (data in %s)", config.node, config.agent.data_dir)
    while True:
        try:
            received = signal.Signals(signals.get(timeout=1.0))
        except queue.Empty:
            continue
        if received != signal.SIGHUP:
            break
        agent.reload()
    log.info("stopping (%s)", received.name)
    agent.stop(config.workers.grace_s)
    return 0
