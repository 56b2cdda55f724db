"""What the fleet publishes, verified before anything else sees it, then handed to the record, the
fleet view, the requests waiting for a result, and a listener (the dashboard's events).

    inbox = Inbox(topics, trust, records, fleet, waiters, writer, listener=hub)
    inbox.handle(topic, payload, ack)     # FleetLink's on_message, on paho's network thread

Every message is opened with `open_agent_message` against the gateway's trust store (the agents'
keys): signature, key role, kid = node, body shape. One that fails is counted as forged by its
code and logged, never stored or shown as the fleet's. A result is handed to the `ResultWriter`, which
acknowledges it to the broker once it is committed: a gateway killed in between gets it again from
its persistent session. A request waiting for it is woken first, with the result itself, and
answers from it.

The listener (`InboxListener`, given in the constructor) hears of every message once the fleet view
has it: a verified result, a node whose heartbeat or presence changed, a forged message, a rejects
report. It is called on paho's network thread and must return at once (events.py only queues).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from agent.protocol import (
    Heartbeat,
    Presence,
    ProtocolError,
    RejectReport,
    Result,
    Topics,
    TrustStore,
    open_agent_message,
)

from .nodes import FleetView
from .records import TaskRecords
from .resultwriter import ResultWriter
from .waiters import Waiters

log = logging.getLogger(__name__)


class InboxListener(Protocol):
    def on_result(self, result: Result) -> None: ...

    def on_node(self, node: str) -> None: ...

    def on_forged(self, topic: str, code: str, message: str, count: int) -> None:
        """`count`: the messages refused with `code` so far (the fleet view's counter)."""

    def on_reject(self, report: RejectReport, count: int) -> None: ...


def subscriptions(topics: Topics) -> list[str]:
    """What the gateway reads (its ACL: what a dashboard reads)."""
    p = topics.prefix
    return [f"{p}/results/+/+", f"{p}/heartbeat/+", f"{p}/presence/+", f"{p}/rejects/+"]


class Inbox:
    def __init__(
        self,
        topics: Topics,
        trust: TrustStore,
        records: TaskRecords,
        fleet: FleetView,
        waiters: Waiters,
        writer: ResultWriter,
        *,
        listener: InboxListener,
    ) -> None:
        self.topics = topics
        self.trust = trust  # replaced whole on SIGHUP
        self._records = records
        self._fleet = fleet
        self._waiters = waiters
        self._writer = writer
        self._listener = listener

    def handle(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        if not payload:
            ack()
            return  # a retained record cleared: nothing to verify, nothing claimed
        try:
            message = open_agent_message(payload, topic, self.trust, topics=self.topics)
        except ProtocolError as exc:
            ack()
            count = self._fleet.forged_message(exc.code)
            log.warning("FORGED message on %s refused: %s: %s", topic, exc.code, exc.message)
            self._listener.on_forged(topic, exc.code, exc.message, count)
            return
        if isinstance(message, Result):
            self._writer.put(message, ack)  # acknowledged to the broker once it is written; and
            self._waiters.resolve(message.id, message)  # a waiting request answers at once (`read`
            # shows the queued result to whoever reads the task after the answer)
            self._listener.on_result(message)
            return
        self._other(message)
        ack()

    def _other(self, message: object) -> None:
        if isinstance(message, Heartbeat):
            self._fleet.heartbeat(message, time.time())
            self._listener.on_node(message.node)
        elif isinstance(message, Presence):
            if self._fleet.presence(message):
                self._listener.on_node(message.node)
        elif isinstance(message, RejectReport):
            self._report(message)

    def _report(self, report: RejectReport) -> None:
        self._listener.on_reject(report, self._fleet.reject_report(report.code))
        digest = report.sha256 if isinstance(report.sha256, bytes) else bytes.fromhex(report.sha256)
        task_id = self._records.refused(
            digest, report.code, f"the agent {report.node} could not authenticate it"
        )
        if task_id is not None:
            log.error("task %s was refused by %s: %s", task_id, report.node, report.code)
            self._waiters.resolve(task_id)
