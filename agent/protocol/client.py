"""Helpers for everything that talks to agents: build and sign tasks, open what agents publish.

    signer = load_signer("device.key", kid="sensor-7")
    topic, payload, task = make_task(signer, target="node-1", kernel="stats", params={"signal": xs})
    ...
    msg = open_agent_message(payload, topic, trust)   # a Result, Event, Heartbeat, Presence or RejectReport

Opening checks what a consumer must not take on faith: the envelope, a key with the `agent`
role whose kid is the node named in the topic (one node cannot speak for another), and the
body's `node` (and `id`) against the topic.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from .codec import DEFAULT_LIMITS, Limits, packb, unpackb
from .envelope import open_envelope, seal, verify_envelope
from .errors import AuthenticationError, BodyError, CodecError, TopicError
from .keys import Signer
from .messages import Event, Heartbeat, Presence, RejectReport, Result, _Message
from .task import Task
from .topics import Topics
from .truststore import TrustStore

DEFAULT_TTL_S = 300.0
NONCE_BYTES = 16
_MESSAGE_TYPES: dict[str, type[_Message]] = {
    "results": Result,
    "events": Event,
    "heartbeat": Heartbeat,
    "presence": Presence,
    "rejects": RejectReport,
    "replies": Result,
}


def new_task_id() -> str:
    return uuid.uuid4().hex


def build_task(
    kernel: str,
    params: dict[str, Any],
    target: str,
    *,
    task_id: str | None = None,
    ttl_s: float = DEFAULT_TTL_S,
    now: float | None = None,
    **optional: Any,
) -> Task:
    """A task body with a fresh id and nonce; `optional` takes any optional field of PROTOCOL 4."""
    issued = time.time() if now is None else now
    body: dict[str, Any] = {
        "id": task_id or new_task_id(),
        "kernel": kernel,
        "params": params,
        "target": target,
        "issued_at": issued,
        "expires_at": issued + ttl_s,
        "nonce": os.urandom(NONCE_BYTES),
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return Task.from_body(body)  # the same check 4 the agent runs: fail here, not there


def sign_task(task: Task, signer: Signer) -> bytes:
    """The envelope bytes to publish."""
    return seal(packb(task.to_body()), signer)


def make_task(
    signer: Signer,
    target: str,
    kernel: str,
    params: dict[str, Any],
    *,
    topics: Topics | None = None,
    **options: Any,
) -> tuple[str, bytes, Task]:
    """Build, sign and address a task: returns (topic, payload, task)."""
    task = build_task(kernel, params, target, **options)
    return (topics or Topics()).for_target(target), sign_task(task, signer), task


def make_control(
    signer: Signer,
    node: str,
    command: str,
    params: dict[str, Any] | None = None,
    *,
    topics: Topics | None = None,
    **options: Any,
) -> tuple[str, bytes, Task]:
    """A `sys.*` command for `node`, signed by a `control` key (PROTOCOL 8)."""
    task = build_task(command, params or {}, node, **options)
    return (topics or Topics()).control(node), sign_task(task, signer), task


def open_agent_message(
    payload: bytes,
    topic: str,
    trust: TrustStore,
    *,
    now: float | None = None,
    topics: Topics | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Result | Event | Heartbeat | Presence | RejectReport:
    """Verify and decode anything an agent publishes (a reply: signed by the node its body names);
    raises a `ProtocolError` otherwise."""
    try:
        parsed = (topics or Topics()).parse(topic)
    except TopicError as exc:
        raise AuthenticationError(str(exc), code="malformed") from None
    cls = _MESSAGE_TYPES.get(parsed.kind)
    if cls is None:
        raise AuthenticationError(f"{topic!r} is not a topic agents publish on", code="malformed")
    env = open_envelope(payload, limits)
    node = env.kid if parsed.kind == "replies" else parsed.node  # a reply's topic names its issuer instead
    if env.kid != node:
        raise AuthenticationError(
            f"signed by {env.kid!r} but published for node {node!r}", code="wrong_role", kid=env.kid
        )
    verify_envelope(env, trust, "agent", time.time() if now is None else now)
    try:
        body = unpackb(env.body, limits)
    except CodecError as exc:
        raise AuthenticationError(f"body: {exc.message}", code="malformed", kid=env.kid) from None
    msg = cls.from_body(body)
    if getattr(msg, "node", None) != node:
        raise BodyError(f"body names node {getattr(msg, 'node', None)!r}, topic {node!r}", field="node")
    if parsed.task_id is not None and getattr(msg, "id", None) != parsed.task_id:
        raise BodyError(f"body names task {getattr(msg, 'id', None)!r}, topic {parsed.task_id!r}", field="id")
    return msg  # type: ignore[return-value]
