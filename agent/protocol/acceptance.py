"""Acceptance checks 1 to 7 of PROTOCOL 4, as one function.

    accepted = accept_task(payload, topic, now, trust, replay, policy)

returns an `AcceptedTask` or raises `AuthenticationError` (checks 1-3, or 4 without a
readable id: report on the rejects topic) or `TaskRejected` (checks 4-7 with an id: answer
with a `rejected` result). Checks 8 (kernel and params) and 9 (queue room) belong to the agent.

On success the (kid, nonce) and (kid, id) pairs are claimed in `replay` in one atomic step,
so a copy arriving before the agent's commit, even on another thread, is already caught.

One part of check 8 is decided before that claim: whether the kernel may arrive on this topic
(PROTOCOL 8: `sys.*` only on the control topic, and only `sys.*` there; `unknown_kernel`). A
copy of an operator's signed command republished on a tasks topic (or of a task on the control
topic) must not burn the nonce of the real one, which would then count as a redelivery and do
nothing. Such a copy is refused as `unknown_kernel` even after the real one was accepted.

Check 4 reads the body only after the signature verified: nothing an unauthenticated
sender controls reaches more than the envelope decoder.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

import msgpack

from .codec import DEFAULT_LIMITS, Limits, check_tree, parse
from .envelope import open_envelope, verify_envelope
from .errors import AuthenticationError, BodyError, CodecError, ProtocolError, TaskRejected, TopicError
from .replay import ReplayCache, ReplayRecord
from .task import Task
from .topics import ParsedTopic, Topics
from .truststore import TrustStore

CONTROL_KERNEL_PREFIX = "sys."  # PROTOCOL 8: the kernels of control commands
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
    #: How long after a task's `expires_at` its replay record is kept (`ReplayRecord.forget_after`):
    #: None is the clock skew, for a cache forgotten by the wall clock (`MemoryReplayCache`). The
    #: agent's durable cache forgets by a floor of the clock that already trails by the skew
    #: (agent/node/store/replay.py), and sets 0.
    replay_margin_s: float | None = None

    def forget_after(self, expires_at: float) -> float:
        """The `forget_after` of a replay record of a task that expires at `expires_at`."""
        margin = self.clock_skew_s if self.replay_margin_s is None else self.replay_margin_s
        return expires_at + margin


DEFAULT_POLICY = AcceptancePolicy()


class AcceptedTask(NamedTuple):
    """What `accept_task` returns (a NamedTuple: one is built per task, cheaply)."""

    task: Task
    kid: str
    body: bytes  # the exact signed bytes
    sig: bytes  # their signature; with `kid`, it identifies the body (see ReplayRecord.body_id)
    topic: ParsedTopic
    redelivery: bool = False  # check 6's exception: acknowledge again, produce nothing new

    @property
    def body_sha256(self) -> bytes:
        """SHA-256 of the body, for audit logs and stores; computed when asked, not on the hot path."""
        return hashlib.sha256(self.body).digest()


def _task_topic(topic: str, topics: Topics) -> ParsedTopic:
    try:
        parsed = topics.parse(topic)
    except TopicError as exc:
        raise AuthenticationError(f"no task may arrive on this topic: {exc}", code="malformed") from None
    if parsed.kind not in _TASK_TOPICS:
        raise AuthenticationError(f"no task may arrive on a {parsed.kind} topic", code="malformed")
    return parsed


def _salvaged_id(body: bytes) -> str | None:
    """The `id` of a body our codec refused (a bad array, too deep), if MessagePack can still read it."""
    try:
        value = msgpack.unpackb(body, raw=False, ext_hook=lambda code, data: None)
    except Exception:  # unreadable in any way: there is no id to answer
        return None
    return Task.readable_id(value)


def _refused(message: str, task_id: str | None, kid: str, field: str | None) -> ProtocolError:
    """A check-4 failure: answered with a result when the id is readable, else a rejects report."""
    if task_id is None:
        return AuthenticationError(
            f"task without a readable id: {message}", code="malformed", kid=kid, field=field
        )
    return TaskRejected(message, code="malformed", task_id=task_id, kid=kid, field=field)


def _read_task(body: bytes, kid: str, limits: Limits) -> Task:
    """Check 4. `Task.from_body` checks the type of every known field, so only `params` and
    unknown extra fields still need the codec's depth and type check."""
    try:
        value = parse(body, limits)
    except CodecError as exc:
        raise _refused(f"task body: {exc.message}", _salvaged_id(body), kid, None) from None
    try:
        task = Task.from_body(value)
        check_tree(task.params, limits.max_depth, 2)
        if task.extra:
            check_tree(task.extra, limits.max_depth, 2)
    except (BodyError, CodecError) as exc:
        raise _refused(exc.message, Task.readable_id(value), kid, getattr(exc, "field", None)) from None
    return task


def _check_target(task: Task, parsed: ParsedTopic, topic: str, kid: str) -> None:
    """Check 5, first part: a signed task cannot be re-routed."""
    if task.target != parsed.task_target:
        raise TaskRejected(
            f"target {task.target!r} does not match the topic {topic!r}",
            code="target_mismatch",
            task_id=task.id,
            kid=kid,
        )


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


def _wrong_topic(task: Task, parsed: ParsedTopic, kid: str) -> TaskRejected:
    """Check 8, its topic part: a kernel that may not arrive on this topic (see the module docstring)."""
    if parsed.kind == "control":
        message = (
            f"{task.kernel!r} is not a control command ({CONTROL_KERNEL_PREFIX}*); "
            "kernels are sent on the tasks topic"
        )
    else:
        message = f"{task.kernel!r} is a control command: it is sent on the control topic"
    return TaskRejected(message, code="unknown_kernel", task_id=task.id, kid=kid, field="kernel")


def _claim(task: Task, kid: str, sig: bytes, replay: ReplayCache, forget_after: float) -> bool:
    """Checks 6 and 7 in one atomic step; True when this is a redelivery of an accepted task."""
    seen = replay.claim(ReplayRecord(kid, task.nonce, task.id, sig, forget_after))
    if seen is None:
        return False
    if seen.nonce == task.nonce:
        if seen.task_id == task.id and seen.body_id == sig:
            return True
        raise TaskRejected(
            f"nonce of {kid!r} already used by task {seen.task_id!r}",
            code="replayed",
            task_id=task.id,
            kid=kid,
        )
    raise TaskRejected(
        f"id {task.id!r} already used by another task from {kid!r}",
        code="duplicate_id",
        task_id=task.id,
        kid=kid,
    )


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
    task = _read_task(env.body, env.kid, policy.limits)  # check 4
    issued_at, expires_at = task.issued_at, task.expires_at
    if not (  # check 5 in one test; when it fails, the two below say which part, in order
        task.target == parsed.task_target
        and issued_at <= now + policy.clock_skew_s
        and expires_at > now
        and expires_at - issued_at <= policy.max_lifetime_s
    ):
        _check_target(task, parsed, topic, env.kid)
        _check_times(task, now, policy, env.kid)
    if task.kernel.startswith(CONTROL_KERNEL_PREFIX) != (parsed.kind == "control"):
        raise _wrong_topic(task, parsed, env.kid)  # check 8's topic part, before the claim
    redelivery = _claim(task, env.kid, env.sig, replay, policy.forget_after(expires_at))  # checks 6, 7
    return AcceptedTask(task, env.kid, env.body, env.sig, parsed, redelivery)
