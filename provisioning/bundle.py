"""`bundle NAME`: everything one machine needs, as a directory or a .tar.gz archive.

| kind      | files                                                                        |
|-----------|------------------------------------------------------------------------------|
| agent     | agent.toml, signing.key, tls.key, tls.crt, ca.crt, broker.password, trust.toml |
| device    | device.toml, the same key files, trust.toml, device.env (+ config.py for HMAC) |
| operator  | operator.toml, the same key files, trust.toml                                |
| dashboard | dashboard.toml, the same key files, trust.toml                               |
| gateway   | gateway.toml, the same key files, trust.toml, api-clients.json (hashed secrets) |

An agent's trust store holds only what it must know: every key (rotation overlaps and revoked
entries included) of the operators and gateways, and of the devices that may target it (no `--targets`, or
a target naming it, `all` or one of its pools). Operators, dashboards and gateways get every agent key,
to verify results; a device gets the keys of the agents it may task, to verify its replies
(`device_files` writes them into `device.env` too, for firmware). Paths in the `.toml` files are
relative to the file.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.common import tomlio
from agent.common.fileio import PRIVATE, PUBLIC, fsync_dir, write_atomic
from agent.protocol.truststore import TrustedKey, dump_keys
from provisioning import device_files, material

from .apiclients import CLIENTS_FILE, ApiClient, clients_file
from .errors import InputError, RevokedIdentity
from .fleet import Fleet
from .identities import ISSUERS, parse_target
from .records import Identity

TRUST_FILE = "trust.toml"


@dataclass(frozen=True)
class BundleFile:
    name: str
    data: bytes
    mode: int


def device_reaches(device: Identity, agent: Identity) -> bool:
    """Whether `device` may task `agent` (it has no targets, or one of them lands on the agent)."""
    if device.targets is None:
        return True
    return any(parse_target(t).reaches(agent.name, agent.pools) for t in device.targets)


def trusted_sources(identity: Identity, everyone: Iterable[Identity]) -> list[Identity]:
    """The identities whose keys `identity` must be able to verify."""
    if identity.kind == "agent":
        return [
            other
            for other in everyone
            if other.kind in ISSUERS or (other.kind == "device" and device_reaches(other, identity))
        ]
    if identity.kind in ("operator", "dashboard", "gateway"):
        return [other for other in everyone if other.kind == "agent"]
    return [other for other in everyone if other.kind == "agent" and device_reaches(identity, other)]


def trusted_keys(fleet: Fleet, sources: Iterable[Identity]) -> list[TrustedKey]:
    """Every key of `sources` as trust store entries; a revoked identity's keys are all revoked."""
    return [
        key.trusted(source.name, material.key_material(fleet, source, key), revoked=source.revoked)
        for source in sources
        for key in source.keys
    ]


def _mqtt_section(fleet: Fleet, identity: Identity) -> dict[str, Any]:
    config = fleet.config
    section: dict[str, Any] = {
        "host": config.broker_host,
        "port": config.tls_port,
        "tls": True,
        "ca_file": "ca.crt",
        "cert_file": "tls.crt",
        "key_file": "tls.key",
        "username": identity.name,
        "password_file": "broker.password",
        "prefix": config.prefix,
    }
    return section | config.cluster_mqtt()


def config_document(fleet: Fleet, identity: Identity) -> tuple[str, dict[str, Any]]:
    """(file name, content) of the identity's own configuration file."""
    mqtt = _mqtt_section(fleet, identity)
    security: dict[str, Any] = {"signing_key": "signing.key"}
    if identity.kind == "agent":
        head: dict[str, Any] = {"node": identity.name, "pools": list(identity.pools), "data_dir": "data"}
        security["trust_store"] = TRUST_FILE
        return "agent.toml", {"agent": head, "mqtt": mqtt, "security": security}
    security.update(kid=identity.name, alg=identity.current_key.alg)
    head = {"name": identity.name}
    if identity.kind == "device" and identity.targets is not None:
        head["targets"] = list(identity.targets)
    security["trust_store"] = TRUST_FILE
    return f"{identity.kind}.toml", {identity.kind: head, "mqtt": mqtt, "security": security}


