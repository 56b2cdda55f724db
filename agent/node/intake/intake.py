"""Intake: every check of PROTOCOL 4 and 5, one durable commit per batch, acks after it, in order.

The network thread only queues deliveries (`submit`). The intake thread takes whatever has
arrived (up to `intake_batch`), checks each message in receive order (1-7 through `accept_task`,
whose signature verification releases the GIL for the network thread; then 8 and 9), commits the
whole batch (task records, replay rows, rejected results) as one group commit, hands its tasks to
the scheduler at once, and goes on with the next batch while the disk works. A task may thus run
before its record is on disk; its result is committed after the record and published only once
durable, so no result can outlive a lost acceptance. When a batch is durable the writer thread
queues a marker back to the intake thread, which then publishes its rejections and sends its acks
(dropped if their connection is gone): acks leave in receive order, and only for what is on disk."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.common.ratelimit import TokenBucket
from agent.protocol import (
    AcceptancePolicy,
    AcceptedTask,
    AuthenticationError,
    Limits,
    ReplayCache,
    ReplayRecord,
    TaskRejected,
    TrustStore,
    accept_task,
    open_envelope,
)
from native import KernelError

from ..config import Config
from ..errors import StoreError
from ..exec.catalogue import Catalogue
from ..link.mqtt import Delivery, MqttLink
from ..observe.audit import AuditLog
from ..observe.logs import task_extra
from ..observe.telemetry import Telemetry
from ..publish.outbox import Outbox, outbox_ops, result_rows
from ..publish.signing import Signing, SignOnce, peek_body
from ..store import DurableReplayCache, Op, Store
from ..tasks.lifecycle import Lifecycle

log = logging.getLogger(__name__)

#: Rejections worth an audit line (the others are ordinary mistakes: unknown kernel, bad params, full queue).
_AUDITED = frozenset(
    {"replayed", "duplicate_id", "target_mismatch", "not_yet_valid", "expired", "ttl_too_long"}
)
_STOP = object()

Control = Callable[[AcceptedTask, float], SignOnce]  # (command, received_at) -> its result


def no_control(accepted: AcceptedTask, received_at: float) -> SignOnce:
    raise TaskRejected(
        f"control command {accepted.task.kernel!r} is not supported by this agent",
        code="unknown_kernel",
        task_id=accepted.task.id,
        kid=accepted.kid,
    )


@dataclass
class Decision:
    """What one delivery led to: `ops` to commit; `start` runs once they are committed (in memory),
    `after` once they are durable (then the delivery is acknowledged)."""

    delivery: Delivery
    ops: list[Op] = field(default_factory=list)
    after: Callable[[], None] | None = None
    start: Callable[[], None] | None = None


@dataclass
class _Durable:
    decisions: list[Decision]


class Intake:
    def __init__(
        self,
        config: Config,
        store: Store,
        trust: TrustStore,
        catalogue: Catalogue,
        lifecycle: Lifecycle,
        link: MqttLink,
        outbox: Outbox,
        signing: Signing,
        audit: AuditLog,
        control: Control = no_control,
        clock: Callable[[], float] = time.time,
        *,
        telemetry: Telemetry | None = None,
        dispatch: Callable[[], None] = lambda: None,
    ) -> None:
        """`dispatch`: called after each batch is queued, on this thread, to hand its tasks to
        idle workers (tasks/dispatch.py `Dispatcher.dispatch_idle`)."""
        self.config = config
        self.store = store
        self.trust = trust
        self.catalogue = catalogue
        self.lifecycle = lifecycle
        self.link = link
        self.outbox = outbox
        self.signing = signing
        self.audit = audit
        self.control = control
        self.clock = clock  # the wall clock of checks 5 (tests pass one that jumps)
        self.replay = DurableReplayCache(store)
        self.policy = AcceptancePolicy(
            topics=config.topics,
            limits=Limits(max_payload=config.security.max_payload),
            clock_skew_s=config.security.clock_skew_s,
            max_lifetime_s=config.security.max_lifetime_s,
            replay_margin_s=0.0,  # the replay cache forgets by its floor of the clock (store/replay.py)
        )
        self.rejects_limit = TokenBucket(config.rejects.rate_per_s)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="intake", daemon=True)
        self._pending = 0  # batches committed but not yet acknowledged
        self._in_batch = 0  # tasks accepted in the batch being decided (not yet in the store)
        self.accepting = True
        self._working = False
        self.telemetry = telemetry or Telemetry()
        self.dispatch = dispatch
        self.counts = {
            "accepted": 0,
            "redelivered": 0,
            "rejected": 0,
            "unauthenticated": 0,
        }

    # -- the network thread ---------------------------------------------------------------------------

    def submit(self, delivery: Delivery) -> None:
        self._queue.put(delivery)

    # -- the intake thread --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking deliveries; what is committed is still acknowledged first."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def reconfigure(self, config: Config) -> None:
        """A reload: the settings checks read from now on (each batch reads them once)."""
        self.config = config
        self.policy = dataclasses.replace(
            self.policy,
            clock_skew_s=config.security.clock_skew_s,
            max_lifetime_s=config.security.max_lifetime_s,
        )
        if self.rejects_limit.rate != config.rejects.rate_per_s:
            self.rejects_limit = TokenBucket(config.rejects.rate_per_s)

    def idle(self) -> bool:
        """Nothing queued, being decided, or committed but not yet acknowledged."""
        return self._queue.empty() and not self._working and self._pending == 0

    def _loop(self) -> None:
        limit = self.config.limits.intake_batch
        while True:
            self._working = False
            item = self._queue.get()
            self._working = True
            batch: list[Delivery] = []
            while True:
                if item is _STOP:
                    self._finish_pending()
                    return
                if isinstance(item, _Durable):
                    self._durable(item.decisions)
                else:
                    batch.append(item)
                if len(batch) >= limit or self._queue.empty():
                    break
                item = self._queue.get()
            if batch:
                try:
                    self._process(batch)
                except StoreError as exc:  # nothing more can be made durable: stop acknowledging
                    log.critical("intake stopped: %s", exc)
                    return

    def _finish_pending(self) -> None:
        """At stop: wait for the markers of committed batches and acknowledge them."""
        deadline = time.monotonic() + 10
        while self._pending and time.monotonic() < deadline:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, _Durable):
                self._durable(item.decisions)

    def _process(self, batch: list[Delivery]) -> None:
        self._in_batch = 0
        if not self.accepting or self._near_full(batch):
            # Near full: claim only what gets in, so that a task refused as `overloaded` may be
            # sent again as it is. Checks 1-7 see the replay cache through a view that keeps nothing.
            peek = self.replay.peek()
            decisions = [self._decide(d, self._authenticate(d, peek), claimed=False) for d in batch]
        else:
            # In receive order, one at a time: checks 6 and 7 claim the replay cache, and the first
            # copy received must be the one accepted. (Verifying on several threads let a later copy
            # win; parallel verification needs the claim split out of accept_task first.)
            verdicts = [self._authenticate(d) for d in batch]
            decisions = [self._decide(d, v) for d, v in zip(batch, verdicts, strict=True)]
        ops = [op for d in decisions for op in d.ops]
        floor = self.replay.floor_op()  # with the tasks that proved it (store/replay.py)
        if floor is not None:
            ops.append(floor)
        self._pending += 1
        # Patient: acknowledgements are not in a hurry, and the tasks' results usually come within
        # PATIENT_S: one fsync for both, and no writer wake-up while the worker runs.
        self.store.commit(ops, lambda: self._queue.put(_Durable(decisions)), urgent=False)
        for decision in decisions:  # tasks may run before their commit is durable: their results
            if decision.start is not None:  # are committed after it, and acks wait for it
                decision.start()
        self.dispatch()  # to idle workers, from this thread: one hand-off less

    def _near_full(self, batch: list[Delivery]) -> bool:
        """Whether every task of `batch` accepted could fill the queue (by count or by bytes)."""
        limits = self.config.limits
        if self.lifecycle.active() + len(batch) >= limits.queue_capacity:
            return True
        return self.lifecycle.active_bytes() + sum(len(d.payload) for d in batch) > limits.queue_bytes

    def _durable(self, decisions: list[Decision]) -> None:
        self._pending -= 1
        for decision in decisions:
            if decision.after is not None:
                try:
                    decision.after()
                except Exception:  # contained: the rest of the batch is still acknowledged
                    log.exception("after-commit step failed for a message on %s", decision.delivery.topic)
        self.link.ack_all([decision.delivery for decision in decisions])  # in receive order

    # -- one message -------------------------------------------------------------------------------------

    def _authenticate(
        self, delivery: Delivery, replay: ReplayCache | None = None
    ) -> AcceptedTask | AuthenticationError | TaskRejected:
        """Checks 1-7 (any thread), at the replay cache's time (the clock, never below its floor)."""
        try:
            accepted = accept_task(
                delivery.payload,
                delivery.topic,
                self.replay.now(self.clock()),
                self.trust,
                replay or self.replay,
                self.policy,
            )
        except (AuthenticationError, TaskRejected) as exc:
            return exc
        self.replay.observe(accepted.task.issued_at, self.policy.clock_skew_s)  # proves the time
        return accepted

    def _decide(
        self,
        delivery: Delivery,
        accepted: AcceptedTask | AuthenticationError | TaskRejected,
        claimed: bool = True,
    ) -> Decision:
        """Checks 8 and 9, and what to commit and do (the intake thread, in receive order)."""
        if isinstance(accepted, AuthenticationError):
            return self._unauthenticated(delivery, accepted)
        if isinstance(accepted, TaskRejected):
            return self._rejected(delivery, accepted, None)
        if accepted.redelivery:
            self.counts["redelivered"] += 1
            return Decision(delivery)
        try:
            if accepted.topic.kind != "control":  # control commands bypass the queue (PROTOCOL 8)
                self._check_kernel(accepted)
                self._check_room(accepted)
        except TaskRejected as exc:
            return self._rejected(delivery, exc, self._claim(accepted) if exc.code != "overloaded" else None)
        claim = (
            self._claim(accepted) if not claimed else self.replay.row_op(accepted.kid, accepted.task.nonce)
        )
        if accepted.topic.kind == "control":
            try:
                return self._answered(delivery, accepted, self.control(accepted, delivery.received_at), claim)
            except TaskRejected as exc:
                return self._rejected(delivery, exc, claim)
        return self._accepted(delivery, accepted, claim)

    def _claim(self, accepted: AcceptedTask) -> Op:
        """Claim a task seen through the peek view (or already claimed: the same row either way)."""
        task = accepted.task
        self.replay.claim(
            ReplayRecord(
                accepted.kid, task.nonce, task.id, accepted.sig, self.policy.forget_after(task.expires_at)
            )
        )
        return self.replay.row_op(accepted.kid, task.nonce)

    def _check_kernel(self, accepted: AcceptedTask) -> None:
        """Check 8."""
        task = accepted.task
        try:
            self.catalogue.check(task.kernel, task.params)
        except KernelError as exc:
            raise TaskRejected(str(exc), code=exc.code, task_id=task.id, kid=accepted.kid) from None

    def _check_room(self, accepted: AcceptedTask) -> None:
        """Check 9 (and a drained agent takes nothing)."""
        capacity = self.config.limits.queue_capacity
        if not self.accepting:
            raise TaskRejected(
                "the agent is draining", code="overloaded", task_id=accepted.task.id, kid=accepted.kid
            )
        if self.lifecycle.active() + self._in_batch >= capacity:
            raise TaskRejected(
                f"the queue is full ({capacity} tasks)",
                code="overloaded",
                task_id=accepted.task.id,
                kid=accepted.kid,
            )
        limit = self.config.limits.queue_bytes
        if self.lifecycle.active_bytes() + len(accepted.body) > limit:  # counts this batch's already
            raise TaskRejected(
                f"the queue is full ({limit} bytes of task bodies)",
                code="overloaded",
                task_id=accepted.task.id,
                kid=accepted.kid,
            )

    def _accepted(self, delivery: Delivery, accepted: AcceptedTask, claim: Op) -> Decision:
        plan, record = self.lifecycle.record_for(accepted, delivery.received_at)
        timer = self.lifecycle.prepare(plan, record)  # off the lifecycle's lock: a cron's first run
        self.counts["accepted"] += 1
        self.telemetry.task_accepted()
        self._in_batch += 1
        return Decision(
            delivery,
            [claim, Op("tasks", plan.key, record)],
            start=lambda: self.lifecycle.activate(plan, record, timer),
        )

    def _answered(self, delivery: Delivery, accepted: AcceptedTask, result: SignOnce, claim: Op) -> Decision:
        key = f"{accepted.kid}/{accepted.task.id}#1"
        result.publication()  # signed on this thread: the writer's callbacks stay short
        task = accepted.task
        rows = result_rows(key, result, self.signing.reply_topic(accepted.kid, task.id, task.reply))
        return Decision(delivery, [claim, *outbox_ops(rows)], lambda: self.outbox.send_rows(rows))

    def _rejected(self, delivery: Delivery, exc: TaskRejected, claim: Op | None) -> Decision:
        """Checks 4-9 with a readable id: a `rejected` result (PROTOCOL 4)."""
        self.counts["rejected"] += 1
        self.telemetry.task_rejected(exc.code)
        fields = _readable_fields(delivery.payload)
        trace = fields.get("trace") if isinstance(fields.get("trace"), str) else None
        # A full queue is answered quietly: a line per refused task would only add to the load.
        level = logging.DEBUG if exc.code == "overloaded" else logging.INFO
        log.log(
            level,
            "task %s rejected: %s: %s",
            exc.task_id,
            exc.code,
            exc.message,
            extra=task_extra(exc.task_id, trace),
        )
        if exc.code in _AUDITED:
            self._audit("task_rejected", delivery, exc, hashlib.sha256(delivery.payload).digest())
        result = self.signing.result(
            exc.task_id,
            str(fields.get("kernel", "")),
            "rejected",
            run=1,
            attempt=0,
            received_at=delivery.received_at,
            error={"code": exc.code, "message": exc.message},
            trace=trace,
        )
        key = f"{exc.kid}/{exc.task_id}#rejected#{delivery.received_at!r}"
        result.publication()  # signed on this thread: the writer's callbacks stay short
        rows = result_rows(key, result, self.signing.reply_topic(exc.kid, exc.task_id, fields.get("reply")))
        ops = [*outbox_ops(rows)] + ([claim] if claim is not None else [])

        def after() -> None:
            self.outbox.send_rows(rows)
            if self.lifecycle.events_enabled:  # PROTOCOL 6: submitted -> rejected is a transition too
                self.lifecycle.publish_event(
                    self.signing.event(
                        exc.task_id,
                        "rejected",
                        run=1,
                        attempt=0,
                        code=exc.code,
                        message=exc.message,
                        trace=trace,
                    )
                )

        return Decision(delivery, ops, after)

    def _unauthenticated(self, delivery: Delivery, exc: AuthenticationError) -> Decision:
        """Checks 1-3 (or 4 without an id): never answered, acknowledged, counted, audited, reported."""
        self.counts["unauthenticated"] += 1
        self.telemetry.unauthenticated(exc.code)
        digest = hashlib.sha256(delivery.payload).digest()
        self._audit("unauthenticated", delivery, exc, digest, size=len(delivery.payload))
        report = {
            "node": self.config.node,
            "topic": delivery.topic,
            "code": exc.code,
            "sha256": digest,
            "at": time.time(),
        }
        if exc.kid is not None:
            report["kid"] = exc.kid
        if exc.task_id is not None:
            report["id"] = exc.task_id
        return Decision(delivery, after=lambda: self._report(report))

    def _audit(
        self,
        event: str,
        delivery: Delivery,
        exc: AuthenticationError | TaskRejected,
        digest: bytes,
        **extra: Any,
    ) -> None:
        task_id = exc.task_id
        self.audit.record(
            event,
            code=exc.code,
            kid=exc.kid,
            id=task_id,
            topic=delivery.topic,
            message=exc.message,
            sha256=digest,
            **extra,
        )

    def _report(self, report: dict[str, Any]) -> None:
        if self.rejects_limit.allow():
            log.warning(
                "message on %s not authenticated: %s (kid %s)",
                report["topic"],
                report["code"],
                report.get("kid"),
                extra=task_extra(report.get("id")),
            )
            publication = self.signing.reject_report(report)
            self.link.publish(publication.topic, publication.payload, qos=0)
        else:  # a flood: counted, audited, neither reported nor logged one by one
            self.telemetry.report_suppressed()


def _readable_fields(payload: bytes) -> dict[str, Any]:
    """Kernel, trace and reply of an authenticated task that failed a later check, for its answer."""
    try:
        return peek_body(open_envelope(payload, Limits(max_payload=len(payload) + 1)).body)
    except AuthenticationError:
        return {}
