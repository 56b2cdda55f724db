"""Verified results and rejects reports of the tasks one run of edge-submit published.

    collector = Collector(trust, topics)
    collector.add(task, payload, target_node="node-1", runs=1)
    client.subscribe(collector.filters())        # before publishing anything
    ...
    update = collector.handle(incoming)          # None for messages of other tasks

A result counts only when `open_agent_message` verifies it (agent key, kid = the topic's node, or
for a reply on `{p}/replies/{kid}/{id}` the node its body names);
one that does not verify is reported as `unverified` and never taken as the answer. A rejects
report counts as the agent's answer when its `sha256` is that of a payload we sent (checks 1-3
failed there: the agent never answers those on a results topic, PROTOCOL 5).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from agent.protocol import ProtocolError, RejectReport, Result, Task, Topics, TrustStore, open_agent_message

from .connection import Incoming

#: Above this many tasks one wildcard filter per node replaces one filter per task.
EXACT_FILTERS_UP_TO = 20


@dataclass
class Pending:
    """One published task and what came back for it."""

    task: Task
    sha256: bytes
    node: str | None  # the node of a node target; None for `all` and pools
    runs: int = 1  # results wanted (per node when `expect_nodes` is set)
    expect_nodes: int | None = None  # `all`: how many agents answer (None: unknown, wait it out)
    results: list[Result] = field(default_factory=list)
    refused: RejectReport | None = None
    _seen: set[tuple[str, int]] = field(default_factory=set)

    @property
    def id(self) -> str:
        return self.task.id

    @property
    def done(self) -> bool:
        if self.refused is not None:
            return True
        if self.task.target == "all" and self.expect_nodes is None:
            return False
        return len(self.results) >= self.runs * (self.expect_nodes or 1)

    @property
    def ok(self) -> bool:
        return self.refused is None and bool(self.results) and all(r.ok for r in self.results)


@dataclass(frozen=True)
class Update:
    kind: Literal["result", "refused", "unverified", "duplicate"]
    pending: Pending | None
    result: Result | None = None
    report: RejectReport | None = None
    topic: str = ""
    problem: str = ""


class Collector:
    def __init__(self, trust: TrustStore, topics: Topics, replies_for: str | None = None) -> None:
        """`replies_for`: the issuer's kid when the tasks asked for `reply`: their results are read
        on `{p}/replies/{kid}/{id}` (all an issuer without read access to results may read)."""
        self.trust = trust
        self.topics = topics
        self.replies_for = replies_for
        self.pending: dict[str, Pending] = {}
        self._by_sha: dict[bytes, Pending] = {}

    def add(
        self, task: Task, payload: bytes, node: str | None, runs: int = 1, expect_nodes: int | None = None
    ) -> Pending:
        item = Pending(task, hashlib.sha256(payload).digest(), node, runs, expect_nodes)
        self.pending[task.id] = item
        self._by_sha[item.sha256] = item
        return item

    def filters(self) -> tuple[list[str], list[str]]:
        """(result filters, rejects filters) covering every pending task."""
        p = self.topics.prefix
        nodes = {item.node for item in self.pending.values()}
        node_part = {n or "+" for n in nodes}
        if "+" in node_part:
            node_part = {"+"}
        exact = len(self.pending) <= EXACT_FILTERS_UP_TO
        if self.replies_for is not None:
            base = f"{p}/replies/{self.replies_for}"
            results = (
                sorted({f"{base}/{item.id}" for item in self.pending.values()}) if exact else [f"{base}/+"]
            )
        elif exact:
            results = sorted({f"{p}/results/{item.node or '+'}/{item.id}" for item in self.pending.values()})
        else:
            results = sorted(f"{p}/results/{n}/+" for n in node_part)
        return results, sorted(f"{p}/rejects/{n}" for n in node_part)

    @property
    def done(self) -> bool:
        return all(item.done for item in self.pending.values())

    def handle(self, incoming: Incoming) -> Update | None:
        kind = incoming.topic[len(self.topics.prefix) + 1 :].split("/", 1)[0]
        if kind not in ("results", "replies", "rejects"):
            return None
        try:
            msg = open_agent_message(incoming.payload, incoming.topic, self.trust, topics=self.topics)
        except ProtocolError as exc:
            return Update("unverified", None, topic=incoming.topic, problem=f"{exc.code}: {exc.message}")
        if isinstance(msg, Result):
            return self._result(msg, incoming.topic)
        if isinstance(msg, RejectReport):
            return self._report(msg, incoming.topic)
        return None

    def _result(self, result: Result, topic: str) -> Update | None:
        item = self.pending.get(result.id)
        if item is None or (item.node is not None and item.node != result.node):
            return None
        key = (result.node, result.run)
        if key in item._seen:  # a re-published result (PROTOCOL 7: at least once)
            return Update("duplicate", item, result=result, topic=topic)
        item._seen.add(key)
        item.results.append(result)
        return Update("result", item, result=result, topic=topic)

    def _report(self, report: RejectReport, topic: str) -> Update | None:
        digest = report.sha256 if isinstance(report.sha256, bytes) else _unhex(report.sha256)
        item = self._by_sha.get(digest)
        if item is None or item.refused is not None:
            return None
        item.refused = report
        return Update("refused", item, report=report, topic=topic)


def _unhex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""
