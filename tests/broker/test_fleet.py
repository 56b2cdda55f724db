"""A fleet made by `edge-provision`: identities, ACL matrix, TLS, revocation, WebSocket.

The matrix and the authentication tests run against the embedded broker (from
`broker-files --format amqtt`) and against Mosquitto (from `--format mosquitto`): the same
identities must be able to do exactly the same things on both. The matrix follows PROTOCOL 1's
least privilege: dashboards read only what agents publish, issuers read their own replies, and
a shared subscription needs a grant naming its group; both brokers refuse a subscription outside
the grants with SUBACK 0x80 (Mosquitto through its dynamic security plugin). Where Mosquitto
2.0.11 cannot express a rule (a retained task), the test says what it does instead.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.brokers import KINDS, RunningBroker
from tests.support.fleet import Fleet, edge_provision, fleet_broker, provision
from tests.support.mqtt import ConnectRefused, TestClient

IDENTITIES = [
    ["agent", "node-1", "--pool", "cameras"],
    ["agent", "node-2"],
    ["device", "sensor-1", "--targets", "node-1"],
    ["device", "sensor-any"],
    ["operator", "op-1"],
    ["dashboard", "dash-1"],
    ["gateway", "gw-1"],
    ["device", "old-device"],
]
REVOKED = ["old-device"]
SUBACK_FAILURE = 0x80
POOL = "$share/cameras/edge/tasks/pool/cameras"

# (identity, topic, may publish)
PUBLISH = [
    ("node-1", "edge/results/node-1/t1", True),
    ("node-1", "edge/events/node-1/t1", True),
    ("node-1", "edge/heartbeat/node-1", True),
    ("node-1", "edge/presence/node-1", True),
    ("node-1", "edge/rejects/node-1", True),
    ("node-1", "edge/results/node-2/t1", False),
    ("node-1", "edge/heartbeat/node-2", False),
    ("node-1", "edge/tasks/node-2", False),
    ("node-1", "edge/control/node-1", False),
    ("sensor-1", "edge/tasks/node-1", True),
    ("sensor-1", "edge/tasks/node-2", False),
    ("sensor-1", "edge/tasks/all", False),
    ("sensor-1", "edge/control/node-1", False),
    ("sensor-any", "edge/tasks/node-2", True),
    ("sensor-any", "edge/tasks/all", True),
    ("sensor-any", "edge/tasks/pool/cameras", True),
    ("sensor-any", "edge/control/node-2", False),
    ("sensor-any", "edge/results/node-1/t1", False),
    ("op-1", "edge/tasks/node-1", True),
    ("op-1", "edge/control/node-1", True),
    ("op-1", "edge/results/node-1/t1", False),
    ("op-1", "edge/presence/node-1", False),
    ("dash-1", "edge/tasks/node-1", False),
    ("dash-1", "edge/presence/node-1", False),
    ("dash-1", "edge/results/node-1/t1", False),
    ("node-1", "edge/replies/sensor-1/t1", True),
    ("sensor-1", "edge/replies/sensor-1/t1", False),
    ("op-1", "edge/replies/sensor-1/t1", False),
    # a gateway: tasks and control like an operator, nothing agents publish
    ("gw-1", "edge/tasks/node-1", True),
    ("gw-1", "edge/tasks/pool/cameras", True),
    ("gw-1", "edge/control/node-2", True),
    ("gw-1", "edge/results/node-1/t1", False),
    ("gw-1", "edge/heartbeat/node-1", False),
    ("gw-1", "edge/presence/node-1", False),
    ("gw-1", "edge/replies/gw-1/t1", False),
]

# (publisher, topic, a reader): retained publishes on tasks and control topics, and presence
RETAINED = [
    ("sensor-any", "edge/tasks/node-2", "node-2"),
    ("sensor-any", "edge/tasks/all", "node-1"),
    ("sensor-any", "edge/tasks/pool/cameras", "node-1"),
    ("op-1", "edge/control/node-1", "node-1"),
    ("node-1", "edge/presence/node-1", "dash-1"),
]

# Connections that together may read every topic of PUBLISH (nobody may read them all).
OBSERVERS = {
    "dash-1": ["edge/results/#", "edge/events/#", "edge/heartbeat/#", "edge/presence/#", "edge/rejects/#"],
    "node-1": ["edge/tasks/node-1", "edge/tasks/all", "edge/control/node-1", "edge/tasks/pool/cameras"],
    "node-2": ["edge/tasks/node-2", "edge/control/node-2"],
    "sensor-1": ["edge/replies/sensor-1/#"],
    "gw-1": ["edge/replies/gw-1/#"],
}

# (identity, filter, who publishes the probe, probe topic, may subscribe and receive)
SUBSCRIBE = [
    ("node-1", "edge/tasks/node-1", "op-1", "edge/tasks/node-1", True),
    ("node-1", "edge/tasks/all", "op-1", "edge/tasks/all", True),
    ("node-1", "edge/control/node-1", "op-1", "edge/control/node-1", True),
    ("node-1", "edge/tasks/pool/cameras", "op-1", "edge/tasks/pool/cameras", True),
    ("node-1", POOL, "op-1", "edge/tasks/pool/cameras", True),
    # a `$share` join by every other role: none holds a grant naming the group
    ("node-2", POOL, "op-1", "edge/tasks/pool/cameras", False),
    ("sensor-1", POOL, "op-1", "edge/tasks/pool/cameras", False),
    ("sensor-any", POOL, "op-1", "edge/tasks/pool/cameras", False),
    ("op-1", POOL, "sensor-any", "edge/tasks/pool/cameras", False),
    ("dash-1", POOL, "op-1", "edge/tasks/pool/cameras", False),
    ("dash-1", "$share/dash/edge/tasks/pool/cameras", "op-1", "edge/tasks/pool/cameras", False),
    ("dash-1", "$share/dash/edge/#", "op-1", "edge/tasks/node-1", False),
    ("node-1", "edge/tasks/node-2", "op-1", "edge/tasks/node-2", False),
    ("node-1", "edge/control/node-2", "op-1", "edge/control/node-2", False),
    ("node-1", "edge/results/#", "node-2", "edge/results/node-2/t1", False),
    ("node-2", "edge/tasks/pool/cameras", "op-1", "edge/tasks/pool/cameras", False),
    ("sensor-1", "edge/tasks/node-1", "op-1", "edge/tasks/node-1", False),
    ("sensor-any", "edge/#", "node-1", "edge/presence/node-1", False),
    ("op-1", "edge/results/#", "node-1", "edge/results/node-1/t2", True),
    ("op-1", "edge/rejects/+", "node-1", "edge/rejects/node-1", True),
    ("op-1", "edge/tasks/node-1", "sensor-1", "edge/tasks/node-1", False),
    ("op-1", "edge/heartbeat/node-1", "node-1", "edge/heartbeat/node-1", False),
    # dashboards: what agents publish, never a tasks or control topic
    ("dash-1", "edge/results/node-1/+", "node-1", "edge/results/node-1/t3", True),
    ("dash-1", "edge/events/#", "node-1", "edge/events/node-1/t1", True),
    ("dash-1", "edge/heartbeat/+", "node-1", "edge/heartbeat/node-1", True),
    ("dash-1", "edge/presence/node-1", "node-1", "edge/presence/node-1", True),
    ("dash-1", "edge/rejects/#", "node-1", "edge/rejects/node-1", True),
    ("dash-1", "edge/tasks/node-1", "op-1", "edge/tasks/node-1", False),
    ("dash-1", "edge/tasks/#", "sensor-any", "edge/tasks/all", False),
    ("dash-1", "edge/control/node-1", "op-1", "edge/control/node-1", False),
    ("dash-1", "edge/#", "op-1", "edge/control/node-2", False),
    ("dash-1", "#", "op-1", "edge/tasks/pool/cameras", False),
    # replies: each issuer its own
    ("sensor-1", "edge/replies/sensor-1/+", "node-1", "edge/replies/sensor-1/t1", True),
    ("sensor-any", "edge/replies/sensor-1/#", "node-1", "edge/replies/sensor-1/t2", False),
    ("op-1", "edge/replies/op-1/#", "node-1", "edge/replies/op-1/t1", True),
    ("dash-1", "edge/replies/#", "node-1", "edge/replies/op-1/t2", False),
    # a gateway reads what a dashboard reads and its own replies; never tasks, control or a pool
    ("gw-1", "edge/results/#", "node-1", "edge/results/node-1/t4", True),
    ("gw-1", "edge/events/+/+", "node-1", "edge/events/node-1/t2", True),
    ("gw-1", "edge/heartbeat/+", "node-1", "edge/heartbeat/node-1", True),
    ("gw-1", "edge/presence/#", "node-1", "edge/presence/node-1", True),
    ("gw-1", "edge/rejects/node-1", "node-1", "edge/rejects/node-1", True),
    ("gw-1", "edge/replies/gw-1/#", "node-1", "edge/replies/gw-1/t1", True),
    ("gw-1", "edge/replies/op-1/#", "node-1", "edge/replies/op-1/t3", False),
    ("gw-1", "edge/tasks/node-1", "op-1", "edge/tasks/node-1", False),
    ("gw-1", "edge/control/#", "op-1", "edge/control/node-1", False),
    ("gw-1", POOL, "op-1", "edge/tasks/pool/cameras", False),
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return provision(tmp_path_factory.mktemp("fleet"), IDENTITIES, revoked=REVOKED)


@pytest.fixture(params=KINDS)
def fleet_mqtt(request: pytest.FixtureRequest, fleet: Fleet) -> Iterator[RunningBroker]:
    with fleet_broker(request.param, fleet) as running:
        yield running


class Clients:
    """Connected clients of one test, closed after it."""

    def __init__(self, running: RunningBroker, fleet: Fleet) -> None:
        self.running = running
        self.fleet = fleet
        self.made: list[TestClient] = []

    def tcp(
        self, name: str, password: str | None = None, client_id: str | None = None, clean: bool = True
    ) -> TestClient:
        password = self.fleet.password(name) if password is None else password
        return self._connect(
            TestClient(self.running.port, client_id or name, username=name, password=password, clean=clean)
        )

    def tls(
        self,
        name: str | None,
        cert: str | None,
        password: str | None = None,
        client_id: str | None = None,
        clean: bool = True,
    ) -> TestClient:
        context = self.fleet.tls(cert)
        client = TestClient(
            self.running.tls_port or 0,
            client_id or name or "anonymous-tls",
            username=name,
            password=password,
            tls=context,
            clean=clean,
        )
        return self._connect(client)

    def _connect(self, client: TestClient) -> TestClient:
        self.made.append(client)
        client.connect()
        return client

    def close(self) -> None:
        for client in self.made:
            client.close()


@pytest.fixture
def clients(fleet_mqtt: RunningBroker, fleet: Fleet) -> Iterator[Clients]:
    made = Clients(fleet_mqtt, fleet)
    yield made
    made.close()


def _drain(client: TestClient) -> list[str]:
    topics = []
    while not client.messages.empty():
        topics.append(client.messages.get_nowait().topic)
    return topics


def _observers(clients: Clients) -> list[TestClient]:
    made = []
    for name, filters in OBSERVERS.items():
        observer = clients.tcp(name, client_id=f"{name}-observer")
        assert observer.subscribe_many([(f, 1) for f in filters]) == [1] * len(filters), name
        made.append(observer)
    return made


def test_identity_and_acl_matrix(fleet_mqtt: RunningBroker, clients: Clients) -> None:
    observers = _observers(clients)
    connected = {name: clients.tcp(name) for name in {case[0] for case in PUBLISH + SUBSCRIBE} | {"op-1"}}
    wrong = []
    for name, topic, allowed in PUBLISH:
        connected[name].publish(topic, b"probe", qos=1)
        seen = set()
        for observer in observers:
            observer.sync()
            seen.update(_drain(observer))
        if (topic in seen) != allowed:
            wrong.append(f"{name} publish {topic}: expected {'allowed' if allowed else 'refused'}")
    for name, topic_filter, publisher, probe, allowed in SUBSCRIBE:
        subscriber = clients.tcp(name, client_id=f"{name}-sub-{len(clients.made)}")
        code = subscriber.subscribe(topic_filter, 1)
        if (code != SUBACK_FAILURE) != allowed:
            wrong.append(f"{name} subscribe {topic_filter}: SUBACK {code}")
        connected[publisher].publish(probe, b"probe", qos=1)
        subscriber.sync()
        if (probe in _drain(subscriber)) != allowed:
            wrong.append(
                f"{name} receive {probe} through {topic_filter}: expected {'yes' if allowed else 'no'}"
            )
        subscriber.disconnect()
    assert wrong == []


def test_no_other_role_can_join_a_pool_and_take_its_tasks(
    fleet_mqtt: RunningBroker, clients: Clients
) -> None:
    """Every role but the pool's agents tries to join the pool's group while tasks flow: each
    join is refused (SUBACK 0x80) and the member gets every task, on both brokers.

    Before dynamic-security.json, Mosquitto 2.0.11's acl_file never checked a SUBSCRIBE
    (security_default.c: `FIXME - implement ACL subscription strings`): every outsider joined
    the group and took its turn in the round robin, the read check dropped that turn, and 10 of
    these 12 tasks were lost although their publisher had its PUBACK."""
    member = clients.tcp("node-1", client_id="member")
    assert member.subscribe(POOL, 1) == 1
    outsiders = [
        clients.tcp(name, client_id=f"{name}-joins")
        for name in ("node-2", "sensor-1", "sensor-any", "op-1", "dash-1")
    ]
    codes = [outsider.subscribe(POOL, 1) for outsider in outsiders]
    publisher = clients.tcp("op-1", client_id="op-1-publisher")
    for i in range(12):
        publisher.publish("edge/tasks/pool/cameras", b"task-%d" % i, qos=1)
    for client in [member, *outsiders]:
        client.sync()
    assert [_drain(outsider) for outsider in outsiders] == [[]] * len(outsiders), "no outsider reads a task"
    assert codes == [SUBACK_FAILURE] * len(outsiders)
    assert len(_drain(member)) == 12, "the pool gets every task"


def test_retained_publishes_on_tasks_and_control_topics(fleet_mqtt: RunningBroker, clients: Clients) -> None:
    """PROTOCOL 1: tasks and control topics are never retained. The embedded broker refuses a
    retained publish there (acknowledged, dropped, counted in `refused_publish`). Mosquitto 2.0.11
    cannot refuse one (its acl_file ignores the retain flag): it keeps the task and delivers it
    at every later subscribe, which the agent's replay cache absorbs
    (tests/agent/test_retained_tasks.py). Presence stays retained on both."""
    publishers = {name: clients.tcp(name, client_id=f"{name}-retains") for name, _, _ in RETAINED}
    running = fleet_mqtt.embedded
    refused_before = running.stats()["refused_publish"] if running is not None else 0
    try:
        for name, topic, _ in RETAINED:
            publishers[name].publish(topic, b"retained", qos=1, retain=True)
        refused = running.stats()["refused_publish"] - refused_before if running is not None else 0
        kept = set()
        for _, topic, reader in RETAINED:
            later = clients.tcp(reader, client_id=f"{reader}-later-{len(clients.made)}")
            assert later.subscribe(topic, 1) == 1
            later.sync()
            while not later.messages.empty():
                message = later.messages.get_nowait()
                if message.retain:
                    kept.add(message.topic)
            later.disconnect()
    finally:
        for name, topic, _ in RETAINED:  # Mosquitto keeps them in its data directory
            publishers[name].publish(topic, b"", qos=1, retain=True)
    if fleet_mqtt.kind == "embedded":
        assert (kept, refused) == ({"edge/presence/node-1"}, 4)
    else:
        assert kept == {topic for _, topic, _ in RETAINED}, "Mosquitto keeps retained tasks"


def test_wrong_password_unknown_user_and_revoked_identity_are_refused(fleet: Fleet, clients: Clients) -> None:
    for name, password in (
        ("node-1", "not-the-password"),
        ("nobody", "x"),
        ("old-device", fleet.password("old-device")),
    ):
        with pytest.raises(ConnectRefused):
            clients.tcp(name, password=password)


def test_tls_with_a_client_certificate_and_password(fleet: Fleet, clients: Clients) -> None:
    node = clients.tls("node-1", cert="node-1", password=fleet.password("node-1"))
    assert node.subscribe("edge/tasks/node-1", 1) == 1
    clients.tcp("op-1").publish("edge/tasks/node-1", b"over tls", qos=1)
    assert node.expect(1)[0].payload == b"over tls"


def test_tls_with_a_client_certificate_but_without_the_password_is_refused(
    fleet: Fleet, clients: Clients
) -> None:
    """Two factors on both brokers: the certificate proves membership of the fleet, the password
    the identity. Neither the certificate alone nor the certificate with its name is enough."""
    with pytest.raises(ConnectRefused):
        clients.tls(None, cert="node-1")  # no username, no password
    with pytest.raises(ConnectRefused):
        clients.tls("node-1", cert="node-1")  # its name, no password
    clients.tls("node-1", cert="node-1", password=fleet.password("node-1"), client_id="node-1-both")


def test_tls_without_a_client_certificate_is_refused(fleet: Fleet, clients: Clients) -> None:
    with pytest.raises((ssl.SSLError, OSError, ConnectRefused, TimeoutError)):
        clients.tls("node-1", cert=None, password=fleet.password("node-1"))


def test_tls_with_a_revoked_identity_certificate_is_refused(fleet: Fleet, clients: Clients) -> None:
    with pytest.raises((ConnectRefused, ssl.SSLError, OSError)):
        clients.tls("old-device", cert="old-device", password=fleet.password("old-device"))


# --- the embedded broker only ---------------------------------------------------------------


@pytest.fixture
def embedded_fleet(fleet: Fleet) -> Iterator[Clients]:
    settings = {"listeners.ws.enabled": True, "listeners.ws.port": 0}
    with fleet_broker("embedded", fleet, **settings) as running:
        made = Clients(running, fleet)
        yield made
        made.close()


def test_the_certificate_names_the_identity(fleet: Fleet, embedded_fleet: Clients) -> None:
    node = embedded_fleet.tls("node-1", cert="node-1", password=fleet.password("node-1"))
    assert node.subscribe("edge/tasks/node-1", 1) == 1
    assert node.subscribe("edge/tasks/node-2", 1) == SUBACK_FAILURE  # with node-1's ACL
    with pytest.raises(ConnectRefused):
        embedded_fleet.tls("node-2", cert="node-1", password=fleet.password("node-2"))  # CN != username
    with pytest.raises(ConnectRefused):
        embedded_fleet.tls("node-1", cert="node-1", password="wrong")


def test_without_a_password_file_the_certificate_alone_admits(fleet: Fleet) -> None:
    """A mutual-TLS-only broker (no `auth.password_file`): the certificate is the credential and
    its CN the identity, whose grants come from acl.toml."""
    with fleet_broker("embedded", fleet, **{"auth.password_file": ""}) as running:
        made = Clients(running, fleet)
        try:
            node = made.tls(None, cert="node-1", client_id="node-1")  # no username, no password
            assert node.subscribe("edge/tasks/node-1", 1) == 1
            assert node.subscribe("edge/tasks/node-2", 1) == SUBACK_FAILURE  # with node-1's ACL
        finally:
            made.close()


def test_nobody_can_take_an_agents_node_id_before_it_first_connects(
    fleet: Fleet, embedded_fleet: Clients
) -> None:
    """FIX-CLIENT-ID: a device that connects with an agent's node id as its client id (with a
    persistent session, over TCP or with its own certificate) is refused with CONNACK 2, and the
    agent then connects as ever. Before the fix the device's session bound the id to the device
    and the agent was refused for ever."""
    with pytest.raises(ConnectRefused) as over_tcp:
        embedded_fleet.tcp("sensor-1", client_id="node-1", clean=False)
    with pytest.raises(ConnectRefused) as over_tls:
        password = fleet.password("sensor-1")
        embedded_fleet.tls("sensor-1", cert="sensor-1", password=password, client_id="node-1", clean=False)
    rejected = "Client identifier not valid"  # paho's name of CONNACK 2 (identifier rejected)
    assert (str(over_tcp.value.reason), str(over_tls.value.reason)) == (rejected, rejected)
    agent = embedded_fleet.tcp("node-1", clean=False)  # client id node-1
    assert agent.subscribe("edge/tasks/node-1", 1) == 1


def test_websocket_listener_is_plain_even_with_tls_enabled(fleet: Fleet, embedded_fleet: Clients) -> None:
    assert embedded_fleet.running.embedded is not None
    ws_port = embedded_fleet.running.embedded.ws_port
    dash = TestClient(
        ws_port, "dash-ws", username="dash-1", password=fleet.password("dash-1"), transport="websockets"
    )
    embedded_fleet.made.append(dash)
    dash.connect()
    assert dash.subscribe("edge/presence/+", 1) == 1
    embedded_fleet.tcp("node-1").publish("edge/presence/node-1", b"online", qos=1, retain=True)
    [message] = dash.expect(1)
    assert (message.topic, message.payload) == ("edge/presence/node-1", b"online")


def test_reload_after_revocation_disconnects_and_refuses(tmp_path: Path) -> None:
    small = provision(tmp_path, [["agent", "node-9"], ["agent", "node-8"]], name="small")
    with fleet_broker("embedded", small) as running:
        made = Clients(running, small)
        try:
            doomed, survivor = made.tcp("node-9"), made.tcp("node-8")
            password = small.password("node-9")
            edge_provision("--fleet", small.root, "revoke", "node-9")
            ports = ("--tcp-port", str(small.tcp_port), "--tls-port", str(small.tls_port))
            edge_provision(
                "--fleet", small.root, "broker-files", "--format", "amqtt", "--out", small.amqtt_files, *ports
            )
            assert running.embedded is not None
            assert running.embedded.reload() == 1  # what SIGHUP does
            assert doomed.disconnected.wait(15)
            with pytest.raises(ConnectRefused):
                made.tcp("node-9", password=password, client_id="node-9-again")
            survivor.sync()  # everyone else carries on
        finally:
            made.close()


def test_secure_websocket_for_a_browser_dashboard(fleet: Fleet) -> None:
    """wss: the broker's certificate, no client certificate, the dashboard's password."""
    files = fleet.amqtt_files
    settings = {
        "listeners.ws.enabled": True,
        "listeners.ws.port": 0,
        "listeners.ws.certfile": str(files / "server.crt"),
        "listeners.ws.keyfile": str(files / "server.key"),
        "listeners.ws.require_certificate": False,
    }
    with fleet_broker("embedded", fleet, **settings) as running:
        assert running.embedded is not None
        dash = TestClient(
            running.embedded.ws_port,
            "dash-wss",
            username="dash-1",
            password=fleet.password("dash-1"),
            transport="websockets",
            tls=fleet.tls(None),
        )
        try:
            dash.connect()
            assert dash.subscribe("edge/heartbeat/+", 1) == 1
        finally:
            dash.close()