def _header(fleet: Fleet, identity: Identity) -> str:
    lines = [
        f"# {identity.kind} {identity.name!r} of fleet {fleet.config.name!r},"
        " written by `edge-provision bundle`.",
        "# Paths are relative to this file. See provisioning/README.md.",
    ]
    if identity.kind == "device" and identity.targets is None:
        lines.append("# No `targets`: this device may task every agent.")
    return "\n".join(lines) + "\n"


def build(
    fleet: Fleet, identity: Identity, everyone: list[Identity], api_clients: Iterable[ApiClient] = ()
) -> list[BundleFile]:
    """The files of the bundle, in memory (a gateway's holds the API clients' hashed secrets)."""
    if identity.revoked:
        raise RevokedIdentity(f"{identity.name!r} is revoked: there is nothing to bundle")
    tls_key, tls_cert = material.tls_files(fleet, identity)
    config_name, doc = config_document(fleet, identity)
    files = [
        BundleFile(config_name, (_header(fleet, identity) + tomlio.dumps(doc)).encode(), PUBLIC),
        BundleFile("signing.key", material.signing_key_bytes(fleet, identity), PRIVATE),
        BundleFile("tls.key", tls_key, PRIVATE),
        BundleFile("tls.crt", tls_cert, PUBLIC),
        BundleFile("ca.crt", fleet.ca_cert_path.read_bytes(), PUBLIC),
        BundleFile("broker.password", (material.password(fleet, identity) + "\n").encode(), PRIVATE),
    ]
    keys = trusted_keys(fleet, trusted_sources(identity, everyone))
    # The rule of write_trust_store: private as soon as it holds an HMAC secret.
    mode = PRIVATE if any(k.alg == "hmac-sha256" for k in keys) else PUBLIC
    files.append(BundleFile(TRUST_FILE, dump_keys(keys).encode(), mode))
    if identity.kind == "device":
        files += _firmware_files(fleet, identity, keys)
    if identity.kind == "gateway":
        files.append(BundleFile(CLIENTS_FILE, clients_file(api_clients).encode(), PRIVATE))
    return files


def _firmware_files(fleet: Fleet, identity: Identity, agent_keys: list[TrustedKey]) -> list[BundleFile]:
    """`device.env` for every device; `config.py` for an HMAC one (MicroPython)."""
    files = [
        BundleFile(
            device_files.ENV_FILE, device_files.device_env(fleet, identity, agent_keys).encode(), PUBLIC
        )
    ]
    if identity.current_key.alg == "hmac-sha256":
        secret = material.key_material(fleet, identity, identity.current_key)
        text = device_files.micropython_config(fleet, identity, secret, material.password(fleet, identity))
        files.append(BundleFile(device_files.MICROPYTHON_FILE, text.encode(), PRIVATE))
    return files


def write_directory(files: list[BundleFile], out: Path, *, force: bool) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise InputError(f"{out} exists and is not an empty directory (use --force to overwrite its files)")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    for f in files:
        write_atomic(out / f.name, f.data, f.mode, sync_dir=False)
    fsync_dir(out)


def write_archive(files: list[BundleFile], archive: Path, top: str, *, force: bool) -> None:
    """A gzip tar whose members sit under `top/`, with their modes; written 0600, atomically."""
    if archive.exists() and not force:
        raise InputError(f"{archive} exists (use --force to replace it)")
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(_member(f"{top}/", 0o700, now, directory=True))
        for f in files:
            tar.addfile(_member(f"{top}/{f.name}", f.mode, now, size=len(f.data)), io.BytesIO(f.data))
    write_atomic(archive, buffer.getvalue(), PRIVATE)


def _member(name: str, mode: int, mtime: float, *, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.rstrip("/"))
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode, info.mtime, info.size = mode, int(mtime), size
    info.uid = info.gid = 0
    return info
