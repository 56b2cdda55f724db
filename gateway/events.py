"""The live events of the dashboard (`GET /api/v1/events`): what the Inbox verified, turned into
Server-Sent Events and fanned out to every connected page.

    hub = EventHub(fleet, priorities=records.priorities, loop=loop, settings=config.events)
    inbox = Inbox(..., listener=hub)      # the hub hears of each verified or forged message
    hub.start()
    page = hub.subscribe(client)          # the snapshot first, then `result`, `node`, `alert`, `gap`
    chunk = await page.next(15.0)         # every event queued since the last call, in one write
    hub.unsubscribe(page); await hub.close()

Each event is built and encoded (`event: <kind>\\ndata: <JSON>\\n\\n`) once, whatever the number of
pages, and the same bytes are queued for each. Events are gathered for `batch_s` (50 ms) and handed
over together, so a page gets at most one write per batch however fast results come. A page's
queue holds at most `queue_max` events: a page that reads too slowly loses the oldest, and its
next write starts with a `gap` event saying how many (it then reconnects for a new snapshot). The
memory is fixed: the queues, the seen-results ring, the recent alerts and the throughput rings
(history.py) all have caps; the Inbox's hand-over queue too (`BACKLOG_MAX`: past it, every page
gets a `gap`). A flood of forged messages is folded: at most ALERTS_PER_BATCH alerts of one kind
and code per batch, the last carrying the total count.

Thread rules: the `on_*` listener methods run on paho's network thread (inbox.py): they only
append to the hand-over queue under a short lock and wake the pump with `call_soon_threadsafe`,
never touching a page, so a slow page can never hold up the MQTT connection. Everything else (the
pump, the rings, the pages, `subscribe`) runs on the HTTP loop; the priority lookup of a batch's
results (SQLite) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from agent.protocol import RejectReport, Result, TopicError, Topics

from .clients import ApiClient
from .config import EventsSection
from .errors import ApiError
from .history import SeenResults, Throughput
from .nodes import FleetView
from .timeouts import within
from .views import finite, result_summary

log = logging.getLogger(__name__)

SNAPSHOT_RESULTS = 100
RECENT_ALERTS = 50
ALERTS_PER_BATCH = 5  # of one kind and code; the rest folded into the last one's count
BACKLOG_MAX = 20_000  # messages handed over by the Inbox and not yet turned into events
KEEPALIVE = b": keepalive\n\n"
RETRY = b"retry: 2000\n\n"

Priorities = Callable[[Sequence[str]], dict[str, int]]


def encode(kind: str, data: Any) -> bytes:
    """One SSE message; JSON on one line (NaN and infinity, which JSON lacks, as null)."""
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(finite(data), separators=(",", ":"), allow_nan=False)
    return b"event: " + kind.encode() + b"\ndata: " + text.encode() + b"\n\n"


def _folded_alerts(batch: list[tuple[str, Any, float]]) -> set[int]:
    """The positions of alerts not sent on their own: past ALERTS_PER_BATCH of one kind and code in
    a batch, only the last is (its `count` says how many came), so a flood of forged messages
    cannot crowd the fleet's events out of the pages' queues."""
    seen: dict[tuple[str, str], list[int]] = {}
    for n, (kind, item, _) in enumerate(batch):
        if kind == "alert":
            seen.setdefault((item["kind"], item["code"]), []).append(n)
    folded: set[int] = set()
    for positions in seen.values():
        folded.update(positions[ALERTS_PER_BATCH - 1 : -1])
    return folded


class Page:
    """One connected page's queue of encoded events (HTTP loop only)."""

    def __init__(self, client: ApiClient, queue_max: int) -> None:
        self.client = client
        self.queue_max = queue_max
        self.closed = False
        self._queue: deque[bytes] = deque()
        self._dropped = 0
        self._ready = asyncio.Event()

    def put(self, events: Sequence[bytes]) -> None:
        self._queue.extend(events)
        over = len(self._queue) - self.queue_max
        if over > 0:
            for _ in range(over):
                self._queue.popleft()
            self._dropped += over
        self._ready.set()

    def lost(self, count: int) -> None:
        """Events this page will never see (the hub's backlog overflowed): a `gap` too."""
        self._dropped += count
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self, keepalive_s: float) -> bytes:
        """Everything queued (a `gap` first when events were lost), waiting for it up to
        `keepalive_s`; a keepalive comment when nothing came; b"" once closed."""
        if not self._queue and not self._dropped and not self.closed:
            try:
                await within(self._ready.wait(), keepalive_s)
            except asyncio.TimeoutError:
                return KEEPALIVE
        self._ready.clear()
        if self.closed:
            return b""
        parts = list(self._queue)
        self._queue.clear()
        if self._dropped:
            parts.insert(0, encode("gap", {"dropped": self._dropped}))
            self._dropped = 0
        return b"".join(parts)


