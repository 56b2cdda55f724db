"""Mosquitto 2.0 files: `dynamic-security.json` and a `mosquitto.conf` with a TLS and a plain listener.

Logins and the ACL are Mosquitto's dynamic security plugin's (dynsec.py): unlike the acl_file,
which approves every SUBSCRIBE, it refuses a subscription outside the grants -- a `$share` join
without a grant naming its group included -- with SUBACK 0x80 (0x87 on MQTT 5). Neither
`password_file` nor `acl_file` is set: Mosquitto asks each security callback in turn and the
first that does not defer decides, and dynsec says "no grant" by deferring, so an acl_file
behind it would approve every SUBSCRIBE outside the grants (`src/security.c`,
`mosquitto_acl_check`).
Mosquitto 2.0 reads the plugin's file only at start-up (`kill -HUP` does not re-read it): a
revocation or rotation takes a restart (provisioning/README.md).
The configuration uses absolute paths (Mosquitto resolves relative ones against its working
directory): those of `--install-dir`, by default the output directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from agent.common.fileio import PRIVATE, PUBLIC
from agent.common.timespec import format_time
from agent.protocol.topics import Topics
from provisioning import dynsec

from .acl import grants_for
from .brokerfiles import (
    MOSQUITTO_MAX_CONNECTIONS,
    MOSQUITTO_SESSION_EXPIRY,
    BrokerOptions,
    OutFile,
    tls_files,
)
from .fleet import Fleet
from .records import Identity


def logins(identities: Iterable[Identity], topics: Topics) -> list[dynsec.Login]:
    """Every identity that may log in (revoked ones are left out), with its grants."""
    return [
        dynsec.Login(i.name, i.password_hash, tuple(grants_for(i, topics)), i.kind)
        for i in identities
        if not i.revoked
    ]


def plugin_path(
    options: BrokerOptions, find: Callable[[], Path | None] = dynsec.find_plugin
) -> tuple[Path, str | None]:
    """The plugin's path on the broker: `--plugin-path`, else where this machine has it (`find`),
    else Debian's, with a note saying so (provisioning often runs on another machine)."""
    if options.plugin_path is not None:
        return options.plugin_path, None
    found = find()
    if found is not None:
        return found, None
    return dynsec.DEBIAN_PLUGIN, (
        f"Mosquitto's {dynsec.PLUGIN_FILE} is not on this machine; mosquitto.conf names"
        f" {dynsec.DEBIAN_PLUGIN} (Debian's): pass --plugin-path with its path on the broker if it differs"
    )


def conf_text(fleet: Fleet, options: BrokerOptions, plugin: Path) -> str:
    where = options.where
    return f"""\
# Mosquitto 2.0 configuration of fleet {fleet.config.name!r}, written by
# `edge-provision broker-files` at {format_time(time.time())}. Run: mosquitto -c {where}/mosquitto.conf

# Started as root, Mosquitto becomes this user before it reads server.key and
# {dynsec.CONFIG_FILE} (0600).
user {options.run_as}
per_listener_settings false
allow_anonymous false
# Logins and ACL: the dynamic security plugin, which checks every SUBSCRIBE ($share joins
# included). No password_file or acl_file: dynsec defers what it does not grant, and an
# acl_file would then approve every SUBSCRIBE. Mosquitto reads {dynsec.CONFIG_FILE} at
# start-up only (kill -HUP does not): restart it after broker-files.
{dynsec.conf_lines(plugin, where / dynsec.CONFIG_FILE)}
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


def files(
    fleet: Fleet, identities: list[Identity], options: BrokerOptions
) -> tuple[list[OutFile], list[str]]:
    """The files, and notes for the user (a plugin path guessed)."""
    plugin, note = plugin_path(options)
    security = dynsec.document_text(logins(identities, fleet.topics))
    written = [
        OutFile(dynsec.CONFIG_FILE, security, PRIVATE),
        OutFile("mosquitto.conf", conf_text(fleet, options, plugin), PUBLIC),
        *tls_files(fleet),
    ]
    return written, [note] if note else []
