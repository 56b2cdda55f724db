"""Mosquitto 2.0 files: `passwd`, `acl` and a `mosquitto.conf` with a TLS and a plain listener.

Mosquitto 2.0.11's acl_file checks nothing when a client subscribes (every SUBACK grants the
requested QoS); it checks `read` on each message it delivers and `write` on each message it
receives. So a filter outside an identity's grants is accepted but never delivers anything.
The configuration uses absolute paths (Mosquitto resolves relative ones against its working
directory): those of `--install-dir`, by default the output directory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from agent.fileio import PRIVATE, PUBLIC
from agent.protocol.topics import Topics

from .acl import grants_for
from .brokerfiles import (
    MOSQUITTO_MAX_CONNECTIONS,
    MOSQUITTO_SESSION_EXPIRY,
    BrokerOptions,
    OutFile,
    passwd_text,
    tls_files,
)
from .fleet import Fleet
from .records import Identity
from .timespec import format_time


def acl_text(identities: Iterable[Identity], topics: Topics, fleet_name: str) -> str:
    lines = [
        f"# Mosquitto ACL of fleet {fleet_name!r}, written by `edge-provision broker-files`.",
        "# Each identity may use exactly its topics of PROTOCOL 1 (provisioning/acl.py);",
        "# revoked identities are absent, and a user without lines may do nothing.",
    ]
    for identity in identities:
        if identity.revoked:
            continue
        lines += ["", f"# {identity.kind}", f"user {identity.name}"]
        lines += [f"topic {g.access} {g.topic}" for g in grants_for(identity, topics)]
    return "\n".join(lines) + "\n"


def conf_text(fleet: Fleet, options: BrokerOptions) -> str:
    where = options.where
    return f"""\
# Mosquitto 2.0 configuration of fleet {fleet.config.name!r}, written by
# `edge-provision broker-files` at {format_time(time.time())}. Run: mosquitto -c {where}/mosquitto.conf

# Started as root, Mosquitto becomes this user before it reads passwd and server.key (0600).
user {options.run_as}
per_listener_settings false
allow_anonymous false
password_file {where}/passwd
acl_file {where}/acl
# QoS 1 round trips drop from ~44 ms (Nagle) to ~1 ms.
set_tcp_nodelay true
persistence true
persistence_location {where}/data/
# The QoS 1 backlog kept per client (Mosquitto's default, 1000, silently drops the rest):
# an offline agent keeps as many tasks as its own queue may hold.
max_queued_messages {options.max_queued}
# ... and at most this many bytes of payload per client (0, Mosquitto's default, is no bound).
max_queued_bytes {options.max_queued_bytes}
# A persistent session whose client stays away this long is removed. Mosquitto applies one
# expiry to every client, agents included (edge-broker keeps agents' sessions): long enough
# that an agent's backlog is long dead (a task lives 24 h at most by default).
persistent_client_expiration {MOSQUITTO_SESSION_EXPIRY}

# TLS: a client needs a certificate of the fleet CA *and* its password. At most this many
# clients (Mosquitto counts per listener; raise the service's open-file limit to match).
listener {options.tls_port} {options.bind}
max_connections {MOSQUITTO_MAX_CONNECTIONS}
cafile {where}/ca.crt
certfile {where}/server.crt
keyfile {where}/server.key
require_certificate true
tls_version tlsv1.2

# Plain MQTT, loopback only: tools and tests on the broker machine.
listener {options.tcp_port} 127.0.0.1
max_connections {MOSQUITTO_MAX_CONNECTIONS}
"""


def files(fleet: Fleet, identities: list[Identity], options: BrokerOptions) -> list[OutFile]:
    return [
        OutFile("passwd", passwd_text(identities), PRIVATE),
        OutFile("acl", acl_text(identities, fleet.topics, fleet.config.name), PUBLIC),
        OutFile("mosquitto.conf", conf_text(fleet, options), PUBLIC),
        *tls_files(fleet),
    ]