class EventHub:
    def __init__(
        self,
        fleet: FleetView,
        *,
        priorities: Priorities,
        loop: asyncio.AbstractEventLoop,
        settings: EventsSection,
        topics: Topics,
    ) -> None:
        self._fleet = fleet
        self._priorities = priorities
        self._loop = loop
        self.settings = settings
        self._topics = topics
        self.seen = SeenResults()
        self.throughput = Throughput()
        self.alerts: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)
        self.pages: set[Page] = set()
        self._lock = threading.Lock()
        self._backlog: list[tuple[str, Any, float]] = []
        self._lost = 0
        self._woken = False
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    # -- the Inbox's listener (paho's network thread) --------------------------------------------

    def on_result(self, result: Result) -> None:
        self._hand_over("result", result)

    def on_node(self, node: str) -> None:
        self._hand_over("node", node)

    def on_forged(self, topic: str, code: str, message: str, count: int) -> None:
        try:
            node = self._topics.parse(topic).node
        except TopicError:
            node = None
        alert = {"kind": "forged", "code": code, "topic": topic, "node": node, "message": message,
                 "at": time.time(), "count": count, "verified": False}  # fmt: skip
        self._hand_over("alert", alert)

    def on_reject(self, report: RejectReport, count: int) -> None:
        said = ", ".join(f"{k} {v}" for k, v in (("kid", report.kid), ("id", report.id)) if v)
        message = f"{report.node} could not authenticate a message on {report.topic}" + (
            f" ({said})" if said else ""
        )
        alert = {"kind": "reject", "code": report.code, "topic": report.topic, "node": report.node,
                 "message": message, "at": report.at, "count": count, "verified": True}  # fmt: skip
        self._hand_over("alert", alert)

    def _hand_over(self, kind: str, item: Any) -> None:
        with self._lock:
            if len(self._backlog) >= BACKLOG_MAX:
                self._lost += 1
                return
            self._backlog.append((kind, item, time.time()))
            wake, self._woken = not self._woken, True
        if wake:
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- the pump (HTTP loop) ------------------------------------------------------------------------

    def start(self) -> None:
        self._pump = self._loop.create_task(self._run())

    async def close(self) -> None:
        """Every page's stream ends (the gateway stops); the pump stops."""
        for page in list(self.pages):
            page.close()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.settings.batch_s)  # gather what else comes
            self._wake.clear()
            with self._lock:
                batch, self._backlog = self._backlog, []
                lost, self._lost = self._lost, 0
                self._woken = False
            try:
                await self._publish(batch, lost)
            except Exception:  # a fault in one batch must not end the live view
                log.exception("building %d dashboard event(s) failed", len(batch))

    async def _publish(self, batch: list[tuple[str, Any, float]], lost: int) -> None:
        results = [item for kind, item, _ in batch if kind == "result"]
        priorities = await asyncio.to_thread(self._priorities, [r.id for r in results]) if results else {}
        events: list[bytes] = []
        nodes_done: set[str] = set()
        folded = _folded_alerts(batch)
        for n, (kind, item, at) in enumerate(batch):
            if kind == "result":
                summary = result_summary(item, priorities.get(item.id))
                if self.seen.add(summary):  # else a redelivery: shown once
                    self.throughput.add(item.node, at)
                    events.append(encode("result", summary))
            elif kind == "node" and item not in nodes_done:
                nodes_done.add(item)
                view = self._fleet.node(item)
                if view is not None:
                    events.append(encode("node", {**view, "verified": True}))
            elif kind == "alert" and n not in folded:
                self.alerts.append(item)
                events.append(encode("alert", item))
        if lost:
            log.warning("%d fleet message(s) came faster than the dashboard's events could be built", lost)
        for page in self.pages:
            if lost:
                page.lost(lost)
            if events:
                page.put(events)

    # -- pages (HTTP loop) ----------------------------------------------------------------------------

    def subscribe(self, client: ApiClient) -> Page:
        """A new page, its snapshot already queued: built and registered in one step of the loop,
        so every later event reaches it and none before the snapshot does."""
        if len(self.pages) >= self.settings.pages_max:
            raise ApiError(
                503,
                "too_many_pages",
                f"{len(self.pages)} pages are connected, the most this gateway serves; retry later",
                headers={"Retry-After": "10"},
            )
        page = Page(client, self.settings.queue_max)
        page.put([encode("snapshot", self.snapshot(client))])
        self.pages.add(page)
        return page

    def unsubscribe(self, page: Page) -> None:
        self.pages.discard(page)

    def snapshot(self, client: ApiClient, now: float | None = None) -> dict[str, Any]:
        at = time.time() if now is None else now
        forged, rejects = self._fleet.alert_counts()
        return {
            "nodes": [{**view, "verified": True} for view in self._fleet.nodes(at)],
            "results": self.seen.newest(SNAPSHOT_RESULTS),
            "alerts": {"forged": forged, "rejects": rejects, "recent": list(reversed(self.alerts))},
            "throughput": self.throughput.view(at),
            "server_time": at,
            "client": {"name": client.name, "roles": sorted(client.roles)},
            "verified": True,
        }
