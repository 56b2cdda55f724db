"""API clients of edge-gateway (the fleet's HTTP API): names, roles and hashed secrets.

An API client is not an MQTT identity: it has no key, no certificate and no broker login. It is a
web, mobile or third-party application that exchanges its name and secret for a short-lived token
at `POST /api/v1/token`; the gateway then signs tasks with its own key on the client's behalf and
names the client in its audit log.

| role   | may                                                          |
|--------|--------------------------------------------------------------|
| read   | read tasks, nodes and metrics                                |
| submit | read, and submit and cancel its own tasks                    |
| admin  | everything: other clients' tasks, `sys.status`, drain/resume |

The secret is shown once by `edge-provision add api-client` and stored only as a `$7$` hash
(`agent.common.passwords`), in the registry and in the `api-clients.json` of gateway bundles.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import InputError

API_ROLES = ("read", "submit", "admin")
CLIENTS_FILE = "api-clients.json"
FILE_FORMAT = 1
SECRET_BYTES = 32  # 256 bits: see agent.common.passwords on why the hash is not stretched further


def parse_roles(values: Iterable[str]) -> tuple[str, ...]:
    """`["read,submit"]` -> ("read", "submit"), in API_ROLES order; unknown roles refused by name."""
    roles = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(roles - set(API_ROLES))
    if unknown:
        raise InputError(f"unknown API role(s) {', '.join(unknown)}; roles are {', '.join(API_ROLES)}")
    if not roles:
        raise InputError(f"give --roles, some of {', '.join(API_ROLES)}")
    return tuple(r for r in API_ROLES if r in roles)


@dataclass(frozen=True)
class ApiClient:
    name: str
    roles: tuple[str, ...]
    secret_hash: str
    created_at: float
    updated_at: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_doc(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "roles": list(self.roles)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ApiClient:
        return cls(
            name=str(doc["name"]),
            roles=tuple(doc["roles"]),
            secret_hash=str(doc["secret_hash"]),
            created_at=float(doc["created_at"]),
            updated_at=float(doc.get("updated_at", doc["created_at"])),
            revoked_at=None if doc.get("revoked_at") is None else float(doc["revoked_at"]),
        )

    def with_changes(self, **changes: Any) -> ApiClient:
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "api-client",
            "roles": list(self.roles),
            "status": "revoked" if self.revoked else "active",
            "created_at": self.created_at,
        }


def clients_file(clients: Iterable[ApiClient]) -> str:
    """`api-clients.json` of a gateway bundle: every client, revoked ones marked (the gateway
    refuses their tokens with a reason instead of not knowing them)."""
    entries = [
        {"name": c.name, "roles": list(c.roles), "secret_hash": c.secret_hash, "revoked": c.revoked}
        for c in sorted(clients, key=lambda c: c.name)
    ]
    return json.dumps({"format": FILE_FORMAT, "clients": entries}, indent=1) + "\n"
