"""The commands of `edge-provision`, as functions: validate everything, then write.

Each command that writes holds the fleet's exclusive lock, writes new files first (under new
names), commits the registry last, and only then deletes what the commit made obsolete, so a
failure or a crash leaves the fleet as it was. Bad input raises before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.common.fileio import PRIVATE, PUBLIC, fsync_dir, write_atomic
from agent.common.passwords import hash_password, new_token
from agent.protocol.keys import Alg
from agent.protocol.topics import ID_PATTERN, is_valid_id
from provisioning import amqtt_files, dynsec, material, mosquitto, nats
from provisioning import bundle as bundles

from .apiclients import SECRET_BYTES, ApiClient, parse_roles
from .brokerfiles import BrokerOptions, Format, hand_over, write_out
from .ca import Authority, cert_pem, generate_key, key_pem
from .durable import make_durable
from .errors import (
    DuplicateIdentity,
    FleetExists,
    InputError,
    InvalidName,
    InvalidTime,
    RevokedIdentity,
    UnknownIdentity,
)
from .fleet import (
    CONFIG_FILE,
    LOCK_FILE,
    Fleet,
    FleetConfig,
    check_host,
    fleet_lock,
    open_fleet,
    write_config,
)
from .identities import Kind, check_alg, check_name, check_unique, parse_pools, parse_targets
from .records import Identity, KeyRecord
from .registry import Registry, create_registry

Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    pass


@contextlib.contextmanager
def _writing(fleet: Fleet) -> Iterator[Registry]:
    with fleet_lock(fleet, exclusive=True), Registry(fleet.registry_path) as registry:
        yield registry


@contextlib.contextmanager
def _reading(fleet: Fleet) -> Iterator[Registry]:
    with fleet_lock(fleet, exclusive=False), Registry(fleet.registry_path) as registry:
        yield registry


# --- init ----------------------------------------------------------------------------------


def init_fleet(root: Path, config: FleetConfig) -> Fleet:
    """Create a fleet directory (absent or empty): built beside it, then renamed into place."""
    if root.exists():
        if not root.is_dir():
            raise FleetExists(f"{root} exists and is not a directory")
        if (root / CONFIG_FILE).exists():
            raise FleetExists(f"{root} is already a fleet directory")
        if any(root.iterdir()):
            raise FleetExists(f"{root} is not empty: init needs a new or empty directory")
    parent = root.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{root.name}.init-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    try:
        _populate(Fleet(staging, config))
        os.replace(staging, root)  # atomic; replaces an empty directory
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(parent)
    return Fleet(root, config)


def _populate(fleet: Fleet) -> None:
    config = fleet.config
    now = dt.datetime.fromtimestamp(config.created_at, tz=dt.timezone.utc)
    authority = Authority.create(config.name, config.ca_alg, now)
    server_key = generate_key(config.ca_alg)
    server_cert = authority.issue_server(config.broker_host, server_key, now, config.cert_days)
    for directory in (fleet.ca_dir, fleet.broker_dir, fleet.identities_dir):
        directory.mkdir(mode=0o700)
    write_atomic(fleet.ca_key_path, key_pem(authority.key), PRIVATE)
    write_atomic(fleet.ca_cert_path, cert_pem(authority.cert), PUBLIC)
    write_atomic(fleet.server_key_path, key_pem(server_key), PRIVATE)
    write_atomic(fleet.server_cert_path, cert_pem(server_cert), PUBLIC)
    create_registry(fleet.registry_path)
    write_atomic(fleet.root / LOCK_FILE, b"", PRIVATE)
    write_config(fleet)  # last: the marker that makes the directory a fleet


# --- add -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddRequest:
    kind: Kind
    names: Sequence[str]
    alg: str | None = None
    targets: Sequence[str] | None = None  # devices
    pools: Sequence[str] = ()  # agents
    force: bool = False


@dataclass(frozen=True)
class AddResult:
    identities: list[Identity]
    replaced: list[str]
    warnings: list[str]


def _validate_add(request: AddRequest) -> tuple[Alg, tuple[str, ...] | None, tuple[str, ...]]:
    for name in request.names:
        check_name(name, request.kind)
    check_unique(request.names)
    alg = check_alg(request.kind, request.alg)
    if request.targets is not None and request.kind != "device":
        raise InputError("--targets is for devices only")
    if request.pools and request.kind != "agent":
        raise InputError("--pool is for agents only")
    targets = None if request.targets is None else parse_targets(request.targets)
    if targets == ():
        raise InputError("--targets needs at least one target (leave it out to allow every agent)")
    return alg, targets, parse_pools(request.pools)


def _target_warnings(targets: tuple[str, ...] | None, existing: dict[str, Identity]) -> list[str]:
    warnings = []
    for target in targets or ():
        if target == "all" or target.startswith("pool:"):
            continue
        known = existing.get(target)
        if known is None:
            warnings.append(f"target {target!r} is not an agent of this fleet (yet)")
        elif known.kind != "agent":
            warnings.append(f"target {target!r} is a {known.kind}, not an agent: no task can reach it")
    return warnings


def add_identities(
    fleet: Fleet, request: AddRequest, now: float, progress: Progress = _no_progress
) -> AddResult:
    alg, targets, pools = _validate_add(request)
    if fleet.config.broker == "nats":
        nats.refuse_conflicts([nats.conflict(request.kind, name, pools, targets) for name in request.names])
    with _writing(fleet) as registry:
        existing = {i.name: i for i in registry.all()}
        clients = {c.name for c in registry.api_clients()}
        clash = next((n for n in request.names if n in clients), None)
        if clash is not None:
            raise DuplicateIdentity(f"{clash!r} is an API client: an identity needs a name of its own")
        taken = [n for n in request.names if n in existing]
        if taken and not request.force:
            first = existing[taken[0]]
            more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
            raise DuplicateIdentity(
                f"{first.kind} {first.name!r} already exists{more}; use --force to replace it"
            )
        template = _Template(request.kind, alg, targets, pools, now, material.load_authority(fleet))
        made: list[Identity] = []
        written: list[Path] = []
        try:
            for done, name in enumerate(request.names, 1):
                made.append(template.make(fleet, name, existing.get(name), written))
                progress(done, len(request.names))
            make_durable(fleet.root, written)
            registry.save(made)
        except BaseException:
            _discard(fleet, request.names, existing)
            raise
    for identity in made:
        material.prune(fleet, identity)
    return AddResult(made, taken, _target_warnings(targets, existing))


@dataclass(frozen=True)
class _Template:
    """What the identities of one `add` share."""

    kind: Kind
    alg: Alg
    targets: tuple[str, ...] | None
    pools: tuple[str, ...]
    now: float
    authority: Authority

    def make(self, fleet: Fleet, name: str, old: Identity | None, written: list[Path]) -> Identity:
        """Generate and write (not yet durably) the material of `name`; `written` gets its paths."""
        gen = 1 if old is None else old.gen + 1  # a replaced identity's files stay until the commit
        made = material.generate(name, self.alg, gen, self.authority, fleet, self.now)
        written += material.write(fleet, name, made)
        return Identity(
            name=name,
            kind=self.kind,
            gen=gen,
            created_at=self.now,
            updated_at=self.now,
            keys=(made.key_record(self.kind, self.now),),
            cert=made.cert_record(fleet.config.ca_alg),
            password_hash=made.password_hash,
            pools=self.pools if self.kind == "agent" else (),
            targets=self.targets if self.kind == "device" else None,
        )


def _discard(fleet: Fleet, names: Sequence[str], existing: dict[str, Identity]) -> None:
    """Undo the files of a failed add: new identities entirely, replaced ones' new generation."""
    for name in names:
        old = existing.get(name)
        if old is None:
            shutil.rmtree(fleet.identity_dir(name), ignore_errors=True)
        else:
            material.prune(fleet, old)


