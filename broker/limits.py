"""What happens when the broker hits one of its resource bounds: a counter and a log line.

The bounds (`limits.*`, broker/README.md) are enforced where each resource lives (a session's
queue in outbox.py, retained messages in router.py, connections and session expiry in
core.py); each refusal is reported to `LimitEvents`, so that counting and logging stay out of
the delivery path. The counters appear in `EmbeddedBroker.stats()` and in the `stats:` log
line. A line about one client or topic is written at most every 10 s for it.

Thread rule: the broker's event loop only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .expiry import Expired
from .outbox import Delivery, Outbox

log = logging.getLogger("broker.limits")
LOG_INTERVAL_S = 10.0
_LOG_KEYS_LIMIT = 10_000  # distinct clients remembered for the rate limit of their lines


@dataclass
class LimitCounters:
    """Everything refused because of a bound, since the start."""

    dropped: int = 0  # deliveries refused by a full session queue (either bound)
    dropped_by_bytes: int = 0  # of those, by limits.max_queued_bytes
    refused_retained: int = 0  # retained messages not kept (limits.max_retained_*)
    sessions_expired: int = 0  # disconnected persistent sessions removed (limits.*session_expiry_s)
    refused_connections: int = 0  # connections closed at once: limits.max_connections were open


class LimitEvents:
    """The hooks the enforcing code calls; see the module docstring."""

    def __init__(self) -> None:
        self.counters = LimitCounters()
        self._logged: dict[str, float] = {}

    def queue_full(self, outbox: Outbox, bound: str, delivery: Delivery) -> None:
        """`delivery` was dropped: the outbox's queue is at `limits.{bound}` (`Outbox.offer`)."""
        counters = self.counters
        counters.dropped += 1
        by_bytes = bound == "max_queued_bytes"
        counters.dropped_by_bytes += by_bytes
        if self._due(outbox.client_id):
            log.warning(
                "queue of client %s is full (limits.%s = %d): dropped a QoS %d message on %s "
                "(%d dropped for this client, %d in total)",
                outbox.client_id,
                bound,
                outbox.max_queued_bytes if by_bytes else outbox.max_queued,
                delivery.qos,
                delivery.topic,
                outbox.dropped,
                counters.dropped,
            )

    def retained_refused(self, topic: str, bound: str, value: int, kept: int) -> None:
        """A retained message on `topic` was delivered but not kept: `limits.{bound}` = `value`."""
        self.counters.refused_retained += 1
        self._warn_now_and_then(  # one line for all topics: a flood would name them all
            "retained:",
            "retained message on %s not kept (limits.%s = %d, %d kept): delivered to the "
            "subscribers of the moment only (%d refused in total)",
            (topic, bound, value, kept, self.counters.refused_retained),
        )

    def session_expired(self, expired: Expired) -> None:
        """A disconnected persistent session was removed, with its subscriptions and queue."""
        self.counters.sessions_expired += 1
        log.info(
            "session of %s (%s) expired: disconnected for %.0f s (%s = %d)",
            expired.client_id,
            expired.username,
            expired.offline_s,
            expired.setting,
            expired.limit_s,
        )

    def connection_refused(self, peer: str, limit: int) -> None:
        """A new connection from `peer` was closed at once: `limit` connections are open."""
        self.counters.refused_connections += 1
        self._warn_now_and_then(  # one line for all peers: a flood would name them all
            "connections:",
            "refused a connection from %s: limits.max_connections = %d connections are open "
            "(%d refused in total)",
            (peer, limit, self.counters.refused_connections),
        )

    def forget(self, client_id: str) -> None:
        """The client's session is gone: its next line is not held back."""
        self._logged.pop(client_id, None)

    def _warn_now_and_then(self, key: str, message: str, args: tuple[object, ...]) -> None:
        if self._due(key):
            log.warning(message, *args)

    def _due(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._logged.get(key, -LOG_INTERVAL_S) < LOG_INTERVAL_S:
            return False
        if len(self._logged) >= _LOG_KEYS_LIMIT:
            self._logged.clear()
        self._logged[key] = now
        return True
