"""Identity kinds, the signing roles each kind gets (PROTOCOL 3), names and device targets.

| kind      | signing key roles | algorithm                    |
|-----------|-------------------|------------------------------|
| agent     | agent             | ed25519 (kid = node id)      |
| device    | task              | ed25519 (default) or hmac-sha256 |
| operator  | task, control     | ed25519                      |
| dashboard | (none: it reads)  | ed25519                      |
| gateway   | task, control     | ed25519 (edge-gateway: the fleet's HTTP API) |

A name is the kid of its signing key, the CN of its certificate and its broker username, so it
is unique across all kinds and matches PROTOCOL 1's `[A-Za-z0-9_.:-]{1,64}`; an agent may not be
called by a reserved target name (`all`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from agent.protocol.keys import ALGORITHMS, Alg
from agent.protocol.topics import ID_PATTERN, RESERVED_NODE_IDS, is_valid_id

from .errors import InputError, InvalidName, InvalidTarget

Kind = Literal["agent", "device", "operator", "dashboard", "gateway"]
KINDS: tuple[Kind, ...] = ("agent", "device", "operator", "dashboard", "gateway")
ROLES: dict[Kind, tuple[str, ...]] = {
    "agent": ("agent",),
    "device": ("task",),
    "operator": ("control", "task"),
    "dashboard": (),
    "gateway": ("control", "task"),
}
#: Kinds that sign tasks and control commands for people: agents trust their keys, they trust
#: every agent's.
ISSUERS: tuple[Kind, ...] = ("operator", "gateway")
POOL_TARGET = "pool:"
ALL_TARGET = "all"
MAX_BULK = 100_000


def check_kind(kind: str) -> Kind:
    for known in KINDS:
        if kind == known:
            return known
    raise InputError(f"unknown identity kind {kind!r}; kinds are {', '.join(KINDS)}")


def check_name(name: str, kind: Kind) -> str:
    if not is_valid_id(name):
        raise InvalidName(f"name {name!r} must match {ID_PATTERN} (letters, digits and _ . : -)")
    if kind == "agent" and name in RESERVED_NODE_IDS:
        raise InvalidName(f"an agent cannot be called {name!r}: it is a task target of its own")
    return name


def check_alg(kind: Kind, alg: str | None) -> Alg:
    """The signing algorithm: only devices may choose, and only between PROTOCOL 3's two."""
    if alg is None or alg == "ed25519":
        return "ed25519"
    if kind != "device":
        raise InputError(f"--alg {alg} is for devices only: a {kind} always signs with ed25519")
    if alg == "hmac-sha256":
        return "hmac-sha256"
    raise InputError(f"--alg {alg!r} is not one of {', '.join(ALGORITHMS)}")


def bulk_names(prefix: str, count: int, start: int = 1) -> list[str]:
    """`prefix0001`, `prefix0002`, ...: numbers zero-padded to 4 digits, the same in every batch."""
    if not 1 <= count <= MAX_BULK:
        raise InputError(f"--count {count} must be between 1 and {MAX_BULK}")
    if start < 0:
        raise InputError(f"--start {start} must not be negative")
    return [f"{prefix}{i:04d}" for i in range(start, start + count)]


def check_unique(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"name {name!r} is given twice")
        seen.add(name)


@dataclass(frozen=True)
class Target:
    """One entry of a device's `--targets`: a node id, `all`, or `pool:{pool}`."""

    text: str

    @property
    def pool(self) -> str | None:
        return self.text[len(POOL_TARGET) :] if self.text.startswith(POOL_TARGET) else None

    @property
    def node(self) -> str | None:
        return None if self.pool is not None or self.text == ALL_TARGET else self.text

    def reaches(self, node: str, pools: Iterable[str]) -> bool:
        """Whether a task for this target can land on agent `node` of `pools`."""
        return self.text in (ALL_TARGET, node) or (self.pool is not None and self.pool in set(pools))


def parse_target(text: str) -> Target:
    if text.startswith(POOL_TARGET):
        pool = text[len(POOL_TARGET) :]
        if not is_valid_id(pool):
            raise InvalidTarget(f"target {text!r}: the pool name must match {ID_PATTERN}")
        return Target(text)
    if not is_valid_id(text):
        raise InvalidTarget(
            f"target {text!r} is not a node id, 'all' or 'pool:NAME' (ids match {ID_PATTERN})"
        )
    return Target(text)


def _comma_items(values: Iterable[str]) -> list[str]:
    """`["a,b", "a"]` -> `["a", "b"]`: comma lists split and stripped, repeats dropped, order kept."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            item = part.strip()
            if item not in out:
                out.append(item)
    return out


def parse_targets(values: Iterable[str]) -> tuple[str, ...]:
    """Validate each target of comma-separated lists (repeats dropped)."""
    values = list(values)
    items = _comma_items(values)
    if "" in items:
        raise InvalidTarget(f"empty target in {' '.join(values)!r}")
    return tuple(parse_target(text).text for text in items)


def parse_pools(values: Iterable[str]) -> tuple[str, ...]:
    items = _comma_items(values)
    for pool in items:
        if not is_valid_id(pool):
            raise InvalidName(f"pool {pool!r} must match {ID_PATTERN}")
    return tuple(items)