# --- API clients (edge-gateway) ----------------------------------------------------------------


def add_api_client(
    fleet: Fleet, name: str, roles: Sequence[str], now: float, *, force: bool = False
) -> tuple[ApiClient, str]:
    """A new API client (or a new secret for an existing one, with `force`): (client, its secret).
    The secret exists only in the return value: the registry keeps its hash."""
    if not is_valid_id(name):
        raise InvalidName(f"name {name!r} must match {ID_PATTERN} (letters, digits and _ . : -)")
    chosen = parse_roles(roles)
    with _writing(fleet) as registry:
        identity = registry.get(name)
        if identity is not None:
            raise DuplicateIdentity(f"{identity.kind} {name!r} exists: an API client needs a name of its own")
        old = registry.api_client(name)
        if old is not None and not force:
            raise DuplicateIdentity(
                f"API client {name!r} already exists; use --force to replace it (a new secret)"
            )
        secret = new_token(SECRET_BYTES)
        client = ApiClient(name, chosen, hash_password(secret), now if old is None else old.created_at, now)
        registry.save_api_client(client)
    return client, secret


def server_cert(fleet: Fleet, host: str, out: Path, now: float, *, force: bool = False) -> tuple[Path, Path]:
    """A TLS server certificate from the fleet CA for `host` (and 127.0.0.1, localhost), with its
    key: for edge-gateway's HTTPS (`http.tls_cert`, `http.tls_key`), which clients then verify with
    the fleet's ca.crt. Written as `out/server.crt` (0644) and `out/server.key` (0600)."""
    check_host(host)
    cert_path, key_path = out / "server.crt", out / "server.key"
    if not force and (cert_path.exists() or key_path.exists()):
        raise InputError(f"{out} already holds server.crt or server.key (use --force to replace them)")
    with _reading(fleet):
        authority = material.load_authority(fleet)
    key = generate_key(fleet.config.ca_alg)
    when = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc)
    cert = authority.issue_server(host, key, when, fleet.config.cert_days)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(key_path, key_pem(key), PRIVATE)
    write_atomic(cert_path, cert_pem(cert), PUBLIC)
    return cert_path, key_path


