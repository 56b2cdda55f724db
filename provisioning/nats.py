"""`broker-files --format nats --cluster N`: a NATS cluster (JetStream and its MQTT listener) for the fleet.

One directory per node (`nats-1/`, `nats-2/`, ...), each complete for its machine:

    nats.conf     the node: server_name, JetStream (store dir, limits), cluster routes (mutual TLS
                  with the fleet CA and a route login), the MQTT listener (TLS, client certificates
                  verified), MQTT over WebSocket (TLS; dashboards only), monitoring on loopback
    users.conf    0600: one user per identity that is not revoked: bcrypt of its broker password,
                  its grants (acl.py) as NATS subjects, and the connection types it may use
    ca.crt, server.crt, server.key (0600)   the node's certificate: its host, serverAuth + clientAuth
    jetstream/    0700: the store (sessions, retained messages, queued QoS 1 messages)

What NATS changes (measured with nats-server 2.15; QoS 2 needs 2.10 or later):
* MQTT 3.1.1 only: an MQTT 5 CONNECT is refused. Bundles of a NATS fleet say `protocol = "3.1.1"`.
* No shared subscriptions, so no pools: `files` refuses a fleet with pool agents or pool targets.
* A client id must be a NATS name (no `.`): an identity named with a dot is refused too (its
  client id is its name, or starts with it).
* Topics are subjects: `/` is `.`, `+` is `*`, `#` is `>`, a `.` inside a level is `//`
  (`nats_subject`, the server's own `mqttToNATSSubjectConversion`). An MQTT filter `a/#` also
  matches `a` itself, and the server subscribes to both `a.>` and `a`, checking each against the
  user's permissions: a grant `a/#` is therefore both subjects, or every such SUBSCRIBE would fail.
* Subjects under `$MQTT.` are the server's own: since 2.14 it lets an MQTT client use only its
  own `$MQTT.sub.` and `$MQTT.deliver.pubrel.` inboxes without a grant (`canSubscribeInternal`),
  and refuses MQTT filters under `$MQTT.` outright, so no grant here names them.
* Every user may connect over MQTT only (`allowed_connection_types`): not with the NATS protocol,
  where subjects under `$JS.` would be within reach. The WebSocket listener cannot ask browsers
  for client certificates, so only dashboards may use it (`MQTT_WS`).
* Routes: mutual TLS with the fleet CA, which every identity's certificate also chains to, so
  routes need a login too: user `route`, a password derived from the CA key (stable across runs,
  so nodes restarted one at a time with new files still join each other).
* Replicas: `mqtt.stream_replicas` = min(N, 3): sessions, retained messages and queued QoS 1
  messages survive the loss of a node (of one node in three).
Passwords are bcrypt with cost 4: they are 192-bit random tokens, so stretching buys nothing
and would slow every login (the same reasoning as the `$7$` hashes' 101 iterations).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.common.endpoints import format_endpoint as endpoint
from agent.common.fileio import PRIVATE, PUBLIC
from agent.common.timespec import format_time
from agent.protocol.topics import Topics

from . import material
from .acl import Grant, grants_for
from .brokerfiles import OutFile
from .ca import Authority, cert_pem, generate_key, key_pem
from .errors import InputError
from .fleet import Fleet, check_host, check_port
from .identities import parse_target
from .records import Identity

NODE_PREFIX = "nats-"
MAX_REPLICAS = 3
ROUTE_USER = "route"
BCRYPT_COST = 4
#: NATS refuses a message above max_payload (default 1 MB): a task or result of 1 MiB (the agent's
#: default limit) plus its MQTT framing must fit. 8 MB is the largest NATS recommends.
MAX_PAYLOAD = "8MB"
MAX_MEMORY_STORE = "256MB"
MAX_FILE_STORE = "16GB"
#: A QoS 1 message delivered but not acknowledged is sent again after this long (NATS: 30 s).
ACK_WAIT = "10s"
USERS_FILE = "users.conf"
CONF_FILE = "nats.conf"
STORE_DIR = "jetstream"
PORT_KINDS = ("tls", "cluster", "ws", "client", "http")
DEFAULT_PORTS = {"cluster": 6222, "ws": 8443, "client": 4222, "http": 8222}


@dataclass(frozen=True)
class NatsNode:
    """One node: where clients and the other nodes reach it, and its ports."""

    index: int  # 1-based
    host: str
    tls_port: int  # MQTT over TLS: every client
    cluster_port: int  # routes between the nodes
    ws_port: int  # MQTT over WebSocket (TLS): dashboards
    client_port: int  # the NATS protocol, loopback only: no fleet identity may use it
    http_port: int  # monitoring (/healthz), loopback only

    @property
    def name(self) -> str:
        return f"{NODE_PREFIX}{self.index}"

    @property
    def endpoint(self) -> str:
        return endpoint(self.host, self.tls_port)

    def ports(self) -> dict[str, int]:
        return {kind: getattr(self, f"{kind}_port") for kind in PORT_KINDS}


@dataclass(frozen=True)
class ClusterOptions:
    nodes: tuple[NatsNode, ...]
    bind: str = "0.0.0.0"
    install_dir: Path | None = None  # a node's directory on its machine (default: out/nats-K)

    @property
    def replicas(self) -> int:
        return min(len(self.nodes), MAX_REPLICAS)


def _per_node(text: str, count: int, what: str) -> list[int]:
    values = [check_port(_int(v, what), what) for v in text.split(",") if v.strip()]
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise InputError(f"{what} gives {len(values)} ports for {count} nodes: give one, or one per node")
    return values


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{what} {text!r} is not a port number") from None


def plan_nodes(
    count: int, hosts: str | None, default_host: str, ports: dict[str, str]
) -> tuple[NatsNode, ...]:
    """The nodes from the command line: `hosts` (comma separated, one per node, default: the
    fleet's broker host for each) and per kind of port one value or one per node."""
    if not 1 <= count <= 32:
        raise InputError(f"--cluster {count}: a NATS cluster has 1 to 32 nodes (3 is usual)")
    names = [h.strip() for h in (hosts or "").split(",") if h.strip()] or [default_host]
    if len(names) == 1:
        names *= count
    if len(names) != count:
        raise InputError(f"--hosts gives {len(names)} hosts for {count} nodes")
    for host in names:
        check_host(host)
    per_kind = {kind: _per_node(ports[kind], count, f"--{kind}-port") for kind in PORT_KINDS}
    nodes = tuple(
        NatsNode(i + 1, names[i], **{f"{kind}_port": per_kind[kind][i] for kind in PORT_KINDS})
        for i in range(count)
    )
    _check_distinct(nodes)
    return nodes


def _check_distinct(nodes: Sequence[NatsNode]) -> None:
    taken: dict[tuple[str, int], str] = {}
    for node in nodes:
        for kind, port in node.ports().items():
            what = f"{node.name}'s {kind} port"
            other = taken.setdefault((node.host, port), what)
            if other != what:
                raise InputError(
                    f"{other} and {what} are both {node.host}:{port}: give each node its own host"
                    f" (--hosts) or its own ports (--{kind}-port P1,P2,...)"
                )


# --- subjects and permissions ----------------------------------------------------------------


def nats_subject(topic: str) -> str:
    """The NATS subject of an MQTT topic or filter, as nats-server converts it
    (`mqttToNATSSubjectConversion`): levels joined by `.`, `+` -> `*`, `#` -> `>`, a `.` in a
    level -> `//`, an empty level kept as `/` next to a `.`."""
    out = ""
    last = len(topic) - 1
    for i, ch in enumerate(topic):
        if ch == "/":
            if i == 0 or out.endswith("."):
                out += "/."
            elif i == last or topic[i + 1] == "/":
                out += "./"
            else:
                out += "."
        elif ch == ".":
            out += "//"
        elif ch == "+":
            out += "*"
        elif ch == "#":
            out += ">"
        else:
            out += ch
    return out + "/" if out.endswith(".") else out


def grant_subjects(filter_: str) -> list[str]:
    """The subjects one MQTT filter covers in NATS: `a/#` is `a.>` and `a` (see the docstring)."""
    subject = nats_subject(filter_)
    if filter_ == "#" or not filter_.endswith("/#"):
        return [subject]
    return [subject, nats_subject(filter_[: -len("/#")])]


def _allow(filters: Iterable[str]) -> dict[str, list[str]]:
    subjects = [s for f in filters for s in grant_subjects(f)]
    return {"allow": subjects} if subjects else {"deny": [">"]}


def permissions(grants: Iterable[Grant]) -> dict[str, dict[str, list[str]]]:
    """NATS permissions equal to `grants` (shared-subscription grants have no NATS form: pools are
    refused before this is called)."""
    grants = [g for g in grants if not g.shared]
    return {
        "publish": _allow(g.topic for g in grants if g.access == "write"),
        "subscribe": _allow(g.topic for g in grants if g.access == "read"),
    }


def connection_types(identity: Identity) -> list[str]:
    """MQTT only; a dashboard also MQTT over WebSocket (a browser: no client certificate)."""
    return ["MQTT", "MQTT_WS"] if identity.kind == "dashboard" else ["MQTT"]


def conflict(kind: str, name: str, pools: Iterable[str], targets: Iterable[str] | None) -> str | None:
    """What NATS cannot do for this identity ("agent n1 (pools cams)"), or None."""
    why = []
    if "." in name:
        why.append("a '.' in the name: NATS refuses it in an MQTT client id, made of the name")
    pools = list(pools)
    if kind == "agent" and pools:
        why.append(f"pools {', '.join(pools)}")
    pool_targets = [t for t in targets or () if parse_target(t).pool is not None]
    if pool_targets:
        why.append(f"targets {', '.join(pool_targets)}")
    return f"{kind} {name} ({'; '.join(why)})" if why else None


def refuse_conflicts(conflicts: Iterable[str | None]) -> None:
    """Refused before anything is written, naming who is in the way. NATS has no shared
    subscriptions (nats-server#6859), so a pool would give every task to every member or to none;
    and an MQTT client id must be a valid NATS name (`isValidName`: no `.`, `*`, `>`, spaces)."""
    named = [c for c in conflicts if c is not None]
    if named:
        raise InputError(
            "a NATS cluster has no shared subscriptions (no pools) and no '.' in client ids: "
            + "; ".join(named)
            + ". Re-add them without pools under another name, or stay on Mosquitto / edge-broker"
        )


def identity_conflicts(identities: Iterable[Identity]) -> list[str | None]:
    return [conflict(i.kind, i.name, i.pools, i.targets) for i in identities if not i.revoked]


def _hash(password: str) -> str:
    import bcrypt  # the `nats` extra: only this format needs it

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()


def users_text(fleet: Fleet, identities: Iterable[Identity], topics: Topics) -> str:
    """users.conf: `users = [...]`, one entry per identity that may log in."""
    entries = []
    for identity in identities:
        if identity.revoked:
            continue
        entry = {
            "user": identity.name,
            "password": _hash(material.password(fleet, identity)),
            "permissions": permissions(grants_for(identity, topics)),
            "allowed_connection_types": connection_types(identity),
        }
        entries.append(f"  # {identity.kind}\n  " + json.dumps(entry))
    header = "# Written by `edge-provision broker-files --format nats`; included by nats.conf.\n"
    return header + "users = [\n" + ",\n".join(entries) + "\n]\n"


def route_password(fleet: Fleet) -> str:
    """The routes' password: derived from the CA key, so every run of broker-files gives the same
    one (a node restarted with new files still joins the others) and nobody without the CA has it."""
    secret = fleet.ca_key_path.read_bytes()
    return hmac.new(secret, f"nats-route:{fleet.config.name}".encode(), hashlib.sha256).hexdigest()


def _q(value: str) -> str:
    return json.dumps(value)


def _tls(where: Path, *, verify: bool) -> str:
    lines = [
        f"    cert_file: {_q(str(where / 'server.crt'))}",
        f"    key_file: {_q(str(where / 'server.key'))}",
        f"    ca_file: {_q(str(where / 'ca.crt'))}",
        '    min_version: "1.2"',
        "    timeout: 5",
    ]
    if verify:
        lines.append("    verify: true")
    return "  tls {\n" + "\n".join(lines) + "\n  }"


def conf_text(fleet: Fleet, node: NatsNode, options: ClusterOptions, where: Path) -> str:
    password = route_password(fleet)
    routes = [
        f"nats-route://{ROUTE_USER}:{password}@{endpoint(other.host, other.cluster_port)}"
        for other in options.nodes
        if other.index != node.index
    ]
    route_lines = "".join(f"    {_q(r)}\n" for r in routes)
    return f"""\
# NATS node {node.name} of fleet {fleet.config.name!r} ({len(options.nodes)} nodes), written by
# `edge-provision broker-files --format nats` at {format_time(time.time())}.
# Run: nats-server -c {where / CONF_FILE}    (0600: it holds the routes' password)
server_name: {_q(node.name)}
# The NATS protocol: no fleet identity may use it (users.conf allows MQTT only); loopback.
listen: {_q(endpoint("127.0.0.1", node.client_port))}
http: {_q(endpoint("127.0.0.1", node.http_port))}
max_payload: {MAX_PAYLOAD}

jetstream {{
  store_dir: {_q(str(where / STORE_DIR))}
  max_memory_store: {MAX_MEMORY_STORE}
  max_file_store: {MAX_FILE_STORE}
}}

cluster {{
  name: {_q(f"edge-{fleet.config.name}")}
  listen: {_q(endpoint(options.bind, node.cluster_port))}
  authorization {{
    user: {_q(ROUTE_USER)}
    password: {_q(password)}
    timeout: 5
  }}
{_tls(where, verify=True)}
  routes: [
{route_lines}  ]
}}

# MQTT 3.1.1 for every identity: a certificate of the fleet CA *and* the identity's password.
mqtt {{
  listen: {_q(endpoint(options.bind, node.tls_port))}
{_tls(where, verify=True)}
  # Sessions, retained messages and queued QoS 1 messages on {options.replicas} nodes.
  stream_replicas: {options.replicas}
  ack_wait: {_q(ACK_WAIT)}
}}

# MQTT over WebSocket (path /mqtt) for dashboards: TLS, password only (browsers have no client
# certificate); users.conf lets only dashboards use it.
websocket {{
  listen: {_q(endpoint(options.bind, node.ws_port))}
{_tls(where, verify=False)}
}}

authorization {{
  timeout: 5
  include {_q(USERS_FILE)}
}}
"""


def node_files(
    fleet: Fleet, node: NatsNode, options: ClusterOptions, users: str, authority: Authority, where: Path
) -> list[OutFile]:
    import datetime as dt

    key = generate_key(fleet.config.ca_alg)
    now = dt.datetime.now(tz=dt.timezone.utc)
    cert = authority.issue_server(node.host, key, now, fleet.config.cert_days, also_client=True)
    return [
        OutFile(CONF_FILE, conf_text(fleet, node, options, where), PRIVATE),
        OutFile(USERS_FILE, users, PRIVATE),
        OutFile("ca.crt", fleet.ca_cert_path.read_bytes(), PUBLIC),
        OutFile("server.crt", cert_pem(cert), PUBLIC),
        OutFile("server.key", key_pem(key), PRIVATE),
    ]


def files(
    fleet: Fleet, identities: list[Identity], options: ClusterOptions, out: Path
) -> dict[str, list[OutFile]]:
    """Each node's files by its directory name (refuses pools first)."""
    refuse_conflicts(identity_conflicts(identities))
    users = users_text(fleet, identities, fleet.topics)
    authority = material.load_authority(fleet)
    return {
        node.name: node_files(
            fleet, node, options, users, authority, (options.install_dir or (out / node.name)).absolute()
        )
        for node in options.nodes
    }
