"""A real Mosquitto run from the files `edge-provision broker-files` writes, and every role against it.

One broker for the module (listener ports rewritten to free ones). Each role connects with its
bundle's credentials over TLS (with its client certificate) and over plain TCP, then:
* publishes to every probe topic: a test superuser subscribed to `#` sees exactly the allowed ones;
* subscribes to every probe topic (and to `edge/#`, `#` and `$share` forms): the SUBACK refuses
  (0x80) every filter outside its grants, and it receives exactly what it may read when the
  superuser publishes everywhere.
Logins and ACL are Mosquitto's dynamic security plugin's (`dynamic-security.json`): unlike the
acl_file, it checks every SUBSCRIBE, so a `$share` join without a grant naming the group is
refused and the pool keeps every task. Mosquitto 2.0.11 reads that file at start-up only: a
revocation takes a restart, which the last tests show (and that `kill -HUP` is not enough).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning import dynsec
from provisioning import operations as ops
from provisioning.acl import Grant
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
POOL_MEMBERS = {"node-1", "node-2"}
REFUSED = 0x80  # SUBACK failure, MQTT 3.1.1
NOT_AUTHORIZED = 0x87  # SUBACK reason code, MQTT 5


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

    def probe(
        self,
        name: str,
        transport: str,
        *,
        password: str | None = None,
        cert: bool = True,
        mqtt5: bool = False,
    ) -> Probe:
        password = self.password(name) if password is None else password
        if transport == "tcp":
            return Probe(name, self.tcp_port, password=password, mqtt5=mqtt5)
        b = self.bundle(name)
        tls = TlsFiles(b / "ca.crt", b / "tls.crt", b / "tls.key") if cert else TlsFiles(b / "ca.crt")
        return Probe(name, self.tls_port, password=password, tls=tls, mqtt5=mqtt5)

    def admin(self) -> Probe:
        probe = Probe(ADMIN, self.tcp_port, password=self.admin_password)
        assert probe.connect() is None
        return probe

    def write_broker_files(self) -> None:
        """`broker-files`, plus the test's superuser (a client and role in dynamic-security.json)."""
        edge_provision("broker-files", "--out", self.files, "--fleet", self.fleet)
        path = self.files / dynsec.CONFIG_FILE
        doc = json.loads(path.read_text())
        everything = (Grant("read", "#"), Grant("write", "#"))
        admin = dynsec.document([dynsec.Login(ADMIN, hash_password(self.admin_password), everything)])
        doc["clients"] += admin["clients"]
        doc["roles"] += admin["roles"]
        path.write_text(json.dumps(doc))

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
        allowed = READS[name] | ({SHARED_POOL} if name in POOL_MEMBERS else set())
        assert codes == [1 if f in allowed else REFUSED for f in filters]
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