def list_api_clients(fleet: Fleet) -> list[ApiClient]:
    with _reading(fleet) as registry:
        return registry.api_clients()


# --- revoke and rotate -----------------------------------------------------------------------


def revoke(fleet: Fleet, name: str, now: float) -> tuple[Identity, bool]:
    """Mark every key of `name` revoked; (identity, False) when it already was."""
    with _writing(fleet) as registry:
        identity = registry.require(name)
        if identity.revoked:
            return identity, False
        revoked = identity.with_changes(revoked_at=now, updated_at=now)
        registry.save([revoked])
    return revoked, True


def revoke_api_client(fleet: Fleet, name: str, now: float) -> tuple[ApiClient, bool]:
    """Mark the API client `name` revoked; (client, False) when it already was."""
    with _writing(fleet) as registry:
        client = registry.api_client(name)
        if client is None:
            raise UnknownIdentity(
                f"no identity called {name!r} in this fleet, nor an API client (see `edge-provision list`)"
            )
        if client.revoked:
            return client, False
        revoked = client.with_changes(revoked_at=now, updated_at=now)
        registry.save_api_client(revoked)
    return revoked, True


ROTATION_SKEW_S = 60.0  # PROTOCOL 4's default clock skew


def rotate(fleet: Fleet, name: str, until: float, now: float, alg: str | None = None) -> Identity:
    """New signing key, certificate and password; older keys stay valid until `until`."""
    if until < now:
        raise InvalidTime("the old key's end of validity is in the past")
    with _writing(fleet) as registry:
        identity = registry.require(name)
        if identity.revoked:
            raise RevokedIdentity(f"{name!r} is revoked: add it again with --force instead")
        new_alg = check_alg(identity.kind, alg or identity.current_key.alg)
        made = material.generate(name, new_alg, identity.gen + 1, material.load_authority(fleet), fleet, now)
        rotated = identity.with_changes(
            gen=made.gen,
            keys=(
                *(_cap(k, until) for k in identity.keys),
                # valid from a minute back: an agent whose clock is behind (PROTOCOL 4 allows 60 s
                # of skew) must not refuse the first tasks signed with the new key
                made.key_record(identity.kind, now, not_before=now - ROTATION_SKEW_S),
            ),
            cert=made.cert_record(fleet.config.ca_alg),
            password_hash=made.password_hash,
            updated_at=now,
        )
        try:
            make_durable(fleet.root, material.write(fleet, name, made))
            registry.save([rotated])
        except BaseException:
            material.prune(fleet, identity)  # drops the new generation's files
            raise
    material.prune(fleet, rotated)
    return rotated


