"""The fleet as the gateway sees it over MQTT: every node's presence, its last heartbeat, and the
results and refusals that passed through, for `/api/v1/nodes`, `/api/v1/metrics` and `/metrics`.

Only verified messages reach this table (`inbox.py`); what failed verification is counted by
code as `forged`. A Last Will (offline) older than the node's newest session is stale and ignored
(PROTOCOL 7): a restarted agent's previous connection must not mark it offline.

Thread rules: written on paho's network thread, read by the HTTP loop; one lock, short holds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agent.protocol import Heartbeat, Presence, Result

#: Upper bounds (seconds) of the result latency histogram: the agent's receipt to the end of the run.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class NodeState:
    node: str
    presence: Presence | None = None
    heartbeat: Heartbeat | None = None
    heartbeat_received_at: float | None = None
    results: Counter[str] = field(default_factory=Counter)
    last_result_at: float | None = None

    def view(self, now: float) -> dict[str, Any]:
        p, h = self.presence, self.heartbeat
        out: dict[str, Any] = {
            "node": self.node,
            "online": p is not None and p.state == "online",
            "session": p.session if p else None,
            "version": (h.version if h else None) or (p.version if p else None),
            "kernels": list(p.kernels) if p else [],
            "last_heartbeat_age_s": round(now - self.heartbeat_received_at, 3)
            if self.heartbeat_received_at is not None
            else None,
            "last_heartbeat_at": self.heartbeat_received_at,
            "results": dict(self.results),
            "last_result_at": self.last_result_at,
        }
        if h is not None:
            out.update(
                state=h.state, queued=h.queued, running=h.running, outbox=h.outbox,
                completed_total=h.completed_total, abandoned_total=h.abandoned_total,
                rejected_total=h.rejected_total, rss_bytes=h.rss_bytes, cpu_percent=h.cpu_percent,
                load1=h.load1, backend=h.backend, uptime_s=h.uptime_s,
            )  # fmt: skip
        return out


class FleetView:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeState] = {}
        self.forged: Counter[str] = Counter()  # messages that failed verification, by code
        self.rejects: Counter[str] = Counter()  # rejects reports agents published, by code
        self._latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0

    def _state(self, node: str) -> NodeState:
        state = self._nodes.get(node)
        if state is None:
            state = self._nodes[node] = NodeState(node)
        return state

    def presence(self, presence: Presence) -> bool:
        """False when it changes nothing: the Will of a session older than the newest birth."""
        with self._lock:
            state = self._state(presence.node)
            old = state.presence
            if old is not None and presence.state == "offline" and presence.session < old.session:
                return False
            state.presence = presence
            return True

    def heartbeat(self, heartbeat: Heartbeat, received_at: float) -> None:
        with self._lock:
            state = self._state(heartbeat.node)
            state.heartbeat, state.heartbeat_received_at = heartbeat, received_at

    def result(self, result: Result) -> None:
        with self._lock:
            state = self._state(result.node)
            state.results[result.status] += 1
            state.last_result_at = time.time()
            if result.finished_at is not None:
                seconds = max(0.0, result.finished_at - result.received_at)
                self._latency_sum += seconds
                bucket = next(
                    (i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b), len(LATENCY_BUCKETS)
                )
                self._latency[bucket] += 1

    def forged_message(self, code: str) -> int:
        """Counted by code; the count of `code` so far."""
        with self._lock:
            self.forged[code] += 1
            return self.forged[code]

    def reject_report(self, code: str) -> int:
        with self._lock:
            self.rejects[code] += 1
            return self.rejects[code]

    def alert_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(forged messages by code, rejects reports by code)."""
        with self._lock:
            return dict(self.forged), dict(self.rejects)

    # -- reading -------------------------------------------------------------------------------------

    def nodes(self, now: float | None = None) -> list[dict[str, Any]]:
        at = time.time() if now is None else now
        with self._lock:
            return [self._nodes[n].view(at) for n in sorted(self._nodes)]

    def node(self, name: str, now: float | None = None) -> dict[str, Any] | None:
        with self._lock:
            state = self._nodes.get(name)
            return None if state is None else state.view(time.time() if now is None else now)

    def latency(self) -> tuple[list[int], float]:
        """(count per bucket of LATENCY_BUCKETS, then +Inf; the sum of seconds)."""
        with self._lock:
            return list(self._latency), self._latency_sum

    def newest_heartbeat_age(self, now: float | None = None) -> float | None:
        at = time.time() if now is None else now
        with self._lock:
            ages = [at - s.heartbeat_received_at for s in self._nodes.values() if s.heartbeat_received_at]
        return min(ages) if ages else None
