"""The fleet directory: its layout, its configuration (`fleet.toml`) and its lock.

    fleet/
      fleet.toml            format, name, topic prefix, broker address, TLS algorithm
      .lock                 flock(2) target: exclusive for writers, shared for readers
      registry.json         the identities (TinyDB, written atomically, 0600)
      ca/ca.key, ca/ca.crt  the fleet CA (key 0600)
      broker/server.key, broker/server.crt   the broker's TLS certificate
      identities/<name>/    one directory per identity (see material.py)

A directory is a fleet only if its `fleet.toml` says `format = 1`; every command but `init`
refuses anything else before touching it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.common import tomlio
from agent.common.endpoints import format_endpoint, parse_endpoint
from agent.common.fileio import PUBLIC, write_atomic
from agent.protocol.errors import TopicError
from agent.protocol.topics import DEFAULT_PREFIX, Topics, is_valid_id

from .errors import FleetCorrupt, FleetLocked, InputError, InvalidName, InvalidTime, NotAFleet

FORMAT_VERSION = 1
CONFIG_FILE = "fleet.toml"
LOCK_FILE = ".lock"
LOCK_TIMEOUT_S = 30.0
CaAlg = Literal["ecdsa-p256", "ed25519", "rsa-2048"]
CA_ALGORITHMS: tuple[CaAlg, ...] = ("ecdsa-p256", "ed25519", "rsa-2048")
BrokerKind = Literal["mqtt", "nats"]
BROKER_KINDS: tuple[BrokerKind, ...] = ("mqtt", "nats")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_TCP_PORT = 1883
DEFAULT_TLS_PORT = 8883
DEFAULT_CERT_DAYS = 3 * 365
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:")


def check_port(port: int, what: str) -> int:
    if not 1 <= port <= 65535:
        raise InputError(f"{what} {port} is not a TCP port (1-65535)")
    return port


def check_endpoint(text: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` for an IPv6 address) as (host, port); InputError if it is not one."""
    try:
        host, port = parse_endpoint(text)
    except ValueError as exc:
        raise InputError(f"broker endpoint {exc}") from None
    return check_host(host), port


