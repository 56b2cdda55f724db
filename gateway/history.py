"""What the fleet did lately, in fixed-size memory: the dashboard's snapshot and the task detail of
results the gateway saw but did not submit. Nothing here grows with the number of events.

    throughput = Throughput()                 # results per node in 30 buckets of 10 s (5 minutes)
    throughput.add("node-1", time.time()); throughput.view(now)
    seen = SeenResults()                      # the last 1,000 result summaries, by (node, id, run)
    seen.add(summary)                         # False for one already there (a QoS 1 redelivery)
    seen.newest(100); seen.of_task("t-1")

Thread rules: the HTTP loop only (events.py's pump writes them, the routes read them).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

BUCKET_S = 10
BUCKETS = 30
SEEN_MAX = 1000


class Throughput:
    """Per node, a ring of BUCKETS counters indexed by bucket number modulo BUCKETS; a slot is
    zeroed when time moves past it, so the ring never holds more than the last BUCKETS buckets."""

    def __init__(self, bucket_s: int = BUCKET_S, buckets: int = BUCKETS) -> None:
        self.bucket_s = bucket_s
        self.buckets = buckets
        self._rings: dict[str, list[int]] = {}  # nodes are the fleet's (verified senders): bounded
        self._newest: dict[str, int] = {}  # per node, the newest bucket number counted

    def add(self, node: str, at: float) -> None:
        bucket = int(at // self.bucket_s)
        ring = self._rings.get(node)
        if ring is None:
            ring = self._rings[node] = [0] * self.buckets
            self._newest[node] = bucket
        newest = self._newest[node]
        if bucket > newest:
            for passed in range(max(newest + 1, bucket - self.buckets + 1), bucket + 1):
                ring[passed % self.buckets] = 0
            self._newest[node] = newest = bucket
        elif bucket <= newest - self.buckets:
            return  # older than the ring (a clock step back)
        ring[bucket % self.buckets] += 1

    def view(self, now: float) -> dict[str, Any]:
        """{"bucket_s", "end" (the end of the current bucket), "nodes": {node: counts, oldest first}}."""
        current = int(now // self.bucket_s)
        first = current - self.buckets + 1
        nodes = {}
        for node, ring in self._rings.items():
            newest = self._newest[node]
            nodes[node] = [
                ring[b % self.buckets] if newest - self.buckets < b <= newest else 0
                for b in range(first, current + 1)
            ]
        return {"bucket_s": self.bucket_s, "end": (current + 1) * self.bucket_s, "nodes": nodes}


class SeenResults:
    """The last `size` result summaries (views.result_summary), oldest first."""

    def __init__(self, size: int = SEEN_MAX) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str, int], dict[str, Any]] = OrderedDict()

    def add(self, summary: dict[str, Any]) -> bool:
        key = (summary["node"], summary["id"], summary["run"])
        if key in self._items:
            return False
        self._items[key] = summary
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return True

    def newest(self, count: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for summary in reversed(self._items.values()):
            if len(out) == count:
                break
            out.append(summary)
        return out

    def of_task(self, task_id: str) -> list[dict[str, Any]]:
        """The results of `task_id` still in the ring, oldest first (one per node and run)."""
        return [s for s in self._items.values() if s["id"] == task_id]

    def __len__(self) -> int:
        return len(self._items)
