"""The API clients a gateway admits: `api-clients.json` of its bundle (provisioning/apiclients.py).

    clients = ApiClients.load(path)
    client = clients.authenticate("webapp", secret)     # TokenRefused("invalid_client") otherwise
    clients.active("webapp")                            # None once revoked (tokens then refused)

Loaded whole and replaced whole (SIGHUP): readers on any thread see one file or the other. An
unknown name costs the same hash as a known one, so timing tells nothing about which names exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.common.errors import ConfigError
from agent.common.passwords import DUMMY, PasswordHash

from .errors import TokenRefused

ROLES = ("read", "submit", "admin")
FORMAT = 1


@dataclass(frozen=True)
class ApiClient:
    name: str
    roles: frozenset[str]
    secret: PasswordHash
    revoked: bool = False

    def may(self, role: str) -> bool:
        """`admin` may everything, `submit` also reads."""
        return role in self.roles or "admin" in self.roles or (role == "read" and "submit" in self.roles)


@dataclass(frozen=True)
class ApiClients:
    by_name: dict[str, ApiClient]
    source: str = "<memory>"

    @classmethod
    def load(cls, path: Path) -> ApiClients:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError("auth.api_clients", f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError("auth.api_clients", f"{path} is not JSON: {exc}") from None
        return cls.parse(doc, str(path))

    @classmethod
    def parse(cls, doc: Any, source: str = "<memory>") -> ApiClients:
        if (
            not isinstance(doc, dict)
            or doc.get("format") != FORMAT
            or not isinstance(doc.get("clients"), list)
        ):
            raise ConfigError("auth.api_clients", f"{source}: not an api-clients.json of format {FORMAT}")
        clients: dict[str, ApiClient] = {}
        for n, entry in enumerate(doc["clients"]):
            client = _client(entry, f"{source}: clients[{n}]")
            clients[client.name] = client
        return cls(clients, source)

    def authenticate(self, name: str, secret: str) -> ApiClient:
        """The client whose name and secret these are; `invalid_client` (RFC 6749) otherwise,
        with the same message whether the name or the secret was wrong."""
        client = self.by_name.get(name)
        if client is None:
            DUMMY.verify(secret)
        elif client.secret.verify(secret):
            if client.revoked:
                raise TokenRefused("revoked_client", f"API client {name!r} is revoked")
            return client
        raise TokenRefused("invalid_client", "unknown API client or wrong secret")

    def active(self, name: str) -> ApiClient | None:
        client = self.by_name.get(name)
        return None if client is None or client.revoked else client


def _client(entry: Any, where: str) -> ApiClient:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ConfigError("auth.api_clients", f"{where}: needs a name")
    roles = entry.get("roles")
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
        raise ConfigError("auth.api_clients", f"{where}: roles must be some of {', '.join(ROLES)}")
    try:
        secret = PasswordHash.parse(str(entry.get("secret_hash")))
    except ValueError as exc:
        raise ConfigError("auth.api_clients", f"{where}: secret_hash: {exc}") from None
    return ApiClient(entry["name"], frozenset(roles), secret, bool(entry.get("revoked", False)))