def check_host(host: str) -> str:
    """A DNS name or an IP address: it goes into the broker certificate and every client config."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return host
    labels = host.split(".")
    if not host or len(host) > 253 or set(host) - _HOST_CHARS or ":" in host or not all(labels):
        raise InputError(f"broker host {host!r} is neither an IP address nor a DNS name")
    return host


@dataclass(frozen=True)
class FleetConfig:
    """What `fleet.toml` holds; validated when built."""

    name: str = "fleet"
    prefix: str = DEFAULT_PREFIX
    broker_host: str = DEFAULT_HOST
    tcp_port: int = DEFAULT_TCP_PORT
    tls_port: int = DEFAULT_TLS_PORT
    ca_alg: CaAlg = "ecdsa-p256"
    cert_days: int = DEFAULT_CERT_DAYS
    created_at: float = field(default_factory=time.time)
    #: "mqtt": one MQTT 5 broker (Mosquitto, edge-broker); "nats": a NATS cluster's MQTT listeners
    #: (MQTT 3.1.1, no shared subscriptions). Set by `broker-files --format nats`.
    broker: BrokerKind = "mqtt"
    #: Every endpoint clients may use, `host:port`, tried in turn (bundles' `mqtt.servers`);
    #: empty: broker_host:tls_port alone.
    servers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "servers", tuple(self.servers))  # a list when read from TOML
        for server in self.servers:
            check_endpoint(server)
        if self.broker not in BROKER_KINDS:
            raise InputError(f"broker {self.broker!r} is not one of {', '.join(BROKER_KINDS)}")
        if not is_valid_id(self.name):
            raise InvalidName(f"fleet name {self.name!r} must match [A-Za-z0-9_.:-]{{1,64}}")
        try:
            Topics(self.prefix)
        except TopicError as exc:
            raise InvalidName(str(exc)) from None
        check_host(self.broker_host)
        check_port(self.tcp_port, "--tcp-port")
        check_port(self.tls_port, "--tls-port")
        if self.ca_alg not in CA_ALGORITHMS:
            raise InputError(f"CA algorithm {self.ca_alg!r} is not one of {', '.join(CA_ALGORITHMS)}")
        if not 1 <= self.cert_days <= 100 * 365:
            raise InputError(f"cert_days {self.cert_days} must be between 1 and 36500")

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def endpoints(self) -> tuple[str, ...]:
        """`host:port` of every broker endpoint a client may use, in order."""
        return self.servers or (format_endpoint(self.broker_host, self.tls_port),)

    def cluster_mqtt(self) -> dict[str, Any]:
        """What bundles add to `[mqtt]` for a cluster: every endpoint (`servers`, tried in turn;
        `host` and `port` stay fleet.toml's for firmware that takes one broker), and MQTT 3.1.1
        on NATS (it refuses MQTT 5: no probe at every start)."""
        extra: dict[str, Any] = {}
        if self.servers:
            extra["servers"] = list(self.servers)
        if self.broker == "nats":
            extra["protocol"] = "3.1.1"
        return extra

    def to_toml(self) -> str:
        doc: dict[str, Any] = {"format": FORMAT_VERSION, **asdict(self)}
        doc["servers"] = list(self.servers)
        header = "# Edge fleet description, written by `edge-provision init`. See provisioning/README.md.\n"
        return header + tomlio.dumps(doc)

    @classmethod
    def from_toml(cls, text: str, source: str) -> FleetConfig:
        try:
            doc = tomlio.loads(text)
        except tomlio.TOMLDecodeError as exc:
            raise NotAFleet(f"{source} is not valid TOML: {exc}") from None
        if doc.pop("format", None) != FORMAT_VERSION:
            raise NotAFleet(f"{source} is not an edge fleet description of format {FORMAT_VERSION}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(doc) - known
        if unknown:
            raise NotAFleet(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            return cls(**doc)
        except (TypeError, InputError, InvalidTime) as exc:
            raise NotAFleet(f"{source}: {exc}") from None


@dataclass(frozen=True)
class Fleet:
    """An opened fleet directory: its configuration and the path of every file in it."""

    root: Path
    config: FleetConfig

    @property
    def topics(self) -> Topics:
        return self.config.topics

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def registry_path(self) -> Path:
        return self.root / "registry.json"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def ca_key_path(self) -> Path:
        return self.ca_dir / "ca.key"

    @property
    def ca_cert_path(self) -> Path:
        return self.ca_dir / "ca.crt"

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def server_key_path(self) -> Path:
        return self.broker_dir / "server.key"

    @property
    def server_cert_path(self) -> Path:
        return self.broker_dir / "server.crt"

    @property
    def identities_dir(self) -> Path:
        return self.root / "identities"

    def identity_dir(self, name: str) -> Path:
        return self.identities_dir / name


def open_fleet(root: str | os.PathLike[str]) -> Fleet:
    """The fleet at `root`, or `NotAFleet` naming what is wrong; reads, never writes."""
    path = Path(root)
    config_path = path / CONFIG_FILE
    if not path.is_dir():
        raise NotAFleet(
            f"{path} does not exist or is not a directory (create one with `edge-provision init`)"
        )
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotAFleet(f"{path} is not a fleet directory: it has no {CONFIG_FILE}") from None
    except OSError as exc:
        raise NotAFleet(f"cannot read {config_path}: {exc.strerror}") from None
    fleet = Fleet(path, FleetConfig.from_toml(text, str(config_path)))
    if not fleet.registry_path.is_file():
        raise FleetCorrupt(f"{fleet.registry_path} is missing: this fleet directory is damaged")
    return fleet


def write_config(fleet: Fleet) -> None:
    write_atomic(fleet.config_path, fleet.config.to_toml(), PUBLIC)


@contextlib.contextmanager
def fleet_lock(fleet: Fleet, *, exclusive: bool, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the fleet's lock: exclusive for commands that write, shared for those that read."""
    try:
        fd = os.open(fleet.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise NotAFleet(f"cannot open {fleet.lock_path}: {exc.strerror}") from None
    try:
        _acquire(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout, fleet.root)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _acquire(fd: int, operation: int, timeout: float, root: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise FleetLocked(f"{root} is locked by another edge-provision (waited {timeout:g} s)")
        time.sleep(0.05)
