"""What the registry remembers about an identity: never a private key, never a password.

An identity has a *generation* `gen`, raised by `rotate` (and by `add --force`); the files of
each generation carry its number (see material.py), so a rotation that dies half-way leaves the
previous generation intact. Its signing keys are kept as a list: the current one and the older
ones still listed in trust stores (rotation overlap, revocation).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from agent.protocol.keys import Alg
from agent.protocol.truststore import TrustedKey

from .errors import FleetCorrupt
from .identities import Kind, check_kind


@dataclass(frozen=True)
class KeyRecord:
    """One signing key of an identity. `public_key` is None for HMAC (its secret stays in a key file)."""

    gen: int
    alg: Alg
    roles: tuple[str, ...]
    created_at: float
    fingerprint: str
    public_key: bytes | None = field(default=None, repr=False)
    not_before: float | None = None
    not_after: float | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "gen": self.gen,
            "alg": self.alg,
            "roles": list(self.roles),
            "created_at": self.created_at,
            "fingerprint": self.fingerprint,
            "public_key": None if self.public_key is None else base64.b64encode(self.public_key).decode(),
            "not_before": self.not_before,
            "not_after": self.not_after,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> KeyRecord:
        public = doc.get("public_key")
        return cls(
            gen=int(doc["gen"]),
            alg=doc["alg"],
            roles=tuple(doc["roles"]),
            created_at=float(doc["created_at"]),
            fingerprint=str(doc["fingerprint"]),
            public_key=None if public is None else base64.b64decode(public),
            not_before=doc.get("not_before"),
            not_after=doc.get("not_after"),
        )

    def trusted(self, kid: str, material: bytes, *, revoked: bool) -> TrustedKey:
        """This key as a trust store entry (`material`: the public key or the HMAC secret)."""
        return TrustedKey(
            kid=kid,
            alg=self.alg,
            material=material,
            roles=frozenset(self.roles),
            not_before=self.not_before,
            not_after=self.not_after,
            revoked=revoked,
            comment=f"generation {self.gen}",
        )


def key_fingerprint(material: bytes) -> str:
    """`sha256:` and 16 hex digits: enough to tell keys apart, never the key itself."""
    return "sha256:" + hashlib.sha256(material).hexdigest()[:16]


@dataclass(frozen=True)
class CertRecord:
    gen: int
    serial: str
    not_before: float
    not_after: float
    fingerprint: str
    alg: str

    def to_doc(self) -> dict[str, Any]:
        return {
            "gen": self.gen,
            "serial": self.serial,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "fingerprint": self.fingerprint,
            "alg": self.alg,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> CertRecord:
        return cls(**{k: doc[k] for k in ("gen", "serial", "not_before", "not_after", "fingerprint", "alg")})


@dataclass(frozen=True)
class Identity:
    name: str
    kind: Kind
    gen: int
    created_at: float
    updated_at: float
    keys: tuple[KeyRecord, ...]
    cert: CertRecord
    password_hash: str = field(repr=False)
    pools: tuple[str, ...] = ()  # agents only
    targets: tuple[str, ...] | None = None  # devices only; None = every task topic
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def current_key(self) -> KeyRecord:
        for key in self.keys:
            if key.gen == self.gen:
                return key
        raise FleetCorrupt(f"identity {self.name!r} has no signing key of generation {self.gen}")

    def with_changes(self, **changes: Any) -> Identity:
        return replace(self, **changes)

    def to_doc(self) -> dict[str, Any]:
        """Every field, always: registry updates replace documents field by field."""
        return {
            "name": self.name,
            "kind": self.kind,
            "gen": self.gen,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "keys": [k.to_doc() for k in self.keys],
            "cert": self.cert.to_doc(),
            "password_hash": self.password_hash,
            "pools": list(self.pools),
            "targets": None if self.targets is None else list(self.targets),
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Identity:
        try:
            targets = doc.get("targets")
            return cls(
                name=str(doc["name"]),
                kind=check_kind(str(doc["kind"])),
                gen=int(doc["gen"]),
                created_at=float(doc["created_at"]),
                updated_at=float(doc["updated_at"]),
                keys=tuple(KeyRecord.from_doc(k) for k in doc["keys"]),
                cert=CertRecord.from_doc(doc["cert"]),
                password_hash=str(doc["password_hash"]),
                pools=tuple(doc.get("pools") or ()),
                targets=None if targets is None else tuple(targets),
                revoked_at=doc.get("revoked_at"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            name = doc.get("name", "?") if isinstance(doc, dict) else "?"
            raise FleetCorrupt(f"registry entry {name!r} is damaged: {exc!r}") from None

    def summary(self) -> dict[str, Any]:
        """What `list` and `show` print: public facts only (no hash, no key material)."""
        key = self.current_key
        return {
            "name": self.name,
            "kind": self.kind,
            "status": "revoked" if self.revoked else "active",
            "generation": self.gen,
            "alg": key.alg,
            "roles": list(key.roles),
            "key_fingerprint": key.fingerprint,
            "pools": list(self.pools),
            "targets": None if self.targets is None else list(self.targets),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revoked_at": self.revoked_at,
        }
