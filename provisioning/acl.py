"""Which topics each identity may read and write: PROTOCOL 1, per role, in one place.

Both broker formats (mosquitto.py, amqtt_files.py) write exactly these grants, so the rules
live here only. Topic names come from `Topics`; a subtree filter (`.../#`) is made by replacing
the last level of a topic `Topics` built, never by spelling a topic by hand.

| kind      | reads                                                | writes                             |
|-----------|------------------------------------------------------|------------------------------------|
| agent N   | tasks/N, tasks/all, control/N, tasks/pool/P (and its | results/N/#, events/N/#,           |
|           | shared subscription $share/P/{p}/tasks/pool/P)       | heartbeat/N, presence/N, rejects/N,|
|           |                                                      | replies/#                          |
| device D  | replies/D/#                                          | tasks/# or only its --targets      |
| operator O| results/#, rejects/#, replies/O/#                    | tasks/#, control/#                 |
| dashboard | results/#, events/#, heartbeat/#, presence/#,        | nothing                            |
|           | rejects/# (what agents publish; never tasks/control) |                                    |
| gateway G | what a dashboard reads, and replies/G/#              | tasks/#, control/#                 |

Least privilege (PROTOCOL 1): nobody but the agents of a pool holds a grant for that pool's
`$share/P/...` form, which is what a shared subscription needs on a broker that checks
subscriptions (the embedded one; Mosquitto's acl_file does not, see provisioning/README.md).

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
        subtree(t.replies(_PLACEHOLDER, _PLACEHOLDER), levels=2),
    ]
    return [Grant("read", r) for r in reads] + [Grant("write", w) for w in writes]


def _own_replies(identity: Identity, t: Topics) -> Grant:
    """An issuer reads the replies to its own tasks (`{p}/replies/{name}/#`), nobody else's."""
    return Grant("read", subtree(t.replies(identity.name, _PLACEHOLDER)))


def _device(identity: Identity, t: Topics) -> list[Grant]:
    if identity.targets is None:
        writes = [subtree(t.tasks_all())]
    else:
        writes = [t.for_target(parse_target(target).text) for target in identity.targets]
    return [_own_replies(identity, t)] + [Grant("write", w) for w in writes]


def _operator(identity: Identity, t: Topics) -> list[Grant]:
    return [
        Grant("read", subtree(t.results(_PLACEHOLDER, _PLACEHOLDER), levels=2)),
        Grant("read", subtree(t.rejects(_PLACEHOLDER))),
        _own_replies(identity, t),
        Grant("write", subtree(t.tasks_all())),
        Grant("write", subtree(t.control(_PLACEHOLDER))),
    ]


def _dashboard(t: Topics) -> list[Grant]:
    """What agents publish, and nothing else: never a tasks or control topic (PROTOCOL 1)."""
    return [
        Grant("read", subtree(t.results(_PLACEHOLDER, _PLACEHOLDER), levels=2)),
        Grant("read", subtree(t.events(_PLACEHOLDER, _PLACEHOLDER), levels=2)),
        Grant("read", subtree(t.heartbeat(_PLACEHOLDER))),
        Grant("read", subtree(t.presence(_PLACEHOLDER))),
        Grant("read", subtree(t.rejects(_PLACEHOLDER))),
    ]


def _gateway(identity: Identity, t: Topics) -> list[Grant]:
    """The fleet's HTTP face (edge-gateway): it watches the fleet like a dashboard, reads its own
    replies, and submits and steers like an operator."""
    return [
        *_dashboard(t),
        _own_replies(identity, t),
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
        return _operator(identity, topics)
    if identity.kind == "gateway":
        return _gateway(identity, topics)
    return _dashboard(topics)


def reads(grants: list[Grant]) -> list[str]:
    return [g.topic for g in grants if g.access == "read"]


def writes(grants: list[Grant]) -> list[str]:
    return [g.topic for g in grants if g.access == "write"]
