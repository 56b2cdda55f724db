"""A real Mosquitto run from the files `edge-provision broker-files` writes, and every role against it.

One broker for the module (listener ports rewritten to free ones). Each role connects with its
bundle's credentials over TLS (with its client certificate) and over plain TCP, then:
* publishes to every probe topic: a test superuser subscribed to `#` sees exactly the allowed ones;
* subscribes to every probe topic (and to `edge/#` and `#`): it receives exactly what it may read
  when the superuser publishes everywhere.
Mosquitto 2.0.11's acl_file does not check subscriptions (`FIXME - implement ACL subscription
strings` in its source): every SUBACK grants the QoS asked for, `$share/...` joins included, and
the read check happens on delivery. The tests assert exactly that, and what it costs a pool.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning import operations as ops
from provisioning.cli import main
from provisioning.fleet import FleetConfig
from provisioning.passwords import hash_password
from tests.support.services import free_port, run_mosquitto

from .mqtt_probe import Probe, TlsFiles

pytestmark = pytest.mark.mosquitto

ADMIN = "test-admin"  # added by the test, not by provisioning: reads and writes everything
IDENTITIES = [
    ["add", "agent", "node-1", "--pool", "cams"],
    ["add", "agent", "node-2", "--pool", "cams"],
    ["add", "agent", "node-3"],
    ["add", "device", "dev-any"],
    ["add", "device", "dev-t", "--targets", "node-1,pool:cams"],
    ["add", "device", "dev-mac", "--alg", "hmac-sha256", "--targets", "all"],
    ["add", "device", "dev-r"],
    ["add", "device", "gone"],
    ["add", "operator", "op"],
    ["add", "dashboard", "dash"],
]

TASKS = {
    "edge/tasks/node-1",
    "edge/tasks/node-2",
    "edge/tasks/node-3",
    "edge/tasks/all",
    "edge/tasks/pool/cams",
    "edge/tasks/pool/gpu",
}
CONTROL = {"edge/control/node-1", "edge/control/node-2"}


REPLIES = {"edge/replies/dev-any/t1", "edge/replies/dev-t/t1", "edge/replies/op/t1"}
SHARED_POOL = "$share/cams/edge/tasks/pool/cams"


def agent_writes(node: str) -> set[str]:
    """What agent `node` publishes (PROTOCOL 1), replies aside."""
    return {
        f"edge/results/{node}/t1",
        f"edge/events/{node}/t1",
        f"edge/heartbeat/{node}",
        f"edge/presence/{node}",
        f"edge/rejects/{node}",
    }


EDGE_TOPICS = TASKS | CONTROL | REPLIES | agent_writes("node-1") | agent_writes("node-2")
PROBE_TOPICS = sorted(EDGE_TOPICS | {"other/edge/tasks/node-1", "edgeward/x"})

# PROTOCOL 1, written out: what each identity may publish and receive among PROBE_TOPICS.
WRITES: dict[str, set[str]] = {
    "node-1": agent_writes("node-1") | REPLIES,
    "node-2": agent_writes("node-2") | REPLIES,
    "dev-any": TASKS,
    "dev-t": {"edge/tasks/node-1", "edge/tasks/pool/cams"},
    "dev-mac": {"edge/tasks/all"},
    "op": TASKS | CONTROL,
    "dash": set(),
}
READS: dict[str, set[str]] = {
    "node-1": {"edge/tasks/node-1", "edge/tasks/all", "edge/control/node-1", "edge/tasks/pool/cams"},
    "node-2": {"edge/tasks/node-2", "edge/tasks/all", "edge/control/node-2", "edge/tasks/pool/cams"},
    "dev-any": {"edge/replies/dev-any/t1"},
    "dev-t": {"edge/replies/dev-t/t1"},
    "dev-mac": set(),
    "op": {
        "edge/results/node-1/t1",
        "edge/results/node-2/t1",
        "edge/rejects/node-1",
        "edge/rejects/node-2",
        "edge/replies/op/t1",
    },
    "dash": agent_writes("node-1") | agent_writes("node-2"),  # never tasks, control or replies
}


def edge_provision(*args: str | Path) -> None:
    assert main([str(a) for a in args]) == 0, args


@dataclass
class Broker:
    tmp: Path
    fleet: Path
    files: Path
    tls_port: int
    tcp_port: int
    admin_password: str
    pid: int = 0

    def bundle(self, name: str) -> Path:
        return self.tmp / "bundles" / name

    def password(self, name: str) -> str:
        return (self.bundle(name) / "broker.password").read_text().strip()

    def probe(self, name: str, transport: str, *, password: str | None = None, cert: bool = True) -> Probe:
        password = self.password(name) if password is None else password
        if transport == "tcp":
            return Probe(name, self.tcp_port, password=password)
        b = self.bundle(name)
        tls = TlsFiles(b / "ca.crt", b / "tls.crt", b / "tls.key") if cert else TlsFiles(b / "ca.crt")
        return Probe(name, self.tls_port, password=password, tls=tls)

    def admin(self) -> Probe:
        probe = Probe(ADMIN, self.tcp_port, password=self.admin_password)
        assert probe.connect() is None
        return probe

    def write_broker_files(self) -> None:
        """`broker-files`, plus the test's superuser."""
        edge_provision("broker-files", "--out", self.files, "--fleet", self.fleet)
        with (self.files / "passwd").open("a") as f:
            f.write(f"{ADMIN}:{hash_password(self.admin_password)}\n")
        with (self.files / "acl").open("a") as f:
            f.write(f"\nuser {ADMIN}\ntopic readwrite #\n")

    def config(self) -> str:
        text = (self.files / "mosquitto.conf").read_text()
        assert text.count("listener 8883 127.0.0.1\n") == 1 and text.count("listener 1883 127.0.0.1\n") == 1
        text = text.replace("listener 8883 127.0.0.1\n", f"listener {self.tls_port} 127.0.0.1\n")
        return text.replace("listener 1883 127.0.0.1\n", f"listener {self.tcp_port} 127.0.0.1\n")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("mosquitto")
    b = Broker(
        tmp, tmp / "fleet", tmp / "broker-files", free_port(), free_port(), "admin-" + os.urandom(8).hex()
    )
    edge_provision("init", b.fleet)
    for args in IDENTITIES:
        edge_provision(*args, "--fleet", b.fleet)
    for args in IDENTITIES:
        edge_provision("bundle", args[2], "--out", b.bundle(args[2]), "--fleet", b.fleet)
    edge_provision("revoke", "gone", "--fleet", b.fleet)
    b.write_broker_files()
    workdir = tmp / "run"
    workdir.mkdir()
    with run_mosquitto(b.config(), workdir, [b.tls_port, b.tcp_port]) as proc:
        b.pid = proc.pid
        yield b


