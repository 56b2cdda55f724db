"""The agent process: every part wired together, started and stopped in the right order.

    agent = Agent(config)        # loads keys and trust store, opens the store (ConfigError / StoreError)
    agent.start()                # workers launched, timers, outbox, intake, broker connection, workers ready
    agent.run_until_idle()       # tests: until nothing is queued, running or unacknowledged
    agent.stop()                 # clean stop (below)

A clean stop (SIGTERM, SIGINT): the intake stops (what it had not committed is never acknowledged,
so the broker redelivers it), no new attempt starts, running attempts get `grace_s` to finish (an
attempt still running then is killed and does not count: it runs again at the next start), and
queued tasks wait in the store for the next start; results are flushed to the
broker, offline presence is published, and the state is closed. `run_agent` is what
`edge-agent run` calls; SIGHUP reloads the trust store and configuration (as `sys.reload` does).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..common.endpoints import format_endpoint
from ..common.sdnotify import ServiceNotifier
from .config import Config
from .errors import ConfigError, ReloadError, WorkerError
from .exec.catalogue import Catalogue
from .exec.pool import WorkerPool, WorkerSettings
from .intake.control import Control
from .intake.intake import Intake
from .keys import load_agent_signer, load_trust
from .link.mqtt import Handlers, MqttLink
from .link.settings import link_settings
from .observe.audit import AuditLog
from .observe.telemetry import Telemetry
from .publish.outbox import Outbox
from .publish.presence import Counts, Heartbeats, PresenceRecords
from .publish.signing import Publication, Signing, output_budget
from .reload import ReloadReport, reload_agent
from .status.gauges import watch_agent
from .status.health import Health
from .store import META, TASKS, Op, Store
from .tasks.dispatch import Dispatcher
from .tasks.lifecycle import Lifecycle

if TYPE_CHECKING:
    from .status.httpd import StatusServer

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 10.0
EXPIRY_SWEEP_S = 0.5
SWITCH_INTERVAL_S = 0.0005


def _open_store(config: Config, **options: Any) -> Store:
    s = config.store
    return Store.open(
        config.agent.data_dir,
        fsync=s.fsync,
        compact_bytes=s.compact_bytes,
        retention_days=s.retention_days,
        **options,
    )


def _open_audit(config: Config) -> AuditLog:
    try:
        return AuditLog(config.audit_file, config.audit.max_bytes, config.audit.backups)
    except OSError as exc:
        raise ConfigError("audit.file", f"cannot open {config.audit_file}: {exc.strerror}") from None


def _worker_settings(config: Config) -> WorkerSettings:
    return WorkerSettings(
        count=config.worker_count,
        memory_limit_mb=config.workers.memory_limit_mb,
        test_kernels=config.testing.test_kernels,
        max_payload=config.security.max_payload,
        start_timeout_s=config.workers.start_timeout_s,
    )


class Agent:
    """One agent process's parts; see the module docstring for the order of things."""

    # Built in __init__; named here because the callbacks handed to the store and the link
    # before these exist (lambdas) read them when they run, after __init__.
    link: MqttLink
    outbox: Outbox
    intake: Intake

    def __init__(
        self, config: Config, catalogue: Catalogue | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.clock = clock  # the wall clock of acceptance and of the replay cache's expiry
        node, topics = config.node, config.topics
        self.signer = load_agent_signer(config)
        self.trust = load_trust(config)
        max_payload = config.security.max_payload
        self.catalogue = catalogue or Catalogue.load(config.testing.test_kernels, output_budget(max_payload))
        # A group commit's callbacks publish its results: held, they leave in one socket write.
        self.store = _open_store(config, around_callbacks=lambda: self.link.writes_held())
        settings = link_settings(config, self._remembered_protocol())
        self.audit = _open_audit(config)
        self.signing = Signing(node, topics, self.signer, max_payload)
        self.presence = PresenceRecords(node, topics, self.signer, self.store, self.catalogue.names())
        self.heartbeats = Heartbeats(node, topics, self.signer, self.catalogue.backend, self.counts)
        self.link = MqttLink(
            settings,
            Handlers(
                message=lambda delivery: self.intake.submit(delivery),
                published=self._on_pubacks,
                connected=self._on_connected,
                before_connect=self.presence.will,
            ),
        )
        self.outbox = Outbox(self.store, self.link, self.signing)
        self.telemetry = Telemetry()
        self.lifecycle = Lifecycle(
            config,
            self.store,
            self.signing,
            self.outbox,
            self.publish_event,
            telemetry=self.telemetry,
            handed_off=True,
        )
        self.pool = WorkerPool(_worker_settings(config))
        self.dispatcher = Dispatcher(self.lifecycle, self.pool)
        self.control = Control(self.store, self.lifecycle, self.signing, self.audit, steering=self)
        self.intake = Intake(
            config,
            self.store,
            self.trust,
            self.catalogue,
            self.lifecycle,
            self.link,
            self.outbox,
            self.signing,
            self.audit,
            control=self.control,
            clock=clock,
            telemetry=self.telemetry,
            dispatch=self.dispatcher.dispatch_idle,
        )
        self.health = Health(node, self.link, self.store, self.pool, self.presence)
        watch_agent(self.telemetry.registry, self)
        self.http: StatusServer | None = None  # /metrics and /health, from start() on
        self.state = "running"

    # -- callbacks ----------------------------------------------------------------------------------

    def _broker(self) -> str:
        return ",".join(format_endpoint(*e) for e in self.config.mqtt.endpoints())

    def _remembered_protocol(self) -> str | None:
        """With `protocol = "auto"`: the version this broker accepted last time (no probe again)."""
        if self.config.mqtt.protocol != "auto":
            return None
        known = (self.store.get(META, "mqtt") or {}).get(self._broker())
        return known if isinstance(known, str) else None

    def _on_connected(self, session_present: bool, protocol: str) -> None:
        if self.config.mqtt.protocol == "auto" and self._remembered_protocol() != protocol:
            known = dict(self.store.get(META, "mqtt") or {})
            known[self._broker()] = protocol
            self.store.commit([Op(META, "mqtt", known)], sync=False)
        log.info(
            "connected to %s (MQTT %s, session present: %s, presence session %d)",
            self.link.endpoint,
            protocol,
            session_present,
            self.presence.session,
        )
        self.presence.birth_sent(
            self.link.publish(self.presence.topic, self.presence.birth(), qos=1, retain=True)
        )

    def _on_pubacks(self, mids: list[int]) -> None:
        self.outbox.on_pubacks(mids)
        self.presence.on_pubacks(mids)

    def publish_event(self, publication: Publication) -> None:
        self.link.publish(publication.topic, publication.payload, qos=0)

    # -- periodic work --------------------------------------------------------------------------------

    def counts(self) -> Counts:
        totals = self.lifecycle.totals
        return Counts(
            state=self.state,
            queued=max(0, self.store.count(TASKS) - self.pool.busy),  # waiting: ready or for a time
            running=self.pool.busy,
            completed_total=totals["completed"],
            abandoned_total=totals["abandoned"],
            rejected_total=self.intake.counts["rejected"],
            outbox=self.outbox.pending,
        )

    # -- steering (control commands) ------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return not self.intake.accepting

    def set_draining(self, draining: bool) -> None:
        """sys.drain / sys.resume: new tasks refused (`overloaded`) or taken again; heartbeat state.
        A draining agent leaves its pools' subscriptions, so their other members take pool tasks."""
        self.intake.accepting = not draining
        topics, shared = self.config.topics, self.config.mqtt.shared_pools
        pools = [
            topics.shared_pool_subscription(p) if shared else topics.tasks_pool(p)
            for p in self.config.agent.pools
        ]
        self.link.pause(pools if draining else ())
        self.state = "draining" if draining else "running"
        self.publish_heartbeat()  # dashboards see the new state now, not at the next interval

    def load(self) -> tuple[int, int]:
        counts = self.counts()
        return counts.queued, counts.running

    def publish_heartbeat(self) -> None:
        if self.link.connected:
            self.link.publish(self.heartbeats.topic, self.heartbeats.payload(), qos=0)

    def housekeeping(self) -> None:
        self.intake.replay.expire(self.clock())
        self.store.expire_history()

    # -- life cycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.config.metrics.enabled:  # first: a port in use stops the start before anything runs
            from .status.httpd import StatusServer  # http.server only when the endpoint is wanted

            self.http = StatusServer(
                self.config.metrics.host, self.config.metrics.port, self.telemetry.registry, self.health
            )
            self.http.start()
        # Workers boot (import, load the kernels) while the agent restores its state and connects:
        # tasks that arrive meanwhile are stored and queued; the drivers start once workers are ready.
        self.pool.launch()
        restored = self.lifecycle.start()
        timers = self.lifecycle.timers
        timers.every(self.config.heartbeat.interval_s, self.publish_heartbeat, "heartbeat")
        timers.every(EXPIRY_SWEEP_S, self.lifecycle.expire_due, "expiry")
        timers.every(HOUSEKEEPING_S, self.housekeeping, "housekeeping")
        unsent = self.outbox.restore()
        self.housekeeping()  # now, not HOUSEKEEPING_S from now: an agent that lives shorter forgets too
        self.control.restore()  # still draining if it was: before the first task arrives
        self.intake.start()
        self.link.start()
        try:
            self.pool.wait_ready()
        except WorkerError:
            self.link.stop()  # online for a moment, then the Will: no worker could start
            raise
        self.dispatcher.start()
        self.audit.record("start", node=self.config.node, restored_tasks=restored, unsent_results=unsent)

    def reconfigure(self, config: Config) -> None:
        """A reload's hot keys (reload.py `HOT_KEYS`): every part that reads them gets `config`."""
        self.config = config
        self.intake.reconfigure(config)
        self.lifecycle.reconfigure(config)
        self.lifecycle.timers.every(config.heartbeat.interval_s, self.publish_heartbeat, "heartbeat")
        self.store.retention_days = config.store.retention_days
        logging.getLogger().setLevel(config.log.level.upper())

    def reload(self) -> ReloadReport:
        """SIGHUP or sys.reload: trust store and configuration (see reloading.py); `ReloadError`
        when a file is broken (the agent keeps what it had)."""
        return reload_agent(self)

    def idle(self) -> bool:
        """Nothing ready, running or waiting for the broker (timers may still be set)."""
        return (
            not len(self.lifecycle.ready)
            and not self.pool.busy
            and not self.lifecycle.running
            and self.outbox.pending == 0
            and self.intake.idle()
        )

    def run_until_idle(self, timeout: float = 60.0, settle: float = 0.05) -> bool:
        """Tests: wait until `idle()` holds twice `settle` apart; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                time.sleep(settle)
                if self.idle():
                    return True
            time.sleep(0.01)
        return False

    def stop(self, grace: float | None = None) -> None:
        """Clean stop; see the module docstring. It takes `Config.stop_timeout_s` at most (what a
        supervisor waits before SIGKILL): change both together."""
        grace = self.config.workers.grace_s if grace is None else grace
        self.state = "draining"
        self.dispatcher.close()
        self.intake.stop()
        self.lifecycle.timers.stop()
        deadline = time.monotonic() + grace
        while self.pool.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        self.dispatcher.stop()
        self.lifecycle.ready.close()
        self.pool.stop(timeout=1.0)  # running attempts still there are killed, then requeued
        self.dispatcher.join(10)
        self.lifecycle.stop()
        if self.link.connected and not self.outbox.wait_empty(min(5.0, max(grace, 1.0))):
            log.warning(
                "stopping with %d results not acknowledged: they are sent at the next start",
                self.outbox.pending,
            )
        if self.link.connected:
            delivered = self.link.publish_and_wait(
                self.presence.topic, self.presence.death(), qos=1, retain=True, timeout=5.0
            )
            if not delivered:
                log.warning("offline presence not acknowledged by the broker")
        self.link.stop()
        if self.http is not None:
            self.http.stop()
        self.audit.record("stop", node=self.config.node)
        self.store.close()
        self.audit.close()


def run_agent(config: Config, service: ServiceNotifier | None = None) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP reloads. Returns the exit status.

    `service` tells systemd (common/sdnotify.py): READY=1 once online (`Health.online`: presence
    acknowledged), WATCHDOG=1 from this loop, STOPPING=1 when the drain begins; by default from the
    process's environment."""
    service = ServiceNotifier.from_environ() if service is None else service
    # A task crosses several threads (network, intake, writer, worker driver); Python's default
    # 5 ms GIL switch interval would add up to 5 ms at each hand-over under load.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    agent = Agent(config)
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.put(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    agent.start()
    gc.freeze()  # what start-up built lives for ever: later collections do not scan it again
    log.info("agent %s running (data in %s)", config.node, config.agent.data_dir)
    online = f"online, broker {config.mqtt.host}:{config.mqtt.port}"
    while True:
        service.tick(online=agent.health.online(), status=online)
        try:
            received = signal.Signals(signals.get(timeout=service.tick_s))
        except queue.Empty:
            if agent.store.failed is not None:  # a full disk, an I/O error: nothing more is acknowledged
                log.critical(
                    "the store failed (%s): stopping. Tasks not yet stored were not acknowledged and "
                    "stay at the broker: free space in %s (or replace the disk) and start the agent again",
                    agent.store.failed,
                    config.agent.data_dir,
                )
                return 1
            continue
        if received != signal.SIGHUP:
            break
        with contextlib.suppress(ReloadError):  # logged and audited; the agent keeps what it had
            agent.reload()
    log.info("stopping (%s)", received.name)
    service.stopping()
    agent.stop()
    return 0