def _cap(key: KeyRecord, until: float) -> KeyRecord:
    if key.not_after is not None and key.not_after <= until:
        return key
    return dataclasses.replace(key, not_after=until)


# --- reading commands ------------------------------------------------------------------------


def list_identities(fleet: Fleet) -> list[Identity]:
    with _reading(fleet) as registry:
        return registry.all()


def show(fleet: Fleet, name: str) -> Identity:
    with _reading(fleet) as registry:
        return registry.require(name)


def make_bundle(fleet: Fleet, name: str, *, out: Path | None, archive: Path | None, force: bool) -> Path:
    with _reading(fleet) as registry:
        identity = registry.require(name)
        files = bundles.build(fleet, identity, registry.all(), registry.api_clients())
    if archive is not None:
        bundles.write_archive(files, archive, name, force=force)
        return archive
    target = out if out is not None else Path(f"{name}-bundle")
    bundles.write_directory(files, target, force=force)
    return target


def broker_files(fleet: Fleet, fmt: Format, options: BrokerOptions) -> tuple[list[Path], list[str]]:
    """Write the broker's files; returns them and notes: what the user must still do, if anything."""
    with _reading(fleet) as registry:
        identities = registry.all()
        writer = mosquitto.files if fmt == "mosquitto" else amqtt_files.files
        files, notes = writer(fleet, identities, options)
    written = write_out(options.out, files)
    data = options.out / "data"  # persistence_location / persistence.data_dir
    data.mkdir(mode=0o700, exist_ok=True)
    if fmt != "mosquitto":
        return written, notes
    private = [options.out / dynsec.CONFIG_FILE, options.out / "server.key", data]
    todo = hand_over(private, options.run_as)
    return written, notes + ([todo] if todo else [])


def nats_broker_files(fleet: Fleet, options: nats.ClusterOptions, out: Path) -> list[Path]:
    """Write each node's directory of a NATS cluster, then record the cluster in fleet.toml
    (`broker = "nats"`, `servers`): bundles written from then on list every node and MQTT 3.1.1."""
    with _writing(fleet) as registry:
        per_node = nats.files(fleet, registry.all(), options, out)
        written: list[Path] = []
        for name, files in per_node.items():
            written += write_out(out / name, files)
            (out / name / nats.STORE_DIR).mkdir(mode=0o700, exist_ok=True)
        servers = tuple(node.endpoint for node in options.nodes)
        write_config(Fleet(fleet.root, dataclasses.replace(fleet.config, broker="nats", servers=servers)))
    return written


__all__ = [
    "AddRequest",
    "AddResult",
    "add_identities",
    "broker_files",
    "init_fleet",
    "list_identities",
    "make_bundle",
    "nats_broker_files",
    "open_fleet",
    "revoke",
    "rotate",
    "show",
]
