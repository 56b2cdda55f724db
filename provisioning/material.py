"""An identity's private material: made in memory, written once, 0600, never printed.

`identities/<name>/` holds, for generation N (see records.py):

    signing-N.key      the message-signing key (PKCS#8 PEM, or an `hmac-sha256:` line)  0600
    tls-N.key          the TLS client key                                                0600
    tls-N.crt          the TLS client certificate (CN = name), signed by the fleet CA    0644
    broker-N.password  the broker password in plain text, for `bundle`                   0600

Files of an older generation are deleted once the registry has committed the new one, except
the HMAC secrets of older keys still listed in trust stores (an HMAC secret is its own
verification material). Retired Ed25519 private keys are not kept: their public halves are in
the registry.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from agent.common.fileio import PRIVATE, PUBLIC, fsync_dir
from agent.protocol.keys import Alg, Ed25519Signer, HmacSigner, generate_signer, signer_from_bytes
from provisioning import ca

from .durable import write_new
from .errors import FleetCorrupt
from .fleet import Fleet
from .identities import ROLES, Kind
from .passwords import hash_password, new_password
from .records import CertRecord, Identity, KeyRecord, key_fingerprint

_GEN_FILE = re.compile(r"(signing|tls|broker)-(\d+)\.(key|crt|password)")


@dataclass(frozen=True)
class IdentityPaths:
    """Where the files of one identity live."""

    dir: Path

    def signing_key(self, gen: int) -> Path:
        return self.dir / f"signing-{gen}.key"

    def tls_key(self, gen: int) -> Path:
        return self.dir / f"tls-{gen}.key"

    def tls_cert(self, gen: int) -> Path:
        return self.dir / f"tls-{gen}.crt"

    def password(self, gen: int) -> Path:
        return self.dir / f"broker-{gen}.password"


def paths(fleet: Fleet, name: str) -> IdentityPaths:
    return IdentityPaths(fleet.identity_dir(name))


@dataclass(frozen=True)
class Material:
    """Everything secret that one generation of an identity needs (in memory until written)."""

    gen: int
    signer: Ed25519Signer | HmacSigner
    tls_key: ca.PrivateKey
    tls_cert: x509.Certificate
    password: str
    password_hash: str

    def key_record(self, kind: Kind, now: float, *, not_before: float | None = None) -> KeyRecord:
        public = self.signer.public_raw() if isinstance(self.signer, Ed25519Signer) else None
        return KeyRecord(
            gen=self.gen,
            alg=self.signer.alg,
            roles=ROLES[kind],
            created_at=now,
            fingerprint=key_fingerprint(public if public is not None else self.signer.private_pem()),
            public_key=public,
            not_before=not_before,
        )

    def cert_record(self, alg: str) -> CertRecord:
        return CertRecord(
            gen=self.gen,
            serial=format(self.tls_cert.serial_number, "x"),
            not_before=self.tls_cert.not_valid_before_utc.timestamp(),
            not_after=self.tls_cert.not_valid_after_utc.timestamp(),
            fingerprint=ca.fingerprint(self.tls_cert),
            alg=alg,
        )


def load_authority(fleet: Fleet) -> ca.Authority:
    try:
        key = ca.load_key(fleet.ca_key_path.read_bytes(), str(fleet.ca_key_path))
        cert = ca.load_cert(fleet.ca_cert_path.read_bytes(), str(fleet.ca_cert_path))
    except OSError as exc:
        raise FleetCorrupt(f"cannot read the fleet CA: {exc}") from None
    return ca.Authority(key, cert)


def generate(name: str, alg: Alg, gen: int, authority: ca.Authority, fleet: Fleet, now: float) -> Material:
    tls_key = ca.generate_key(fleet.config.ca_alg)
    when = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc)
    password = new_password()
    return Material(
        gen=gen,
        signer=generate_signer(name, alg),
        tls_key=tls_key,
        tls_cert=authority.issue_client(name, tls_key, when, fleet.config.cert_days),
        password=password,
        password_hash=hash_password(password),
    )


def write(fleet: Fleet, name: str, material: Material) -> list[Path]:
    """Write one generation's files under new names (nothing existing is touched), not yet synced.

    Returns what the caller must pass to `durable.make_durable` before committing the registry.
    """
    where = paths(fleet, name)
    created = not where.dir.exists()
    where.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    gen = material.gen
    files: list[tuple[Path, bytes | str, int]] = [
        (where.signing_key(gen), material.signer.private_pem(), PRIVATE),
        (where.tls_key(gen), ca.key_pem(material.tls_key), PRIVATE),
        (where.tls_cert(gen), ca.cert_pem(material.tls_cert), PUBLIC),
        (where.password(gen), material.password + "\n", PRIVATE),
    ]
    for path, data, mode in files:
        write_new(path, data, mode)
    written = [path for path, _, _ in files] + [where.dir]
    return [*written, where.dir.parent] if created else written


def _read(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FleetCorrupt(f"identity {name!r}: cannot read {path}: {exc.strerror}") from None


def signing_key_bytes(fleet: Fleet, identity: Identity, gen: int | None = None) -> bytes:
    return _read(paths(fleet, identity.name).signing_key(identity.gen if gen is None else gen), identity.name)


def tls_files(fleet: Fleet, identity: Identity) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) of the current generation."""
    where = paths(fleet, identity.name)
    return _read(where.tls_key(identity.gen), identity.name), _read(
        where.tls_cert(identity.gen), identity.name
    )


def password(fleet: Fleet, identity: Identity) -> str:
    return _read(paths(fleet, identity.name).password(identity.gen), identity.name).decode().strip()


def key_material(fleet: Fleet, identity: Identity, key: KeyRecord) -> bytes:
    """What a trust store needs of `key`: the Ed25519 public key, or the HMAC secret from its file."""
    if key.public_key is not None:
        return key.public_key
    signer = _hmac_signer(fleet, identity, key.gen)
    return signer.secret


def _hmac_signer(fleet: Fleet, identity: Identity, gen: int) -> HmacSigner:
    data = signing_key_bytes(fleet, identity, gen)
    try:
        signer = signer_from_bytes(identity.name, data)
    except ValueError as exc:
        raise FleetCorrupt(f"identity {identity.name!r}: signing key {gen}: {exc}") from None
    if not isinstance(signer, HmacSigner):
        raise FleetCorrupt(f"identity {identity.name!r}: signing key {gen} is not an HMAC secret")
    return signer


def prune(fleet: Fleet, identity: Identity) -> None:
    """Delete the files of older generations the registry no longer needs (after it committed)."""
    where = paths(fleet, identity.name)
    keep_hmac = {k.gen for k in identity.keys if k.public_key is None}
    try:
        entries = list(os.scandir(where.dir))
    except FileNotFoundError:
        return
    removed = 0
    for entry in entries:
        match = _GEN_FILE.fullmatch(entry.name)
        if match is None:
            continue
        gen = int(match.group(2))
        if gen == identity.gen or (match.group(1) == "signing" and gen in keep_hmac):
            continue
        os.unlink(entry.path)
        removed += 1
    if removed:
        fsync_dir(where.dir)
