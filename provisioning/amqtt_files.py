"""Files for our embedded broker (`edge-broker`, amqtt-based): `passwd`, `acl.toml`, `broker.toml`.

`passwd` has the same `$7$` lines as Mosquitto's. `acl.toml` lists, per user, its `role` and the
topic filters it may `publish` to and `subscribe` to (a subscription must lie inside one of them,
a delivered message must match one; `$share/...` forms are listed as such). `broker.toml` holds
the listeners, auth, limits, protocol (the fleet's topic prefix) and persistence settings in the
shape `edge-broker` reads (broker/config.py), paths relative to itself. Both are described in
provisioning/README.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.common import tomlio
from agent.common.fileio import PRIVATE, PUBLIC
from agent.protocol.topics import Topics

from .acl import grants_for, reads, writes
from .brokerfiles import (
    AGENT_SESSION_EXPIRY_S,
    MAX_CONNECTIONS,
    SESSION_EXPIRY_S,
    BrokerOptions,
    OutFile,
    passwd_text,
    tls_files,
)
from .fleet import Fleet
from .records import Identity

FORMAT_VERSION = 1


def acl_document(identities: Iterable[Identity], topics: Topics) -> dict[str, Any]:
    users: dict[str, Any] = {}
    for identity in identities:
        if identity.revoked:
            continue
        grants = grants_for(identity, topics)
        users[identity.name] = {"role": identity.kind, "publish": writes(grants), "subscribe": reads(grants)}
    return {"format": FORMAT_VERSION, "users": users}


def broker_document(options: BrokerOptions, topics: Topics) -> dict[str, Any]:
    """The settings `edge-broker` reads from `broker.toml` (broker/config.py: `BrokerSettings`);
    the fleet's prefix tells it which tasks and control topics must never be retained."""
    return {
        "listeners": {
            "tcp": {"enabled": True, "host": "127.0.0.1", "port": options.tcp_port},
            "tls": {
                "enabled": True,
                "host": options.bind,
                "port": options.tls_port,
                "cafile": "ca.crt",
                "certfile": "server.crt",
                "keyfile": "server.key",
                "require_certificate": True,
            },
        },
        "auth": {"allow_anonymous": False, "password_file": "passwd", "acl_file": "acl.toml"},
        "limits": {
            "max_queued_messages": options.max_queued,
            "max_queued_bytes": options.max_queued_bytes,
            "session_expiry_s": SESSION_EXPIRY_S,
            "agent_session_expiry_s": AGENT_SESSION_EXPIRY_S,
            "max_connections": MAX_CONNECTIONS,
        },
        "protocol": {"prefix": topics.prefix},
        "persistence": {"data_dir": "data"},
    }


def files(
    fleet: Fleet, identities: list[Identity], options: BrokerOptions
) -> tuple[list[OutFile], list[str]]:
    """The files (and no notes: the same signature as mosquitto.files)."""
    header = "# Written by `edge-provision broker-files --format amqtt`; see provisioning/README.md.\n"
    return [
        OutFile("passwd", passwd_text(identities), PRIVATE),
        OutFile("acl.toml", header + tomlio.dumps(acl_document(identities, fleet.topics)), PUBLIC),
        OutFile("broker.toml", header + tomlio.dumps(broker_document(options, fleet.topics)), PUBLIC),
        *tls_files(fleet),
    ], []
