"""One message under the prefix as an `Observation`: verified, or flagged with the reason.

    obs = observe(incoming, trust, topics)          # never raises for what the broker delivers
    print(line(obs))                                # 12:00:01 result    node-1 t-17 stats completed 1.2 ms
    print(dumps(document(obs)))                     # {"kind": "result", "verified": true, ...}

Verification is `open_agent_message`: an agent key of the trust store, the envelope's kid equal to
the node named in the topic, the body's node and id equal to the topic's. Anything else is FLAGGED:
`verified` false, `problem` the protocol's code (`bad_signature`, `unknown_key`, `wrong_role`,
`malformed`, ...), and the body shown as it claims to be, decoded without trusting it. The word
`FORGED` in a line is a contract (scripts and `make run`'s test grep for it, and for `result`, the
kernel and `completed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.protocol import (
    Event,
    Heartbeat,
    Presence,
    ProtocolError,
    RejectReport,
    Result,
    TopicError,
    Topics,
    TrustStore,
    open_agent_message,
    open_envelope,
    unpackb,
)

from .connection import Incoming
from .render import clock, duration, error_text, jsonable

KINDS = {
    "results": "result",
    "events": "event",
    "heartbeat": "heartbeat",
    "presence": "presence",
    "rejects": "reject",
}
Message = Result | Event | Heartbeat | Presence | RejectReport
#: `problem` of an empty payload: not a forgery, not verified either.
CLEARED = "cleared"


@dataclass
class Observation:
    kind: str  # presence, heartbeat, result, event, reject (or `unknown` for a topic outside PROTOCOL 1)
    topic: str
    node: str | None
    task_id: str | None
    verified: bool
    received_at: float
    message: Message | None = None  # when verified
    claimed: Any = None  # the body as decoded without verification (flagged messages)
    problem: str | None = None  # protocol error code when not verified
    detail: str | None = None
    retained: bool = False
    duplicate: bool = False  # a result already seen (same node, id, run)
    stale: bool = False  # a presence record older than the node's newest session (PROTOCOL 7)

    @property
    def body(self) -> Any:
        return self.message.to_body() if self.message is not None else self.claimed


def _claimed_body(payload: bytes) -> Any:
    """What an unverified payload says it is (for display only), or None."""
    try:
        return unpackb(open_envelope(payload).body)
    except ProtocolError:
        return None


def observe(incoming: Incoming, trust: TrustStore, topics: Topics) -> Observation:
    """Classify and verify one delivered message."""
    topic = incoming.topic
    try:
        parsed = topics.parse(topic)
        kind, node, task_id = KINDS.get(parsed.kind, "unknown"), parsed.node, parsed.task_id
    except TopicError:
        parts = topic.split("/")
        kind = KINDS.get(parts[1], "unknown") if len(parts) > 1 else "unknown"
        node, task_id = (parts[2] if len(parts) > 2 else None), (parts[3] if len(parts) > 3 else None)
    obs = Observation(kind, topic, node, task_id, False, incoming.received_at, retained=incoming.retain)
    if not incoming.payload:  # how MQTT deletes a retained message: nothing to verify, nothing claimed
        obs.problem, obs.detail = CLEARED, "an empty message (a retained record deleted), not signed"
        return obs
    try:
        obs.message = open_agent_message(incoming.payload, topic, trust, topics=topics)
        obs.verified = True
    except ProtocolError as exc:
        obs.problem, obs.detail = exc.code, exc.message
        obs.claimed = _claimed_body(incoming.payload)
    return obs


# --- lines ------------------------------------------------------------------------------------------


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _details(msg: Message) -> str:
    if isinstance(msg, Result):
        tail = duration(msg.duration_ms) if msg.ok else error_text(msg.error)
        run = f" run {msg.run}" if msg.run > 1 else ""
        return f"{msg.id} {msg.kernel} {msg.status} {tail}{run}"
    if isinstance(msg, Event):
        extra = f" {msg.code}" if msg.code else ""
        return f"{msg.id} {msg.status} attempt {msg.attempt} run {msg.run}{extra}"
    if isinstance(msg, Heartbeat):
        return (
            f"{msg.state} queued {msg.queued} running {msg.running} outbox {msg.outbox}"
            f" completed {msg.completed_total} rss {_mib(msg.rss_bytes)} cpu {msg.cpu_percent:.0f}%"
        )
    if isinstance(msg, Presence):
        return f"{msg.state} session {msg.session} version {msg.version} kernels {len(msg.kernels)}"
    parts = [msg.code]
    parts += [f"kid {msg.kid}"] if msg.kid else []
    parts += [f"id {msg.id}"] if msg.id else []
    return " ".join([*parts, f"on {msg.topic}"])


def line(obs: Observation) -> str:
    """One human-readable line; flagged messages start with FORGED after the time."""
    when = clock(obs.received_at)
    node = obs.node or "?"
    if obs.problem == CLEARED:
        return f"{when} {obs.kind:<9} {node} cleared ({obs.detail})"
    if not obs.verified:
        what = " ".join(p for p in (obs.kind, node, obs.task_id) if p)
        return f"{when} FORGED {what} ({obs.problem}: {obs.detail})"
    assert obs.message is not None
    notes = " (duplicate)" if obs.duplicate else ""
    notes += " (stale session, ignored)" if obs.stale else ""
    notes += " (retained)" if obs.retained and obs.kind == "presence" else ""
    return f"{when} {obs.kind:<9} {node} {_details(obs.message)}{notes}"


def document(obs: Observation) -> dict[str, Any]:
    """The JSON-lines record: kind, topic, node, verified, problem/detail, the decoded body."""
    doc: dict[str, Any] = {
        "kind": obs.kind,
        "topic": obs.topic,
        "node": obs.node,
        "verified": obs.verified,
        "received_at": obs.received_at,
    }
    if obs.task_id is not None:
        doc["id"] = obs.task_id
    if not obs.verified:
        doc.update(problem=obs.problem, detail=obs.detail)
    if obs.duplicate:
        doc["duplicate"] = True
    if obs.stale:
        doc["stale"] = True
    if obs.retained:
        doc["retained"] = True
    doc["body"] = jsonable(obs.body)
    return doc
