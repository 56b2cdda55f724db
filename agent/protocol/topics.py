"""Every topic name of PROTOCOL 1, built and parsed in one place.

`Topics(prefix)` builds topics; `Topics.parse(topic)` turns a received topic back into a
`ParsedTopic` that says what kind it is and for which node, so nobody splits strings by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal, TypeGuard

from .errors import TopicError

DEFAULT_PREFIX = "edge"
ID_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
ID_RE = re.compile(ID_PATTERN)
#: Targets with a meaning of their own; no node may be called by these names.
RESERVED_NODE_IDS = frozenset({"all"})

TopicKind = Literal[
    "tasks",
    "tasks_all",
    "tasks_pool",
    "control",
    "results",
    "events",
    "heartbeat",
    "presence",
    "rejects",
    "replies",
]

#: Roles a signing key needs to publish on each kind of topic (PROTOCOL 3).
ROLE_FOR_KIND: dict[str, str] = {
    "tasks": "task",
    "tasks_all": "task",
    "tasks_pool": "task",
    "control": "control",
    "results": "agent",
    "events": "agent",
    "heartbeat": "agent",
    "presence": "agent",
    "rejects": "agent",
    "replies": "agent",
}


def is_valid_id(value: object) -> TypeGuard[str]:
    """True for a node, pool or task id of PROTOCOL 1: `[A-Za-z0-9_.:-]{1,64}`."""
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def check_id(value: object, what: str = "id") -> str:
    if not is_valid_id(value):
        raise TopicError(f"{what} {value!r} must match {ID_PATTERN}")
    return value


def check_node_id(value: object) -> str:
    node = check_id(value, "node id")
    if node in RESERVED_NODE_IDS:
        raise TopicError(f"node id {node!r} is reserved (it is a task target of its own)")
    return node


def _check_prefix(prefix: str) -> str:
    if (
        not prefix
        or any(c in prefix for c in "+#\0")
        or prefix.startswith(("$", "/"))
        or prefix.endswith("/")
    ):
        raise TopicError(f"topic prefix {prefix!r} must be non-empty, without + # $ or a leading/trailing /")
    return prefix


@dataclass(frozen=True)
class ParsedTopic:
    """What a concrete (wildcard-free) topic is: its kind, node, pool and task id, and for a reply
    the issuer it is for (the node is then the signer's, not in the topic)."""

    kind: TopicKind
    node: str | None = None
    pool: str | None = None
    task_id: str | None = None
    issuer: str | None = None

    @cached_property
    def task_target(self) -> str | None:
        """The `target` a task arriving on this topic must carry (PROTOCOL 4, check 5)."""
        if self.kind in ("tasks", "control"):
            return self.node
        if self.kind == "tasks_all":
            return "all"
        if self.kind == "tasks_pool":
            return f"pool:{self.pool}"
        return None

    @cached_property
    def required_role(self) -> str:
        return ROLE_FOR_KIND[self.kind]


@dataclass(frozen=True)
class Topics:
    """The topic names of one fleet, under its prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        _check_prefix(self.prefix)

    # -- building ---------------------------------------------------------
    def tasks(self, node: str) -> str:
        return f"{self.prefix}/tasks/{check_node_id(node)}"

    def tasks_all(self) -> str:
        return f"{self.prefix}/tasks/all"

    def tasks_pool(self, pool: str) -> str:
        return f"{self.prefix}/tasks/pool/{check_id(pool, 'pool')}"

    def shared_pool_subscription(self, pool: str) -> str:
        return f"$share/{check_id(pool, 'pool')}/{self.tasks_pool(pool)}"

    def for_target(self, target: str) -> str:
        """The topic a task for `target` (node id, `all` or `pool:{pool}`) is published on."""
        if target == "all":
            return self.tasks_all()
        if target.startswith("pool:"):
            return self.tasks_pool(target[len("pool:") :])
        return self.tasks(target)

    def control(self, node: str) -> str:
        return f"{self.prefix}/control/{check_node_id(node)}"

    def results(self, node: str, task_id: str) -> str:
        return f"{self.prefix}/results/{check_node_id(node)}/{check_id(task_id, 'task id')}"

    def events(self, node: str, task_id: str) -> str:
        return f"{self.prefix}/events/{check_node_id(node)}/{check_id(task_id, 'task id')}"

    def heartbeat(self, node: str) -> str:
        return f"{self.prefix}/heartbeat/{check_node_id(node)}"

    def presence(self, node: str) -> str:
        return f"{self.prefix}/presence/{check_node_id(node)}"

    def rejects(self, node: str) -> str:
        return f"{self.prefix}/rejects/{check_node_id(node)}"

    def replies(self, issuer: str, task_id: str) -> str:
        """Where a task's issuer (its `kid`) reads the results of a task that asked for `reply`."""
        return f"{self.prefix}/replies/{check_id(issuer, 'issuer')}/{check_id(task_id, 'task id')}"

    def never_retained(self) -> tuple[str, ...]:
        """Filters of the topics PROTOCOL 1 says are never retained: every tasks and control topic
        (a broker that can refuse a retained publish there must; presence stays retained)."""
        return (f"{self.prefix}/tasks/#", f"{self.prefix}/control/#")

    def agent_subscriptions(
        self, node: str, pools: tuple[str, ...] = (), *, shared: bool = True
    ) -> list[str]:
        """What agent `node` subscribes to (PROTOCOL 1); pools via `$share` when `shared`."""
        subs = [self.tasks(node), self.tasks_all(), self.control(node)]
        for pool in pools:
            subs.append(self.shared_pool_subscription(pool) if shared else self.tasks_pool(pool))
        return subs

    # -- parsing ----------------------------------------------------------
    def parse(self, topic: str) -> ParsedTopic:
        """Classify a received topic; raises `TopicError` for anything not of PROTOCOL 1."""
        parsed = _parse(self.prefix, topic) if isinstance(topic, str) else None
        if parsed is None:
            if isinstance(topic, str) and not topic.startswith(self.prefix + "/"):
                raise TopicError(f"topic {topic!r} is not under prefix {self.prefix!r}")
            raise TopicError(f"topic {topic!r} is not a topic of the edge protocol")
        return parsed


# An agent sees a handful of distinct topics, each parsed on every message: cache them.
@lru_cache(maxsize=1024)
def _parse(prefix: str, topic: str) -> ParsedTopic | None:
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    kind, *rest = topic[len(head) :].split("/")
    if kind == "tasks":
        if rest == ["all"]:
            return ParsedTopic("tasks_all")
        if len(rest) == 2 and rest[0] == "pool" and is_valid_id(rest[1]):
            return ParsedTopic("tasks_pool", pool=rest[1])
        if len(rest) == 1 and is_valid_id(rest[0]):
            return ParsedTopic("tasks", node=rest[0])
        return None
    if kind in ("control", "heartbeat", "presence", "rejects"):
        if len(rest) == 1 and is_valid_id(rest[0]) and rest[0] not in RESERVED_NODE_IDS:
            return ParsedTopic(kind, node=rest[0])  # type: ignore[arg-type]
        return None
    if kind in ("results", "events"):
        if (
            len(rest) == 2
            and is_valid_id(rest[0])
            and is_valid_id(rest[1])
            and rest[0] not in RESERVED_NODE_IDS
        ):
            return ParsedTopic(kind, node=rest[0], task_id=rest[1])  # type: ignore[arg-type]
        return None
    if kind == "replies":
        if len(rest) == 2 and is_valid_id(rest[0]) and is_valid_id(rest[1]):
            return ParsedTopic("replies", issuer=rest[0], task_id=rest[1])
        return None
    return None