def tagged(messages: set[tuple[str, bytes]], tag: bytes) -> set[str]:
    return {topic for topic, payload in messages if payload.startswith(tag)}


ROLES = sorted(WRITES)


@pytest.mark.parametrize("transport", ["tls", "tcp"])
@pytest.mark.parametrize("name", ROLES)
def test_publish_reaches_readers_only_on_allowed_topics(broker: Broker, name: str, transport: str) -> None:
    tag = f"{name}/{transport}/{time.monotonic_ns()}/".encode()
    with broker.admin() as observer, broker.probe(name, transport) as client:
        assert observer.subscribe(["#"]) == [1]
        assert client.connect() is None
        for topic in PROBE_TOPICS:
            client.publish(topic, tag + topic.encode())  # a refused publish is still acknowledged
        wanted = {(t, tag + t.encode()) for t in WRITES[name]}
        assert tagged(observer.received(wanted), tag) == WRITES[name]


@pytest.mark.parametrize("transport", ["tls", "tcp"])
@pytest.mark.parametrize("name", ROLES)
def test_subscriptions_deliver_only_allowed_topics(broker: Broker, name: str, transport: str) -> None:
    tag = f"{name}/{transport}/{time.monotonic_ns()}/".encode()
    with broker.admin() as publisher, broker.probe(name, transport) as client:
        assert client.connect() is None
        filters = [*PROBE_TOPICS, "edge/#", "#", SHARED_POOL, f"$share/{name}/edge/#"]
        codes = client.subscribe(filters)
        assert codes == [1] * len(filters), "Mosquitto 2.0.11 grants every subscription"
        for topic in PROBE_TOPICS:
            publisher.publish(topic, tag + topic.encode())
        wanted = {(t, tag + t.encode()) for t in READS[name]}
        assert tagged(client.received(wanted), tag) == READS[name]


def test_pool_agents_share_pool_tasks(broker: Broker) -> None:
    shared = "$share/cams/edge/tasks/pool/cams"
    with (
        broker.probe("node-1", "tls") as a,
        broker.probe("node-2", "tls") as b,
        broker.probe("dev-t", "tls") as dev,
    ):
        for client in (a, b, dev):
            assert client.connect() is None
        assert a.subscribe([shared]) == [1] and b.subscribe([shared]) == [1]
        sent = {("edge/tasks/pool/cams", f"task-{i}".encode()) for i in range(10)}
        for _, payload in sorted(sent):
            dev.publish("edge/tasks/pool/cams", payload)
        got_a = a.received(set(), settle=0.3)
        got_b = b.received(set(), settle=0.1)
    assert got_a | got_b == sent, "every pool task reaches the pool"
    assert not got_a & got_b, "and exactly one agent of it"
    assert got_a and got_b, "the broker spreads them"