@pytest.mark.parametrize("mqtt5", [False, True], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize("outsider_name", ["node-3", "dev-any", "dev-t", "dev-mac", "op", "dash"])
def test_an_outsider_is_refused_a_share_join_and_the_pool_gets_every_task(
    broker: Broker, outsider_name: str, mqtt5: bool
) -> None:
    """PROTOCOL 1: a `$share` join needs a grant naming the group. With the acl_file (before
    dynamic-security.json), Mosquitto granted every outsider's join, gave it its turn of the
    pool's round robin, and the read check dropped that turn's task: 5 of these 10 tasks were lost
    although their publisher had its PUBACK."""
    with (
        broker.probe("node-1", "tcp") as member,
        broker.probe(outsider_name, "tcp", mqtt5=mqtt5) as outsider,
        broker.probe("op", "tcp") as op,
    ):
        for client in (member, outsider, op):
            assert client.connect() is None
        assert member.subscribe([SHARED_POOL]) == [1]
        assert outsider.subscribe([SHARED_POOL]) == [NOT_AUTHORIZED if mqtt5 else REFUSED]
        sent = {("edge/tasks/pool/cams", f"t{i}".encode()) for i in range(10)}
        for _, payload in sorted(sent):
            op.publish("edge/tasks/pool/cams", payload)
        got_member = member.received(sent, settle=0.2)
        assert outsider.received(set(), settle=0.05) == set()
    assert got_member == sent, "the pool's member gets every task"


def test_the_dynamic_security_api_is_closed_to_every_identity(broker: Broker) -> None:
    """No role grants a `$CONTROL` topic (not even the test's `#` superuser): a command to the
    plugin's API is dropped, so no identity can add a login, a grant or a default, and Mosquitto
    never rewrites dynamic-security.json itself."""
    path = broker.files / dynsec.CONFIG_FILE
    before = path.read_bytes()
    commands = {
        "commands": [
            {"command": "createClient", "username": "intruder", "password": "intruder-pw"},
            {"command": "setDefaultACLAccess", "acls": [{"acltype": "subscribe", "allow": True}]},
        ]
    }
    for name in ROLES:
        with broker.probe(name, "tcp") as client:
            assert client.connect() is None
            assert client.subscribe(["$CONTROL/dynamic-security/v1/response"]) == [REFUSED]
            client.publish("$CONTROL/dynamic-security/v1", json.dumps(commands).encode())
    with broker.admin() as admin:  # `#` grants no `$` topic
        admin.publish("$CONTROL/dynamic-security/v1", json.dumps(commands).encode())
    with Probe("intruder", broker.tcp_port, password="intruder-pw") as intruder:
        assert intruder.connect() is not None
    with broker.probe("dash", "tcp") as dash:
        assert dash.connect() is None
        assert dash.subscribe(["edge/tasks/node-1"]) == [REFUSED], "the default still denies"
    assert path.read_bytes() == before
    assert not path.with_name(path.name + ".new").exists()


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


def _admitted(broker: Broker, name: str, password: str | None = None) -> list[bool]:
    """Whether `name` logs in over TCP and over TLS (with its bundle's certificate)."""
    result = []
    for transport in ("tcp", "tls"):
        with broker.probe(name, transport, password=password) as client:
            result.append(client.connect() is None)
    return result


def _wait_for_log(log: Path, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} not in {log}"
        time.sleep(0.05)


def test_revocation_and_rotation_take_a_restart_not_a_reload(tmp_path: Path) -> None:
    """Mosquitto 2.0.11 reads dynamic-security.json only when the plugin starts: `kill -HUP`
    re-reads mosquitto.conf but not the plugin's file (a version 5 plugin gets no cleanup and
    init at a reload, and dynsec registers no reload callback: `src/security.c`,
    `plugins/dynamic-security/plugin.c`). So a revoked identity still logs in after a reload, and
    after a restart it does not; a rotated one logs in with its new password only."""
    b = Broker(tmp_path, tmp_path / "fleet", tmp_path / "files", free_port(), free_port(), "admin-pw")
    edge_provision("init", b.fleet)
    for kind, name in (("device", "dev-r"), ("device", "dev-s"), ("agent", "node-1")):
        edge_provision("add", kind, name, "--fleet", b.fleet)
        edge_provision("bundle", name, "--out", b.bundle(name), "--fleet", b.fleet)
    b.write_broker_files()
    run = tmp_path / "run"
    run.mkdir()
    old_password = b.password("dev-s")
    with run_mosquitto(b.config(), run, [b.tls_port, b.tcp_port]) as proc:
        assert _admitted(b, "dev-r") == _admitted(b, "dev-s") == [True, True]
        edge_provision("revoke", "dev-r", "--fleet", b.fleet)
        edge_provision("rotate", "dev-s", "--overlap", "0", "--fleet", b.fleet)
        edge_provision("bundle", "dev-s", "--out", b.bundle("dev-s"), "--force", "--fleet", b.fleet)
        b.write_broker_files()
        os.kill(proc.pid, signal.SIGHUP)
        _wait_for_log(run / "mosquitto.log", "Reloading config.")
        assert _admitted(b, "dev-r") == [True, True], "a reload does not re-read dynamic-security.json"
        assert _admitted(b, "dev-s", old_password)[0], "nor the rotated password"
        assert _admitted(b, "dev-s") == [False, False]
    with run_mosquitto(b.config(), run, [b.tls_port, b.tcp_port]):
        assert _admitted(b, "dev-r") == [False, False], "a restart applies the revocation"
        assert _admitted(b, "dev-s", old_password) == [False, False]
        assert _admitted(b, "dev-s") == [True, True], "and the rotation (new password, new certificate)"
        assert _admitted(b, "node-1") == [True, True]


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


def test_run_as_another_user_reads_the_handed_over_files(tmp_path: Path) -> None:
    """Mosquitto started as root becomes `--run-as` before it loads the plugin (`drop_privileges`
    comes before `mosquitto_security_module_init` in its main), so broker-files hands
    dynamic-security.json (0600: it holds the password hashes) to that user; a file the user cannot
    read leaves the plugin without logins, and every login is refused."""
    if os.geteuid() != 0:
        pytest.skip("needs root: Mosquitto switches to another user only when started as root")
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no `mosquitto` user on this machine (Debian's package makes it)")
    shared = Path(tempfile.mkdtemp(prefix="edge-run-as-", dir="/tmp"))  # tmp_path's parents are 0700
    try:
        shared.chmod(0o755)
        b = Broker(tmp_path, tmp_path / "fleet", shared / "files", free_port(), free_port(), "admin-pw")
        edge_provision("init", b.fleet)
        edge_provision("add", "agent", "node-1", "--fleet", b.fleet)
        edge_provision("bundle", "node-1", "--out", b.bundle("node-1"), "--fleet", b.fleet)
        edge_provision("broker-files", "--out", b.files, "--run-as", "mosquitto", "--fleet", b.fleet)
        logins = b.files / dynsec.CONFIG_FILE
        for private in (logins, b.files / "server.key", b.files / "data"):
            assert private.stat().st_uid == user.pw_uid, private
        assert stat.S_IMODE(logins.stat().st_mode) == 0o600
        (shared / "run").mkdir()
        with run_mosquitto(b.config(), shared / "run", [b.tls_port, b.tcp_port]):
            assert _admitted(b, "node-1") == [True, True]
        os.chown(logins, 0, 0)  # what a copy by root without the hand-over leaves
        with run_mosquitto(b.config(), shared / "run", [b.tls_port, b.tcp_port]):
            assert _admitted(b, "node-1") == [False, False]
        assert (
            "Dynamic security plugin config: File is not readable"
            in (shared / "run" / "mosquitto.log").read_text()
        )
    finally:
        shutil.rmtree(shared)
