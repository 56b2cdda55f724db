"""Acceptance checks 1 to 7 of PROTOCOL 4, as one function.

    accepted = accept_task(payload, topic, now, trust, replay, policy)

returns an `AcceptedTask` or raises `AuthenticationError` (checks 1-3, or 4 without a
readable id: report on the rejects topic) or `TaskRejected` (checks 4-7 with an id: answer
with a `rejected` result). Checks 8 (kernel and params) and 9 (queue room) belong to the agent.

On success the (kid, nonce) and (kid, id) pairs are remembered in `replay` at once, so a
copy arriving before the agent's commit is already caught.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .codec import DEFAULT_LIMITS, Limits, unpackb
from .envelope import open_envelope, verify_envelope
from .errors import AuthenticationError, BodyError, CodecError, TaskRejected, TopicError
from .replay import ReplayCache, ReplayRecord
from .task import Task
from .topics import ParsedTopic, Topics
from .truststore import TrustStore

DEFAULT_CLOCK_SKEW_S = 60.0
DEFAULT_MAX_LIFETIME_S = 24 * 3600.0
_TASK_TOPICS = frozenset({"tasks", "tasks_all", "tasks_pool", "control"})


@dataclass(frozen=True)
class AcceptancePolicy:
    """The receiver's limits; defaults are those of PROTOCOL 4."""

    topics: Topics = field(default_factory=Topics)
    limits: Limits = DEFAULT_LIMITS  # max_payload is check 1's size limit
    clock_skew_s: float = DEFAULT_CLOCK_SKEW_S
    max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S


DEFAULT_POLICY = AcceptancePolicy()


@dataclass(frozen=True)
class AcceptedTask:
    task: Task
    kid: str
    body: bytes  # the exact signed bytes
    body_sha256: bytes
    topic: ParsedTopic
    redelivery: bool = False  # check 6's exception: acknowledge again, produce nothing new


def _task_topic(topic: str, topics: Topics) -> ParsedTopic:
    try:
        parsed = topics.parse(topic)
    except TopicError as exc:
        raise AuthenticationError(f"no task may arrive on this topic: {exc}", code="malformed") from None
    if parsed.kind not in _TASK_TOPICS:
        raise AuthenticationError(f"no task may arrive on a {parsed.kind} topic", code="malformed")
    return parsed


def _check_times(task: Task, now: float, policy: AcceptancePolicy, kid: str) -> None:
    """Check 5, after the target: issue time, expiry and lifetime."""
    if task.issued_at > now + policy.clock_skew_s:
        raise TaskRejected(
            f"issued_at is {task.issued_at - now:.1f} s in the future (clock skew allowed: "
            f"{policy.clock_skew_s:g} s)",
            code="not_yet_valid",
            task_id=task.id,
            kid=kid,
        )
    if task.expires_at <= now:
        raise TaskRejected(
            f"expired {now - task.expires_at:.1f} s ago", code="expired", task_id=task.id, kid=kid
        )
    if task.expires_at - task.issued_at > policy.max_lifetime_s:
        raise TaskRejected(
            f"lifetime {task.expires_at - task.issued_at:.0f} s exceeds the maximum of "
            f"{policy.max_lifetime_s:.0f} s",
            code="ttl_too_long",
            task_id=task.id,
            kid=kid,
        )


def _check_replay(task: Task, kid: str, digest: bytes, replay: ReplayCache) -> bool:
    """Checks 6 and 7; True when this is a redelivery of an already accepted task."""
    seen = replay.by_nonce(kid, task.nonce)
    if seen is not None:
        if seen.task_id == task.id and seen.body_sha256 == digest:
            return True
        raise TaskRejected(
            f"nonce of {kid!r} already used by task {seen.task_id!r}",
            code="replayed",
            task_id=task.id,
            kid=kid,
        )
    earlier = replay.by_id(kid, task.id)
    if earlier is not None and earlier.body_sha256 != digest:
        raise TaskRejected(
            f"id {task.id!r} already used by another task from {kid!r}",
            code="duplicate_id",
            task_id=task.id,
            kid=kid,
        )
    return False


def accept_task(
    payload: bytes,
    topic: str,
    now: float,
    trust: TrustStore,
    replay: ReplayCache,
    policy: AcceptancePolicy = DEFAULT_POLICY,
) -> AcceptedTask:
    """Run checks 1-7 in order; the first that fails decides the outcome."""
    parsed = _task_topic(topic, policy.topics)
    env = open_envelope(payload, policy.limits)  # check 1
    verify_envelope(env, trust, parsed.required_role, now)  # checks 2, 3
    kid = env.kid
    try:  # check 4
        body = unpackb(env.body, policy.limits)
    except CodecError as exc:
        raise AuthenticationError(f"task body: {exc.message}", code="malformed", kid=kid) from None
    try:
        task = Task.from_body(body)
    except BodyError as exc:
        task_id = Task.readable_id(body)
        if task_id is None:
            raise AuthenticationError(
                f"task without a readable id: {exc.message}", code="malformed", kid=kid
            ) from None
        raise TaskRejected(exc.message, code="malformed", task_id=task_id, kid=kid) from None
    if task.target != parsed.task_target:  # check 5
        raise TaskRejected(
            f"target {task.target!r} does not match the topic {topic!r}",
            code="target_mismatch",
            task_id=task.id,
            kid=kid,
        )
    _check_times(task, now, policy, kid)
    digest = hashlib.sha256(env.body).digest()
    redelivery = _check_replay(task, kid, digest, replay)  # checks 6, 7
    if not redelivery:
        replay.remember(ReplayRecord(kid, task.nonce, task.id, digest, task.expires_at + policy.clock_skew_s))
    return AcceptedTask(
        task=task, kid=kid, body=env.body, body_sha256=digest, topic=parsed, redelivery=redelivery
    )
