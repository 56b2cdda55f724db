"""What the fleet publishes, verified before anything else sees it, then handed to the record, the
fleet view and the requests waiting for a result.

    inbox = Inbox(topics, trust, records, fleet, waiters)
    inbox.handle(topic, payload)          # FleetLink's on_message, on paho's network thread

Every message is opened with `open_agent_message` against the gateway's trust store (the agents'
keys): signature, key role, kid = node, body shape. One that fails is counted as forged by its
code and logged, never stored or shown as the fleet's. A result is handed to the `ResultWriter`, which
acknowledges it to the broker once it is committed: a gateway killed in between gets it again from
its persistent session. A request waiting for it is woken first, with the result itself, and
answers from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

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
    ) -> None:
        self.topics = topics
        self.trust = trust  # replaced whole on SIGHUP
        self._records = records
        self._fleet = fleet
        self._waiters = waiters
        self._writer = writer

    def handle(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        if not payload:
            ack()
            return  # a retained record cleared: nothing to verify, nothing claimed
        try:
            message = open_agent_message(payload, topic, self.trust, topics=self.topics)
        except ProtocolError as exc:
            ack()
            self._fleet.forged_message(exc.code)
            log.warning("FORGED message on %s refused: %s: %s", topic, exc.code, exc.message)
            return
        if isinstance(message, Result):
            self._waiters.resolve(message.id, message)  # a waiting request answers at once ...
            self._writer.put(message, ack)  # ... acknowledged to the broker once it is written
            return
        self._other(message)
        ack()

    def _other(self, message: object) -> None:
        if isinstance(message, Heartbeat):
            self._fleet.heartbeat(message, time.time())
        elif isinstance(message, Presence):
            self._fleet.presence(message)
        elif isinstance(message, RejectReport):
            self._report(message)

    def _report(self, report: RejectReport) -> None:
        self._fleet.reject_report(report.code)
        digest = report.sha256 if isinstance(report.sha256, bytes) else bytes.fromhex(report.sha256)
        task_id = self._records.refused(
            digest, report.code, f"the agent {report.node} could not authenticate it"
        )
        if task_id is not None:
            log.error("task %s was refused by %s: %s", task_id, report.node, report.code)
            self._waiters.resolve(task_id)
