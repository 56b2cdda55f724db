"""`broker-files`: what a broker needs to admit the fleet, for Mosquitto or our amqtt broker.

Both formats share the TLS files (`ca.crt`, `server.crt`, `server.key`), the `$7$` password
hashes of every identity that is not revoked and the grants of acl.py; they differ in how the
logins, the ACL and the listeners are written (mosquitto.py with dynsec.py, amqtt_files.py).
"""

from __future__ import annotations

import getpass
import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agent.common.fileio import PRIVATE, PUBLIC, fsync_dir, write_atomic

from .errors import FleetCorrupt, InputError
from .fleet import Fleet, check_host, check_port
from .passwords import passwd_line
from .records import Identity

Format = Literal["mosquitto", "amqtt"]
FORMATS: tuple[Format, ...] = ("mosquitto", "amqtt")
DEFAULT_MAX_QUEUED = 10_000  # an offline agent's backlog: the agent's own queue limit (PROTOCOL 4, check 9)
DEFAULT_MAX_QUEUED_BYTES = 64 << 20  # and its bytes: 10,000 tasks of 1 MiB would be 10 GiB per client
SESSION_EXPIRY_S = 86_400  # a disconnected session of a device, operator or dashboard (embedded broker)
AGENT_SESSION_EXPIRY_S = 0  # an agent's: never (it holds the tasks sent while the agent is away)
MOSQUITTO_SESSION_EXPIRY = "30d"  # Mosquitto has one expiry for every client, agents included
MAX_CONNECTIONS = 1_000  # edge-broker, every listener together (~50 KB each; past a few hundred, Mosquitto)
MOSQUITTO_MAX_CONNECTIONS = 10_000  # per Mosquitto listener (~1 KB each)


@dataclass(frozen=True)
class BrokerOptions:
    """Listener settings; the ports default to fleet.toml's."""

    out: Path
    tls_port: int
    tcp_port: int
    bind: str = "127.0.0.1"
    install_dir: Path | None = None  # where the files will live on the broker machine
    max_queued: int = DEFAULT_MAX_QUEUED
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    run_as: str = field(default_factory=getpass.getuser)  # Mosquitto's `user`: who reads the files
    plugin_path: Path | None = None  # Mosquitto's dynamic security plugin on the broker (else found)

    def __post_init__(self) -> None:
        check_port(self.tls_port, "--tls-port")
        check_port(self.tcp_port, "--tcp-port")
        check_host(self.bind)
        if self.tls_port == self.tcp_port:
            raise InputError(f"--tls-port and --tcp-port are both {self.tls_port}")
        for option, path in (("--install-dir", self.install_dir), ("--plugin-path", self.plugin_path)):
            if path is not None and not path.is_absolute():
                raise InputError(f"{option} {path} must be an absolute path on the broker")
        if self.max_queued < 1:
            raise InputError("--max-queued must be at least 1")
        try:
            pwd.getpwnam(self.run_as)
        except KeyError:
            raise InputError(f"--run-as {self.run_as!r}: no such user on this machine") from None

    @property
    def where(self) -> Path:
        """The directory the configuration refers to (absolute)."""
        return (self.install_dir or self.out).absolute()


@dataclass(frozen=True)
class OutFile:
    name: str
    data: str | bytes
    mode: int


def passwd_text(identities: Iterable[Identity]) -> str:
    """One `$7$` line per identity that may log in (revoked ones are left out)."""
    return "".join(passwd_line(i.name, i.password_hash) for i in identities if not i.revoked)


def tls_files(fleet: Fleet) -> list[OutFile]:
    try:
        return [
            OutFile("ca.crt", fleet.ca_cert_path.read_bytes(), PUBLIC),
            OutFile("server.crt", fleet.server_cert_path.read_bytes(), PUBLIC),
            OutFile("server.key", fleet.server_key_path.read_bytes(), PRIVATE),
        ]
    except OSError as exc:
        raise FleetCorrupt(f"cannot read the broker's TLS files: {exc}") from None


def write_out(out: Path, files: list[OutFile]) -> list[Path]:
    """Write (replace) each file atomically; other files in `out` are left alone."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    out.mkdir(mode=0o755, parents=True, exist_ok=True)
    written = []
    for f in files:
        write_atomic(out / f.name, f.data, f.mode, sync_dir=False)
        written.append(out / f.name)
    fsync_dir(out)
    return written


def hand_over(paths: Iterable[Path], user: str) -> str | None:
    """Give the broker's private files to `user` (when we are root); else say what to do, or None."""
    entry = pwd.getpwnam(user)
    targets = list(paths)
    if all(p.stat().st_uid == entry.pw_uid for p in targets):
        return None
    if os.geteuid() != 0:
        names = " ".join(str(p) for p in targets)
        return f"the broker runs as {user}: chown {user}: {names}"
    for path in targets:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return None