@pytest.mark.parametrize("outsider_name", ["node-3", "dev-any", "op", "dash"])
def test_an_outsider_in_a_share_group_receives_nothing_but_costs_deliveries(
    broker: Broker, outsider_name: str
) -> None:
    """A known Mosquitto 2.0.11 limit (README, security model): any identity joins any group,
    reads nothing it may not read, and its turn's messages are dropped."""
    with broker.probe("node-1", "tcp") as member, broker.probe(outsider_name, "tcp") as outsider:
        with broker.probe("op", "tcp") as op:
            for client in (member, outsider, op):
                assert client.connect() is None
            assert member.subscribe([SHARED_POOL]) == [1] and outsider.subscribe([SHARED_POOL]) == [1]
            for i in range(10):
                op.publish("edge/tasks/pool/cams", f"t{i}".encode())
        got_member = member.received(set(), settle=0.3)
        assert outsider.received(set(), settle=0.05) == set()
    assert len(got_member) == 5, "every other task went to the outsider's turn and was dropped"


@pytest.mark.parametrize("transport", ["tls", "tcp"])
def test_wrong_password_is_refused(broker: Broker, transport: str) -> None:
    with broker.probe("node-1", transport, password="not-" + broker.password("node-1")) as client:
        assert client.connect() is not None


def test_tls_without_a_client_certificate_is_refused(broker: Broker) -> None:
    with broker.probe("node-1", "tls", cert=False) as client:
        assert client.connect() is not None


def test_tls_with_another_fleets_certificate_is_refused(broker: Broker, tmp_path: Path) -> None:
    other = ops.init_fleet(tmp_path / "other", FleetConfig(name="other"))
    ops.add_identities(other, ops.AddRequest(kind="agent", names=["node-1"]), time.time())
    identity = other.identity_dir("node-1")
    tls = TlsFiles(broker.bundle("node-1") / "ca.crt", identity / "tls-1.crt", identity / "tls-1.key")
    with Probe("node-1", broker.tls_port, password=broker.password("node-1"), tls=tls) as client:
        assert client.connect() is not None


@pytest.mark.parametrize("transport", ["tls", "tcp"])
def test_an_identity_revoked_before_the_files_were_written_is_refused(broker: Broker, transport: str) -> None:
    with broker.probe("gone", transport) as client:
        assert client.connect() is not None


def test_revoking_and_regenerating_the_files_locks_an_identity_out(broker: Broker) -> None:
    for transport in ("tls", "tcp"):
        with broker.probe("dev-r", transport) as client:
            assert client.connect() is None
    edge_provision("revoke", "dev-r", "--fleet", broker.fleet)
    broker.write_broker_files()
    os.kill(broker.pid, signal.SIGHUP)  # Mosquitto re-reads its password and ACL files
    deadline = time.monotonic() + 5
    while True:
        with broker.probe("dev-r", "tcp") as client:
            refused = client.connect()
        if refused is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert refused is not None, "still admitted 5 s after the reload"
    with broker.probe("dev-r", "tls") as client:
        assert client.connect() is not None
    with broker.probe("dev-any", "tls") as client:
        assert client.connect() is None, "the others still log in"


@pytest.mark.parametrize("alg", ["ed25519", "rsa-2048"])
def test_other_ca_algorithms_work_with_mosquitto(tmp_path: Path, alg: str) -> None:
    """The default (ECDSA P-256) is exercised above; the two other CA algorithms get one TLS login each."""
    b = Broker(tmp_path, tmp_path / "fleet", tmp_path / "files", free_port(), free_port(), "admin-pw")
    edge_provision("init", b.fleet, "--ca-alg", alg)
    edge_provision("add", "agent", "node-1", "--fleet", b.fleet)
    edge_provision("bundle", "node-1", "--out", b.bundle("node-1"), "--fleet", b.fleet)
    b.write_broker_files()
    (tmp_path / "run").mkdir()
    with run_mosquitto(b.config(), tmp_path / "run", [b.tls_port, b.tcp_port]):
        with b.probe("node-1", "tls") as client:
            assert client.connect() is None
        with b.probe("node-1", "tls", cert=False) as client:
            assert client.connect() is not None
