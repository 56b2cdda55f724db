"""Which topics each identity may read and write: PROTOCOL 1, per role, in one place.

Both broker formats (mosquitto.py, amqtt_files.py) write exactly these grants, so the rules
live here only. Topic names come from `Topics`; a subtree filter (`.../#`) is made by replacing
the last level of a topic `Topics` built, never by spelling a topic by hand.

| kind      | reads                                                | writes                             |
|-----------|------------------------------------------------------|------------------------------------|
| agent N   | tasks/N, tasks/all, control/N, tasks/pool/P (and its | results/N/#, events/N/#,           |
|           | shared subscription $share/P/{p}/tasks/pool/P)       | heartbeat/N, presence/N, rejects/N |
| device    | nothing                                              | tasks/# or only its --targets      |
| operator  | results/#, rejects/#                                 | tasks/#, control/#                 |
| dashboard | {p}/#                                                | nothing                            |

A revoked identity has no grants at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.protocol.topics import Topics

from .identities import parse_target
from .records import Identity

Access = Literal["read", "write"]
_PLACEHOLDER = "x"  # a valid id, replaced by a wildcard


@dataclass(frozen=True, order=True)
class Grant:
    access: Access
    topic: str  # a topic filter

    @property
    def shared(self) -> bool:
        return self.topic.startswith("$share/")


def subtree(topic: str, levels: int = 1) -> str:
    """The filter for everything under `topic` less its last `levels` levels.

    `subtree("edge/results/n1/x")` is `edge/results/n1/#`; with `levels=2`, `edge/results/#`.
    """
    return topic.rsplit("/", levels)[0] + "/#"


def _agent(identity: Identity, t: Topics) -> list[Grant]:
    node = identity.name
    reads = [t.tasks(node), t.tasks_all(), t.control(node)]
    for pool in identity.pools:
        reads += [t.tasks_pool(pool), t.shared_pool_subscription(pool)]
    writes = [
        subtree(t.results(node, _PLACEHOLDER)),
        subtree(t.events(node, _PLACEHOLDER)),
        t.heartbeat(node),
        t.presence(node),
        t.rejects(node),
    ]
    return [Grant("read", r) for r in reads] + [Grant("write", w) for w in writes]


def _device(identity: Identity, t: Topics) -> list[Grant]:
    if identity.targets is None:
        return [Grant("write", subtree(t.tasks_all()))]
    return [Grant("write", t.for_target(parse_target(target).text)) for target in identity.targets]


def _operator(t: Topics) -> list[Grant]:
    return [
        Grant("read", subtree(t.results(_PLACEHOLDER, _PLACEHOLDER), levels=2)),
        Grant("read", subtree(t.rejects(_PLACEHOLDER))),
        Grant("write", subtree(t.tasks_all())),
        Grant("write", subtree(t.control(_PLACEHOLDER))),
    ]


def grants_for(identity: Identity, topics: Topics) -> list[Grant]:
    """The identity's grants, in a stable order (reads first)."""
    if identity.revoked:
        return []
    if identity.kind == "agent":
        return _agent(identity, topics)
    if identity.kind == "device":
        return _device(identity, topics)
    if identity.kind == "operator":
        return _operator(topics)
    return [Grant("read", subtree(topics.tasks_all(), levels=2))]


def reads(grants: list[Grant]) -> list[str]:
    return [g.topic for g in grants if g.access == "read"]


def writes(grants: list[Grant]) -> list[str]:
    return [g.topic for g in grants if g.access == "write"]
