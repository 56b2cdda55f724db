"""A real fleet made by `edge-provision`, and both brokers started from its broker files.

    fleet = provision(tmp_path, IDENTITIES, revoked=["old-device"])
    with fleet_broker("embedded", fleet) as running: ...   # or "mosquitto"

`edge-provision broker-files --format amqtt|mosquitto` writes the files; the embedded broker
reads them with `--fleet-files`, Mosquitto with `-c mosquitto.conf`: same identities, same ACL.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from broker import EmbeddedBroker, load_settings
from provisioning.cli import main as provision_main
from tests.support.brokers import RunningBroker
from tests.support.services import free_port, run_mosquitto


def edge_provision(*args: str | Path) -> None:
    code = provision_main([str(a) for a in args])
    if code != 0:
        raise RuntimeError(f"edge-provision {' '.join(map(str, args))} exited with {code}")


@dataclass(frozen=True)
class Fleet:
    root: Path
    amqtt_files: Path
    mosquitto_files: Path
    tcp_port: int
    tls_port: int

    def password(self, name: str) -> str:
        [path] = sorted((self.root / "identities" / name).glob("broker-*.password"))
        return path.read_text().strip()

    def tls(self, name: str | None = None) -> ssl.SSLContext:
        """A client TLS context trusting the fleet CA, with `name`'s certificate when given."""
        context = ssl.create_default_context(cafile=str(self.root / "ca" / "ca.crt"))
        if name is not None:
            identity = self.root / "identities" / name
            [cert] = sorted(identity.glob("tls-*.crt"))
            [key] = sorted(identity.glob("tls-*.key"))
            context.load_cert_chain(str(cert), str(key))
        return context


def provision(
    workdir: Path, commands: Sequence[Sequence[str]], revoked: Sequence[str] = (), name: str = "testfleet"
) -> Fleet:
    """`init`, one `add` per command (e.g. `["agent", "node-1", "--pool", "cameras"]`), revocations,
    then both formats of broker files on free ports."""
    root = workdir / "fleet"
    edge_provision("init", root, "--name", name)
    for command in commands:
        edge_provision("--fleet", root, "add", *command)
    for identity in revoked:
        edge_provision("--fleet", root, "revoke", identity)
    tcp_port, tls_port = free_port(), free_port()
    amqtt_files, mosquitto_files = workdir / "broker-amqtt", workdir / "broker-mosquitto"
    for fmt, out in (("amqtt", amqtt_files), ("mosquitto", mosquitto_files)):
        ports = ("--tcp-port", str(tcp_port), "--tls-port", str(tls_port))
        edge_provision("--fleet", root, "broker-files", "--format", fmt, "--out", out, *ports)
    return Fleet(root, amqtt_files, mosquitto_files, tcp_port, tls_port)


@contextlib.contextmanager
def fleet_broker(kind: str, fleet: Fleet, **settings: object) -> Iterator[RunningBroker]:
    """Either broker from the fleet's broker files, TCP and TLS listeners on the fleet's ports."""
    if kind == "embedded":
        overrides = {"fleet_files": str(fleet.amqtt_files), **settings}
        thread = EmbeddedBroker(load_settings(None, environ={}, overrides=overrides)).start_in_thread()
        try:
            yield RunningBroker(
                kind,
                thread.port,
                fleet.amqtt_files / "data",
                lambda: None,
                tls_port=thread.tls_port,
                embedded=thread,
            )
        finally:
            thread.stop()
    elif kind == "mosquitto":
        conf = (fleet.mosquitto_files / "mosquitto.conf").read_text()
        with run_mosquitto(conf, fleet.mosquitto_files, [fleet.tcp_port, fleet.tls_port]):
            yield RunningBroker(
                kind, fleet.tcp_port, fleet.mosquitto_files / "data", lambda: None, fleet.tls_port
            )
    else:
        raise ValueError(f"unknown broker kind {kind!r}")
