"""A steady stream of tasks and a dashboard that keeps every result, for failover tests and the
cluster benchmark.

    load = Load(signer, rate=10); load.start(device)   # a thread publishing small `stats` tasks
    watch = Watch(dashboard_section, on="dash-1")       # gateway's FleetLink: persistent, fails over
    ...
    load.stop(); load.lost(watch)                       # PUBACKed tasks without a completed result

Thread rules: `Load` publishes from its own thread through a thread-safe paho client; `Watch`
records on paho's network thread under a lock; both are read from the test's thread.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from agent.common.sections import MqttSection
from agent.protocol import Signer, Topics, make_task
from agent.tools.connection import ToolClient
from gateway.link import FleetLink

TOPICS = Topics()


class Load:
    """Publishes a small `stats` task for `target` every 1/rate seconds until `stop()`; `puback`
    must be the client's `on_puback` (a task counts as acknowledged once its PUBACK came)."""

    def __init__(self, signer: Signer, rate: float, target: str = "node-1") -> None:
        self.signer = signer
        self.period = 1.0 / rate
        self.target = target
        self.sent: dict[str, float] = {}  # task id -> when it was published
        self._by_mid: dict[int, str] = {}  # in flight
        self._early: set[int] = set()  # PUBACKs that came before publish() returned their mid
        self._acked: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self.client: ToolClient | None = None

    def start(self, client: ToolClient) -> None:
        self.client = client
        self._thread.start()

    def puback(self, mid: int) -> None:
        with self._lock:
            task_id = self._by_mid.pop(mid, None)
            if task_id is None:
                self._early.add(mid)
            else:
                self._acked.add(task_id)

    def _run(self) -> None:
        assert self.client is not None
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            n += 1
            topic, payload, task = make_task(
                self.signer, self.target, "stats", {"signal": [float(n), 2.0, 3.0]}, task_id=f"load-{n:05d}"
            )
            with self._lock:  # held across publish: the PUBACK is filed after the mid
                mid = self.client.publish(topic, payload).mid
                self.sent[task.id] = time.time()
                if mid in self._early:
                    self._early.discard(mid)
                    self._acked.add(task.id)
                else:
                    self._by_mid[mid] = task.id
            next_at += self.period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def acknowledged(self) -> set[str]:
        """Ids of the tasks the broker acknowledged (PUBACK)."""
        with self._lock:
            return set(self._acked)

    def unacknowledged(self) -> set[str]:
        with self._lock:
            return set(self.sent) - self._acked


class Watch:
    """A dashboard on a persistent session (the gateway's FleetLink: it fails over across the
    nodes): every payload received, by topic, and when each result first arrived."""

    def __init__(self, section: MqttSection, client_id: str, opener: Callable[[str, bytes], Any]) -> None:
        self._opener = opener
        self._lock = threading.Lock()
        self.payloads: dict[str, list[bytes]] = defaultdict(list)
        self.first_at: dict[str, float] = {}
        self.statuses: dict[str, str] = {}
        self.link = FleetLink(
            section,
            client_id=client_id,
            filters=[TOPICS.prefix + "/results/#", TOPICS.prefix + "/presence/#"],
            on_message=self._on_message,
            on_puback=lambda mid: None,
        )
        self.link.start()

    def _on_message(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        now = time.time()
        with self._lock:
            self.payloads[topic].append(payload)
            if "/results/" in topic and topic not in self.first_at:
                self.first_at[topic] = now
                self.statuses[topic] = self._opener(topic, payload).status
        ack()

    def completed(self, task_ids: set[str], node: str = "node-1") -> set[str]:
        with self._lock:
            return {i for i in task_ids if self.statuses.get(TOPICS.results(node, i)) == "completed"}

    def completed_count(self) -> int:
        with self._lock:
            return sum(1 for status in self.statuses.values() if status == "completed")

    def differing_copies(self) -> list[str]:
        """Result topics that arrived more than once with different bytes (PROTOCOL 7: a
        re-published result has the same body bytes)."""
        with self._lock:
            return [t for t, p in self.payloads.items() if "/results/" in t and len(set(p)) > 1]

    def copies(self) -> int:
        """Results received more than once (re-published after a reconnect, or redelivered)."""
        with self._lock:
            return sum(len(p) - 1 for t, p in self.payloads.items() if "/results/" in t)

    def stop(self) -> None:
        self.link.stop()
