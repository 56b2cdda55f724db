"""A real 3-node NATS cluster run from the files `edge-provision broker-files --format nats` writes,
and the ACL matrix of PROTOCOL 1 against it (every identity kind, allowed and refused).

One cluster for the module, on free loopback ports. Each identity connects with its bundle's
credentials over TLS (its client certificate and its password) to one node while a test superuser
(added to users.conf by the test) watches or publishes on another, so every check also crosses the
cluster's routes:
* publishes to every probe topic: the superuser sees exactly the allowed ones;
* subscribes to every probe topic (and `edge/#`, `#`, a `$share` form, a `$MQTT` subject): the
  SUBACK refuses (0x80) every filter outside the grants, and exactly the readable topics arrive.
The table below is PROTOCOL 1 written out by hand, as in test_mosquitto.py; task ids with a dot
probe NATS's `//` for a `.` inside a level (nats.nats_subject).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning import nats
from provisioning import operations as ops
from provisioning.cli import main
from provisioning.errors import InputError
from provisioning.fleet import FleetConfig, open_fleet
from tests.support.nats import NatsCluster, nats_cluster

from .mqtt_probe import Probe, TlsFiles

pytestmark = pytest.mark.nats

ADMIN = "test-admin"
IDENTITIES = [
    ["add", "agent", "node-1"],
    ["add", "agent", "node-2"],
    ["add", "agent", "node-3"],
    ["add", "device", "dev-any"],
    ["add", "device", "dev-t", "--targets", "node-1,all"],
    ["add", "device", "dev-mac", "--alg", "hmac-sha256", "--targets", "all"],
    ["add", "device", "gone"],
    ["add", "operator", "op"],
    ["add", "dashboard", "dash"],
    ["add", "gateway", "gw"],
]
TASKS = {"edge/tasks/node-1", "edge/tasks/node-2", "edge/tasks/node-3", "edge/tasks/all", "edge/tasks/x/y"}
CONTROL = {"edge/control/node-1", "edge/control/node-2"}
REPLIES = {"edge/replies/dev-any/t1", "edge/replies/dev-t/t1", "edge/replies/op/t1", "edge/replies/gw/t.1"}
REFUSED = 0x80


def agent_writes(node: str) -> set[str]:
    return {
        f"edge/results/{node}/t1",
        f"edge/results/{node}/t.2",
        f"edge/events/{node}/t1",
        f"edge/heartbeat/{node}",
        f"edge/presence/{node}",
        f"edge/rejects/{node}",
    }


# `edge/tasks` and `edge/results/node-1` are the level above a `.../#` grant: MQTT's `a/#` matches
# `a` itself (NATS needs a subject of its own for it).
LEVEL_UP = {"edge/tasks", "edge/control", "edge/results/node-1", "edge/replies/op"}
EDGE_TOPICS = TASKS | CONTROL | REPLIES | agent_writes("node-1") | agent_writes("node-2") | LEVEL_UP
PROBE_TOPICS = sorted(EDGE_TOPICS | {"other/edge/tasks/node-1", "edgeward/x", "edge.tasks.node-1"})
DASHBOARD_READS = agent_writes("node-1") | agent_writes("node-2") | {"edge/results/node-1"}
WRITES: dict[str, set[str]] = {
    "node-1": agent_writes("node-1") | REPLIES | {"edge/results/node-1", "edge/replies/op"},
    "node-2": agent_writes("node-2") | REPLIES | {"edge/replies/op"},
    "dev-any": TASKS | {"edge/tasks"},
    "dev-t": {"edge/tasks/node-1", "edge/tasks/all"},
    "dev-mac": {"edge/tasks/all"},
    "op": TASKS | CONTROL | {"edge/tasks", "edge/control"},
    "gw": TASKS | CONTROL | {"edge/tasks", "edge/control"},
    "dash": set(),
}
READS: dict[str, set[str]] = {
    "node-1": {"edge/tasks/node-1", "edge/tasks/all", "edge/control/node-1"},
    "node-2": {"edge/tasks/node-2", "edge/tasks/all", "edge/control/node-2"},
    "dev-any": {"edge/replies/dev-any/t1"},
    "dev-t": {"edge/replies/dev-t/t1"},
    "dev-mac": set(),
    "op": {
        "edge/results/node-1/t1",
        "edge/results/node-1/t.2",
        "edge/results/node-2/t1",
        "edge/results/node-2/t.2",
        "edge/results/node-1",
        "edge/rejects/node-1",
        "edge/rejects/node-2",
        "edge/replies/op/t1",
        "edge/replies/op",
    },
    "gw": DASHBOARD_READS | {"edge/replies/gw/t.1"},
    "dash": DASHBOARD_READS,  # never tasks, control or replies
}
ROLES = sorted(WRITES)


def edge_provision(*args: str | Path) -> None:
    assert main([str(a) for a in args]) == 0, args


@dataclass
class Fleet:
    tmp: Path
    fleet: Path
    cluster: NatsCluster
    admin_password: str

    def bundle(self, name: str) -> Path:
        return self.tmp / "bundles" / name

    def password(self, name: str) -> str:
        return (self.bundle(name) / "broker.password").read_text().strip()

    def tls(self, name: str, *, cert: bool = True) -> TlsFiles:
        b = self.bundle(name)
        return TlsFiles(b / "ca.crt", b / "tls.crt", b / "tls.key") if cert else TlsFiles(b / "ca.crt")

    def probe(self, name: str, node: int = 1, *, password: str | None = None, cert: bool = True) -> Probe:
        password = self.password(name) if password is None else password
        port = self.cluster.node(node).tls_port
        return Probe(name, port, password=password, tls=self.tls(name, cert=cert))

    def admin(self, node: int = 2) -> Probe:
        probe = Probe(
            ADMIN, self.cluster.node(node).tls_port, password=self.admin_password, tls=self.tls("op")
        )
        assert probe.connect() is None
        return probe


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("nats")
    root = tmp / "fleet"
    edge_provision("init", root, "--name", "natsfleet")
    for args in IDENTITIES:
        edge_provision(*args, "--fleet", root)
    edge_provision("revoke", "gone", "--fleet", root)
    admin_password = "admin-" + os.urandom(8).hex()
    with nats_cluster(root, tmp / "files", superuser=(ADMIN, admin_password)) as cluster:
        f = Fleet(tmp, root, cluster, admin_password)
        for args in IDENTITIES[:-4] + IDENTITIES[-3:]:
            edge_provision("bundle", args[2], "--out", f.bundle(args[2]), "--fleet", root)
        yield f


def tagged(messages: set[tuple[str, bytes]], tag: bytes) -> set[str]:
    return {topic for topic, payload in messages if payload.startswith(tag)}


@pytest.mark.parametrize("name", ROLES)
def test_publish_reaches_readers_only_on_allowed_topics(fleet: Fleet, name: str) -> None:
    tag = f"{name}/{time.monotonic_ns()}/".encode()
    with fleet.admin() as observer, fleet.probe(name) as client:
        assert observer.subscribe(["#"]) == [1]
        assert client.connect() is None
        for topic in PROBE_TOPICS:
            client.publish(topic, tag + topic.encode())  # a refused publish is still acknowledged
        wanted = {(t, tag + t.encode()) for t in WRITES[name]}
        assert tagged(observer.received(wanted), tag) == WRITES[name]


@pytest.mark.parametrize("name", ROLES)
def test_subscriptions_deliver_only_allowed_topics(fleet: Fleet, name: str) -> None:
    tag = f"{name}/{time.monotonic_ns()}/".encode()
    with fleet.admin() as publisher, fleet.probe(name, node=3) as client:
        assert client.connect() is None
        filters = [*PROBE_TOPICS, "edge/#", "#", "$share/g/edge/tasks/node-1", "$MQTT/sub/x"]
        codes = client.subscribe(filters)
        assert dict(zip(filters, codes, strict=True)) == {
            f: 1 if f in READS[name] else REFUSED for f in filters
        }
        for topic in PROBE_TOPICS:
            publisher.publish(topic, tag + topic.encode())
        wanted = {(t, tag + t.encode()) for t in READS[name]}
        assert tagged(client.received(wanted), tag) == READS[name]


def test_a_subtree_grant_covers_its_filter_and_the_level_above(fleet: Fleet) -> None:
    """`edge/results/#` (a dashboard's grant) is granted as a filter: NATS subscribes to
    `edge.results.>` and `edge.results` for it, and both must be within the permissions."""
    with fleet.probe("dash", node=2) as dash:
        assert dash.connect() is None
        assert dash.subscribe(["edge/results/#", "edge/presence/+", "edge/tasks/#"]) == [1, 1, REFUSED]


def test_wrong_password_is_refused(fleet: Fleet) -> None:
    with fleet.probe("node-1", password="not-" + fleet.password("node-1")) as client:
        assert client.connect() is not None


def test_tls_without_a_client_certificate_is_refused(fleet: Fleet) -> None:
    with fleet.probe("node-1", cert=False) as client:
        assert client.connect() is not None


def test_an_identity_revoked_before_the_files_were_written_is_refused(fleet: Fleet) -> None:
    password = (fleet.fleet / "identities" / "gone" / "broker-1.password").read_text().strip()
    with Probe("gone", fleet.cluster.node(1).tls_port, password=password, tls=fleet.tls("op")) as client:
        assert client.connect() is not None


def test_another_fleets_certificate_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    other = ops.init_fleet(tmp_path / "other", FleetConfig(name="other"))
    ops.add_identities(other, ops.AddRequest(kind="agent", names=["node-1"]), time.time())
    identity = other.identity_dir("node-1")
    tls = TlsFiles(fleet.bundle("node-1") / "ca.crt", identity / "tls-1.crt", identity / "tls-1.key")
    with Probe("node-1", fleet.cluster.node(1).tls_port, password=fleet.password("node-1"), tls=tls) as c:
        assert c.connect() is not None


def test_mqtt_5_is_refused_and_3_1_1_accepted(fleet: Fleet) -> None:
    """NATS speaks MQTT 3.1.1 only: bundles of a NATS fleet say so (no probe at every start)."""
    port = fleet.cluster.node(1).tls_port
    with Probe("node-1", port, password=fleet.password("node-1"), tls=fleet.tls("node-1"), mqtt5=True) as c:
        assert c.connect() is not None
    agent_toml = (fleet.bundle("node-1") / "agent.toml").read_text()
    assert 'protocol = "3.1.1"' in agent_toml
    assert all(f'"{server}"' in agent_toml for server in fleet.cluster.servers)


@pytest.mark.parametrize(("name", "admitted"), [("dash", True), ("node-1", False), ("op", False)])
def test_only_dashboards_may_use_the_websocket_listener(fleet: Fleet, name: str, admitted: bool) -> None:
    """Browsers have no client certificate, so the WebSocket listener asks for none: only dashboards
    (`MQTT_WS` in their allowed connection types) may log in there."""
    port = fleet.cluster.node(1).ws_port
    with Probe(
        name, port, password=fleet.password(name), tls=TlsFiles(fleet.bundle(name) / "ca.crt"), websocket=True
    ) as c:
        assert (c.connect() is None) == admitted
        if admitted:
            assert c.subscribe(["edge/presence/+", "edge/tasks/node-1"]) == [1, REFUSED]


def _nats_protocol_login(port: int, user: str, password: str) -> bytes:
    """CONNECT with the NATS protocol on the node's client port; what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.recv(4096)  # INFO
        connect = {"user": user, "pass": password, "verbose": False, "pedantic": False}
        sock.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        time.sleep(0.3)
        return sock.recv(4096)


@pytest.mark.parametrize("name", ["node-1", "op", "dash"])
def test_no_identity_may_use_the_nats_protocol(fleet: Fleet, name: str) -> None:
    """Every user may connect over MQTT only: the NATS protocol would put JetStream's API subjects
    within reach of whatever its permissions allow."""
    port = fleet.cluster.node(1).client_port
    assert b"Authorization Violation" in _nats_protocol_login(port, name, fleet.password(name))


def test_a_fleet_certificate_does_not_make_a_route(fleet: Fleet) -> None:
    """Every identity's certificate chains to the fleet CA, which the routes verify: a device must
    still not join the cluster. The route login (user `route`) refuses it."""
    ctx = ssl.create_default_context(cafile=str(fleet.bundle("dev-any") / "ca.crt"))
    ctx.load_cert_chain(fleet.bundle("dev-any") / "tls.crt", fleet.bundle("dev-any") / "tls.key")
    ctx.check_hostname = False
    port = fleet.cluster.node(1).cluster_port
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with ctx.wrap_socket(raw) as sock:  # routes start with TLS, then INFO
        assert sock.recv(4096).startswith(b"INFO ")
        connect = {  # the cluster's name is no secret: without a route login this would join
            "user": "dev-any",
            "pass": fleet.password("dev-any"),
            "name": "intruder",
            "cluster": "edge-natsfleet",
        }
        sock.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        time.sleep(0.5)
        answer = sock.recv(4096)
    assert b"Authorization Violation" in answer


def test_pools_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    edge_provision("init", root)
    edge_provision("add", "agent", "n1", "--pool", "cams", "--fleet", root)
    edge_provision("add", "device", "d1", "--targets", "pool:cams", "--fleet", root)
    edge_provision("add", "operator", "op.1", "--fleet", root)
    with pytest.raises(
        InputError, match=r"d1 \(targets pool:cams\); agent n1 \(pools cams\); operator op.1 \(a '.' in"
    ):
        ops.nats_broker_files(
            open_fleet(root),
            nats.ClusterOptions(nats.plan_nodes(3, None, "127.0.0.1", _ports())),
            tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()
    assert open_fleet(root).config.broker == "mqtt"


def _ports(step: int = 1) -> dict[str, str]:
    return {
        kind: ",".join(str(10000 + 100 * k + i * step) for i in range(3))
        for k, kind in enumerate(nats.PORT_KINDS)
    }


def test_a_nats_fleet_refuses_new_pools(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    edge_provision("init", root)
    ops.nats_broker_files(
        open_fleet(root),
        nats.ClusterOptions(nats.plan_nodes(3, None, "127.0.0.1", _ports())),
        tmp_path / "out",
    )
    fleet = open_fleet(root)
    with pytest.raises(InputError, match="no shared subscriptions"):
        ops.add_identities(fleet, ops.AddRequest(kind="agent", names=["n1"], pools=["cams"]), time.time())
    with pytest.raises(InputError, match="no shared subscriptions"):
        ops.add_identities(
            fleet, ops.AddRequest(kind="device", names=["d1"], targets=["pool:cams"]), time.time()
        )
