"""The trust store: which keys may sign what, and until when (PROTOCOL 3).

File format (TOML, written by `edge-provision bundle`), one `[[keys]]` table per key:

    format = 1
    [[keys]]
    kid = "sensor-7"
    alg = "ed25519"                 # or "hmac-sha256"
    public_key = "<base64, 32 bytes>"  # ed25519; an hmac key has `secret` instead
    roles = ["task"]                # subset of task, control, agent
    not_before = 2026-11-27T00:00:00Z   # optional; a TOML datetime or epoch seconds
    not_after = 2027-11-27T00:00:00Z    # optional
    revoked = false                 # optional

Several entries may share a `kid`: that is how a rotated key overlaps its successor (the
old entry's `not_after` ends the overlap). Parsed keys are cached: verification never
re-parses key material.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..common import tomlio
from ..common.fileio import PRIVATE, PUBLIC, write_atomic
from .errors import AuthenticationError, TrustStoreError
from .keys import ALGORITHMS, Alg, Ed25519Verifier, HmacVerifier, Verifier

FORMAT_VERSION = 1
MAX_KID_LENGTH = 128
ROLES = frozenset({"task", "control", "agent"})
_KNOWN_FIELDS = {
    "kid",
    "alg",
    "public_key",
    "secret",
    "roles",
    "not_before",
    "not_after",
    "revoked",
    "comment",
}


@dataclass(frozen=True)
class TrustedKey:
    """One entry of the trust store; `material` is the Ed25519 public key or the HMAC secret."""

    kid: str
    alg: Alg
    material: bytes = field(repr=False)
    roles: frozenset[str]
    not_before: float | None = None
    not_after: float | None = None
    revoked: bool = False
    comment: str | None = None

    @cached_property
    def verifier(self) -> Verifier:
        if self.alg == "ed25519":
            return Ed25519Verifier.from_raw(self.material)
        return HmacVerifier(self.material)

    def valid_at(self, now: float) -> bool:
        if self.not_before is not None and now < self.not_before:
            return False
        return not (self.not_after is not None and now > self.not_after)

    def to_toml(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"kid": self.kid, "alg": self.alg}
        key_field = "public_key" if self.alg == "ed25519" else "secret"
        entry[key_field] = base64.b64encode(self.material).decode()
        entry["roles"] = sorted(self.roles)
        if self.not_before is not None:
            entry["not_before"] = _to_datetime(self.not_before)
        if self.not_after is not None:
            entry["not_after"] = _to_datetime(self.not_after)
        if self.revoked:
            entry["revoked"] = True
        if self.comment:
            entry["comment"] = self.comment
        return entry


def _to_datetime(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)


def _epoch(value: object, name: str, index: int, path: str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise TrustStoreError(
                "datetime needs a UTC offset (end it with Z)", path=path, entry=index, field=name
            )
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise TrustStoreError("must be a TOML datetime or epoch seconds", path=path, entry=index, field=name)


def _key_material(raw: Mapping[str, Any], alg: str, fail: Callable[[str, str], TrustStoreError]) -> bytes:
    key_field, other = ("public_key", "secret") if alg == "ed25519" else ("secret", "public_key")
    if other in raw:
        raise fail(f"an {alg} key has '{key_field}', not '{other}'", other)
    encoded = raw.get(key_field)
    if not isinstance(encoded, str):
        raise fail("missing (base64 string)", key_field)
    try:
        material = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise fail("is not valid base64", key_field) from None
    if alg == "ed25519":
        if len(material) != 32:
            raise fail(f"an Ed25519 public key is 32 bytes, got {len(material)}", key_field)
        try:
            Ed25519Verifier.from_raw(material)
        except ValueError as exc:
            raise fail(f"is not an Ed25519 public key: {exc}", key_field) from None
    elif len(material) < 16:
        raise fail(f"an HMAC secret needs at least 16 bytes, got {len(material)}", key_field)
    return material


def _roles(raw: Mapping[str, Any], fail: Callable[[str, str], TrustStoreError]) -> frozenset[str]:
    roles = raw.get("roles")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise fail("must be a list of role names", "roles")
    if set(roles) - ROLES:
        raise fail(f"unknown role(s) {sorted(set(roles) - ROLES)}; roles are {sorted(ROLES)}", "roles")
    if not roles:
        raise fail(f"needs at least one of {sorted(ROLES)}", "roles")
    return frozenset(roles)


def parse_entry(raw: Mapping[str, Any], index: int, path: str | None = None) -> TrustedKey:
    """Validate one `[[keys]]` table; errors name the entry and the field."""

    def fail(msg: str, name: str) -> TrustStoreError:
        return TrustStoreError(msg, path=path, entry=index, field=name)

    unknown = set(raw) - _KNOWN_FIELDS
    if unknown:
        raise fail(f"unknown field(s) {', '.join(sorted(unknown))}", sorted(unknown)[0])
    kid = raw.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
        raise fail(f"must be a non-empty string of at most {MAX_KID_LENGTH} characters", "kid")
    alg = raw.get("alg")
    if alg not in ALGORITHMS:
        raise fail(f"must be one of {', '.join(ALGORITHMS)}", "alg")
    revoked = raw.get("revoked", False)
    if not isinstance(revoked, bool):
        raise fail("must be true or false", "revoked")
    comment = raw.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise fail("must be a string", "comment")
    not_before = _epoch(raw.get("not_before"), "not_before", index, path)
    not_after = _epoch(raw.get("not_after"), "not_after", index, path)
    if not_before is not None and not_after is not None and not_after < not_before:
        raise fail("is before not_before: the key would never be valid", "not_after")
    return TrustedKey(
        kid=kid,
        alg=alg,
        material=_key_material(raw, alg, fail),
        roles=_roles(raw, fail),
        not_before=not_before,
        not_after=not_after,
        revoked=revoked,
        comment=comment,
    )


class TrustStore:
    """Keys by kid, with the check-2 lookup of PROTOCOL 4; thread-safe reload."""

    def __init__(
        self, keys: Iterable[TrustedKey] = (), *, path: str | os.PathLike[str] | None = None
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._by_kid: dict[str, tuple[TrustedKey, ...]] = self._index(keys)

    @staticmethod
    def _index(keys: Iterable[TrustedKey]) -> dict[str, tuple[TrustedKey, ...]]:
        by_kid: dict[str, list[TrustedKey]] = {}
        for key in keys:
            by_kid.setdefault(key.kid, []).append(key)
        # Newest first, so that during a rotation the new key is tried before the old one.
        return {
            kid: tuple(sorted(entries, key=lambda k: k.not_before or 0.0, reverse=True))
            for kid, entries in by_kid.items()
        }

    # -- loading ------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustStore:
        return cls(cls._read(Path(path)), path=path)

    @classmethod
    def loads(cls, text: str, *, source: str | None = None) -> TrustStore:
        return cls(cls._parse(text, source))

    @staticmethod
    def _read(path: Path) -> list[TrustedKey]:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TrustStoreError(f"cannot read: {exc.strerror}", path=str(path)) from exc
        return TrustStore._parse(text, str(path))

    @staticmethod
    def _parse(text: str, source: str | None) -> list[TrustedKey]:
        try:
            doc = tomlio.loads(text)
        except tomlio.TOMLDecodeError as exc:
            raise TrustStoreError(f"not valid TOML: {exc}", path=source) from exc
        unknown = sorted(set(doc) - {"format", "keys"})
        if unknown:
            raise TrustStoreError(
                f"unknown top-level field(s) {', '.join(unknown)}", path=source, field=unknown[0]
            )
        fmt = doc.get("format", FORMAT_VERSION)
        if type(fmt) is not int or fmt != FORMAT_VERSION:
            raise TrustStoreError(
                f"format {fmt!r} is not supported (expected {FORMAT_VERSION})", path=source, field="format"
            )
        raw_keys = doc.get("keys", [])
        if not isinstance(raw_keys, list) or not all(isinstance(k, dict) for k in raw_keys):
            raise TrustStoreError("'keys' must be an array of tables ([[keys]])", path=source, field="keys")
        return [parse_entry(raw, i + 1, source) for i, raw in enumerate(raw_keys)]

    def reload(self) -> None:
        """Re-read the file; on any error the store keeps its current keys and the error is raised."""
        if self.path is None:
            raise TrustStoreError("this trust store was not loaded from a file")
        keys = self._read(self.path)
        # Keep the already-parsed objects of unchanged entries (and their cached verifiers).
        current = {k: k for k in self.keys()}
        merged = [current.get(k, k) for k in keys]
        index = self._index(merged)
        with self._lock:
            self._by_kid = index

    # -- saving -------------------------------------------------------------
    def dumps(self) -> str:
        return dump_keys(self.keys())

    def save(self, path: str | os.PathLike[str]) -> None:
        write_trust_store(path, self.keys())

    # -- lookup -------------------------------------------------------------
    def keys(self) -> list[TrustedKey]:
        return [k for entries in self._by_kid.values() for k in entries]

    def entries(self, kid: str) -> tuple[TrustedKey, ...]:
        return self._by_kid.get(kid, ())

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_kid.values())

    def resolve(self, kid: str, role: str, now: float) -> tuple[TrustedKey, ...]:
        """Check 2 of PROTOCOL 4: the usable keys of `kid` for `role` at `now`, or an error.

        In the protocol's order: known, not revoked, within its validity window, with the role.
        """
        entries = self._by_kid.get(kid)
        if not entries:
            shown = kid if len(kid) <= MAX_KID_LENGTH else None
            raise AuthenticationError(f"unknown key {kid[:MAX_KID_LENGTH]!r}", code="unknown_key", kid=shown)
        if len(entries) == 1:  # the common case, without building lists
            key = entries[0]
            if not key.revoked and key.valid_at(now) and role in key.roles:
                return entries
        live = [k for k in entries if not k.revoked]
        if not live:
            raise AuthenticationError(f"key {kid!r} is revoked", code="revoked_key", kid=kid)
        valid = [k for k in live if k.valid_at(now)]
        if not valid:
            raise AuthenticationError(
                f"key {kid!r} is outside its validity window", code="revoked_key", kid=kid
            )
        usable = tuple(k for k in valid if role in k.roles)
        if not usable:
            raise AuthenticationError(f"key {kid!r} lacks the role {role!r}", code="wrong_role", kid=kid)
        return usable


def dump_keys(keys: Iterable[TrustedKey]) -> str:
    header = "# Edge trust store (PROTOCOL 3). Written by edge-provision; see agent/README.md.\n"
    return header + tomlio.dumps({"format": FORMAT_VERSION, "keys": [k.to_toml() for k in keys]})


def write_trust_store(path: str | os.PathLike[str], keys: Iterable[TrustedKey]) -> None:
    """Write atomically; 0600 when it holds an HMAC secret, 0644 otherwise."""
    keys = list(keys)
    mode = PRIVATE if any(k.alg == "hmac-sha256" for k in keys) else PUBLIC
    write_atomic(path, dump_keys(keys), mode)
