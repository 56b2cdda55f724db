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
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from .config import Config
from .errors import ConfigError, ReloadError, StoreError, WorkerError
from .exec.catalogue import Catalogue
from .exec.pool import Begun, Outcome, Worker, WorkerPool, WorkerSettings
from .intake.control import Control
from .intake.intake import Intake
from .keys import link_settings, load_agent_signer, load_trust
from .link.mqtt import Handlers, MqttLink
from .observe.audit import AuditLog
from .observe.health import Health
from .observe.telemetry import Telemetry, watch_agent
from .publish.outbox import Outbox
from .publish.presence import Counts, Heartbeats, PresenceRecords
from .publish.signing import Publication, Signing, output_budget
from .reload import ReloadReport, reload_agent
from .store import META, TASKS, Op, Store
from .tasks.lifecycle import Attempt, Lifecycle
from .tasks.scheduler import TIMED_OUT

if TYPE_CHECKING:
    from .observe.httpd import StatusServer

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 10.0
EXPIRY_SWEEP_S = 0.5
SWITCH_INTERVAL_S = 0.0005


def _open_store(config: Config) -> Store:
    s = config.store
    return Store.open(
        config.agent.data_dir, fsync=s.fsync, compact_bytes=s.compact_bytes, retention_days=s.retention_days
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
        self.store = _open_store(config)
        settings = link_settings(config, self._remembered_protocol())
        self.audit = _open_audit(config)
        self.signing = Signing(node, topics, self.signer, max_payload)
        self.presence = PresenceRecords(node, topics, self.signer, self.store, self.catalogue.names())
        self.heartbeats = Heartbeats(node, topics, self.signer, self.catalogue.backend, self.counts)
        self.link = MqttLink(
            settings,
            Handlers(
                message=lambda delivery: self.intake.submit(delivery),
                published=lambda mids: self.outbox.on_pubacks(mids),
                connected=self._on_connected,
                before_connect=self.presence.will,
            ),
        )
        self.outbox = Outbox(self.store, self.link, self.signing)
        self.store.around_callbacks = self.link.writes_held  # a group commit's results: one write
        self.lifecycle = Lifecycle(
            config,
            self.store,
            self.signing,
            self.outbox,
            self.publish_event if config.events.enabled else None,
        )
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
        )
        self.pool = WorkerPool(_worker_settings(config))
        self.telemetry = Telemetry()
        self.lifecycle.telemetry = self.intake.telemetry = self.telemetry
        self.health = Health(node, self.link, self.store, self.pool)
        watch_agent(self.telemetry.registry, self)
        self.http: StatusServer | None = None  # /metrics and /health, from start() on
        self.state = "running"
        self._stopping = threading.Event()
        self._closing = False  # stop() began: running attempts finish, no new one starts
        self._drivers: list[threading.Thread] = []
        self._inboxes: dict[queue.SimpleQueue[Any], Worker] = {}  # a driver's inbox -> its worker
        self.dispatched = 0  # attempts the intake sent to an idle worker itself (dispatch_idle)
        self.pipelined = 0  # attempts sent to a worker before the outcome of its last was handled

    # -- callbacks ----------------------------------------------------------------------------------

    def _broker(self) -> str:
        return f"{self.config.mqtt.host}:{self.config.mqtt.port}"

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
            "connected (MQTT %s, session present: %s, presence session %d)",
            protocol,
            session_present,
            self.presence.session,
        )
        self.link.publish(self.presence.topic, self.presence.birth(), qos=1, retain=True)

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

    # -- workers ----------------------------------------------------------------------------------------

    def _drive(self, worker: Worker, inbox: queue.SimpleQueue[Any]) -> None:
        """One thread per worker: take the most urgent ready task, run it, report how it ended."""
        handed: Handed | None = None  # the next attempt, already sent to the worker (pipelined)
        while handed is not None or not self._stopping.is_set():
            try:
                handed = self._attempt(worker, inbox, handed)
            except StoreError as exc:  # the agent is stopping (run_agent sees store.failed)
                log.critical("worker %d stopped: %s", worker.index, exc)
                return
            except Exception:  # a bug: logged and contained, the worker goes on with the next task
                log.exception("worker %d: an attempt failed in the agent", worker.index)
                handed = None

    def _attempt(self, worker: Worker, inbox: queue.SimpleQueue[Any], handed: Handed | None) -> Handed | None:
        """One attempt to its end; returns the next one if it was sent before this one's outcome
        was handled (see `_pipelined`)."""
        if handed is None:
            waited = self.lifecycle.ready.wait(inbox, timeout=0.2)
            if waited is TIMED_OUT:
                if not self._stopping.is_set():
                    worker.ensure_alive()  # one killed while idle is replaced now, not at the next task
                return None
            if waited is None:  # look at the ready queue
                if self._closing:
                    return None
                attempt = self.lifecycle.take_now(worker)  # registered in lifecycle.running
                if attempt is None:
                    return None
                handed = (attempt, None)
            else:  # the intake took it and sent it to this worker already (dispatch_idle)
                handed = waited
        attempt = handed[0]
        outcome = self._end(worker, *handed)
        follow = self._pipelined(worker) if outcome.code != "stopped" else None
        try:
            self._report(attempt, outcome)
        except StoreError:
            raise
        except Exception:  # a bug: logged and contained; the attempt sent meanwhile still ends
            log.exception("worker %d: an attempt's outcome failed in the agent", worker.index)
        return follow

    def _end(self, worker: Worker, attempt: Attempt, begun: Begun | Outcome | None) -> Outcome:
        """Wait for the outcome of `attempt` (sent already unless `begun` is None)."""
        try:
            timeout = self.lifecycle.timeout_for(attempt.plan)
            if begun is None:
                outcome = worker.run(attempt.plan.kernel, attempt.body, attempt.attempt, timeout, attempt.tag)
            elif isinstance(begun, Outcome):
                outcome = begun
            else:
                outcome = worker.end(begun, timeout)
        except WorkerError as exc:
            log.error("worker %d cannot start: %s", worker.index, exc)
            outcome = Outcome(False, time.time(), time.time(), code="worker_crashed", message=str(exc))
            self._stopping.wait(1.0)
        finally:
            self.lifecycle.running.pop(attempt.key, None)
        return outcome

    def _pipelined(self, worker: Worker) -> Handed | None:
        """With tasks ready, the next one goes to the worker before this outcome is handled (its
        result signed and committed): the worker runs while the agent does that work."""
        if self._closing:
            return None
        handed = self._send_next(worker)
        if handed is not None and handed[1] is not None:
            self.pipelined += 1
        return handed

    def _send_next(self, worker: Worker) -> Handed | None:
        """The most urgent ready task, taken for `worker` and sent to it; None if none is ready.
        If sending fails (a bug), the attempt comes back unsent: its driver runs it from the start
        (`_end`), so a taken attempt is never left without an outcome."""
        attempt = self.lifecycle.take_now(worker)
        if attempt is None:
            return None
        try:
            return (attempt, worker.begin(*_request(attempt), replace=False))
        except Exception:
            log.exception("worker %d: sending an attempt failed; its driver runs it", worker.index)
            return (attempt, None)

    def _report(self, attempt: Attempt, outcome: Outcome) -> None:
        if outcome.code == "stopped":
            self.lifecycle.requeue(attempt)  # killed by the stop, not by its own doing
        else:
            self.lifecycle.finished(attempt, outcome)

    def dispatch_idle(self) -> None:
        """The intake thread, after queueing a batch: each task that an idle worker can take is
        taken and sent to that worker here, and its driver, woken meanwhile, only waits for the
        outcome. (Woken first, the driver would take and send it itself, a wake-up later.)"""
        ready = self.lifecycle.ready
        while (inbox := ready.claim_idle()) is not None:
            handed: Handed | None = None
            try:  # whatever happens, the claimed driver gets something: it waits for it
                handed = self._send_next(self._inboxes[inbox])
            finally:
                inbox.put(handed)
            if handed is None:
                return
            if handed[1] is not None:
                self.dispatched += 1

    # -- life cycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.config.metrics.enabled:  # first: a port in use stops the start before anything runs
            from .observe.httpd import StatusServer  # http.server only when the endpoint is wanted

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
        for worker in self.pool.workers:
            inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
            self._inboxes[inbox] = worker
            thread = threading.Thread(
                target=self._drive, args=(worker, inbox), name=f"worker-{worker.index}", daemon=True
            )
            thread.start()
            self._drivers.append(thread)
        self.lifecycle.dispatcher = self.dispatch_idle
        self.audit.record("start", node=self.config.node, restored_tasks=restored, unsent_results=unsent)

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
        """Clean stop; see the module docstring."""
        grace = self.config.workers.grace_s if grace is None else grace
        self.state = "draining"
        self._closing = True
        self.intake.stop()
        self.lifecycle.timers.stop()
        deadline = time.monotonic() + grace
        while self.pool.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stopping.set()
        self.lifecycle.ready.close()
        self.pool.stop(timeout=1.0)  # running attempts still there are killed, then requeued
        for thread in self._drivers:
            thread.join(10)
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


#: An attempt taken for a worker, and what `Worker.begin` returned (None: not sent yet).
Handed = tuple[Attempt, Begun | Outcome | None]


def _request(attempt: Attempt) -> tuple[str, bytes, int, object]:
    """`Worker.begin`'s arguments for `attempt`."""
    return attempt.plan.kernel, attempt.body, attempt.attempt, attempt.tag


def run_agent(config: Config) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP reloads. Returns the exit status."""
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
    while True:
        try:
            received = signal.Signals(signals.get(timeout=1.0))
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
    agent.stop()
    return 0
