"""A client's configuration: the bundle file of an operator, dashboard or device, then `EDGE_*`
variables, then command-line flags (later layers win).

    config = load_client_config("op-1/operator.toml", environ=os.environ, flags={"mqtt.port": "1883"})

The file is the one `edge-provision bundle` writes (`[operator]`/`[dashboard]`/`[device]` with
`name`, `[mqtt]`, `[security]` with `kid`, `alg`, `signing_key`, `trust_store`), plus optional
`[submit]` and `[watch]` sections for the tools' defaults. `[mqtt]` has exactly the agent's keys
and checks (`agent.common.sections`), so `EDGE_MQTT_PORT` means the same to every program. Relative paths
are relative to the file (to the working directory for variables and flags). Without a file,
variables and flags alone can configure a client. `EDGE_SECURITY_*` keys of the agent's that a
client has no use for (`clock_skew_s`, ...) are left alone, so one shell can hold both programs'
variables. The project's one settings loader (`agent.common.settings`) reads and checks the values;
this module declares the sections and reads the identity.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.common.errors import ConfigError
from agent.common.sections import MqttSection, SecuritySection, check_mqtt
from agent.common.settings import (
    INTERNAL,
    EnvNames,
    Layer,
    build,
    env_layer,
    env_name,
    limit,
    nest,
    read_toml,
)
from agent.protocol import Signer, TopicError, Topics, TrustStore, TrustStoreError, load_signer

#: The identity sections a bundle file may have; the tools read `name` and ignore the rest.
ROLE_SECTIONS = ("operator", "dashboard", "device")


@dataclass(frozen=True)
class ClientSecurity:
    kid: str | None = None  # default: the identity's name
    alg: str | None = None  # informational (load_signer reads the key file's own format)
    signing_key: Path | None = None
    trust_store: Path | None = None


@dataclass(frozen=True)
class SubmitSection:
    node: str | None = None  # default target of edge-submit
    ttl_s: float = field(default=3600.0, metadata=limit(above=0))
    wait_timeout_s: float = field(default=60.0, metadata=limit(above=0))
    reply: bool | None = None  # ask for `reply` and wait on {p}/replies/...; None: yes for a device


@dataclass(frozen=True)
class WatchSection:
    format: Literal["auto", "table", "lines", "json"] = "auto"
    last: int = field(default=10, metadata=limit(1, 1000))  # results shown in the table
    refresh_s: float = field(default=1.0, metadata=limit(above=0))
    stale_s: float = field(default=35.0, metadata=limit(above=0))  # heartbeat age shown as stale


@dataclass(frozen=True)
class ClientConfig:
    role: str | None = field(metadata=INTERNAL)  # operator, dashboard, device; None without a file
    name: str | None = field(metadata=INTERNAL)
    mqtt: MqttSection
    security: ClientSecurity
    submit: SubmitSection
    watch: WatchSection
    source: Path | None = field(default=None, metadata=INTERNAL)

    @property
    def topics(self) -> Topics:
        return Topics(self.mqtt.prefix)

    @property
    def kid(self) -> str | None:
        return self.security.kid or self.name

    def client_id(self, tool: str) -> str:
        """A fresh client id per run (two tools of one operator must not take over each other)."""
        if self.mqtt.client_id:
            return self.mqtt.client_id
        return f"{self.mqtt.username or self.kid or 'edge'}-{tool}-{uuid.uuid4().hex[:8]}"

    def signer(self) -> Signer:
        path = self.security.signing_key
        if path is None:
            raise ConfigError(
                "security.signing_key",
                "no signing key: pass --config with an operator or device bundle file, or --signing-key"
                " (EDGE_SECURITY_SIGNING_KEY) with --kid",
            )
        kid = self.kid
        if kid is None:
            raise ConfigError("security.kid", "unknown: set it (--kid, EDGE_SECURITY_KID)")
        try:
            return load_signer(path, kid=kid)
        except (OSError, ValueError) as exc:
            raise ConfigError("security.signing_key", f"cannot load {path}: {exc}") from None

    def trust(self) -> TrustStore:
        path = self.security.trust_store
        if path is None:
            raise ConfigError(
                "security.trust_store",
                "no trust store to verify what agents sign: pass --config with an operator or dashboard"
                " bundle file, or --trust-store (EDGE_SECURITY_TRUST_STORE)",
            )
        try:
            return TrustStore.load(path)
        except (TrustStoreError, OSError) as exc:
            raise ConfigError("security.trust_store", str(exc)) from None


SECTIONS = ("mqtt", "security", "submit", "watch")
#: The agent's keys of `[security]` that a client has no use for: left alone in the environment, so
#: one shell can hold the variables of an agent and of the tools.
_AGENT_ONLY = {f.name for f in dataclasses.fields(SecuritySection)} - {
    f.name for f in dataclasses.fields(ClientSecurity)
}
ENV = EnvNames("EDGE_", ignore=frozenset(env_name("EDGE_", f"security.{key}") for key in _AGENT_ONLY))


def _identity(doc: dict[str, Any], path: Path) -> tuple[str | None, str | None]:
    roles = [r for r in ROLE_SECTIONS if r in doc]
    if "agent" in doc:
        raise ConfigError(
            "config",
            f"{path} is an agent's configuration; the tools take an operator, dashboard or device bundle"
            " file (edge-provision add operator NAME && edge-provision bundle NAME)",
        )
    unknown = sorted(set(doc) - set(SECTIONS) - set(ROLE_SECTIONS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown section in {path}")
    if len(roles) > 1:
        raise ConfigError("config", f"{path} has sections {roles}; one identity per file")
    if not roles:
        return None, None
    head = doc[roles[0]]
    name = head.get("name") if isinstance(head, dict) else None
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{roles[0]}.name", "must be a string")
    return roles[0], name


def load_client_config(
    path: str | os.PathLike[str] | None,
    *,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> ClientConfig:
    """The configuration from `path` (or none), the environment and `flags` ({"mqtt.port": "1883"})."""
    source = Path(path).resolve() if path is not None else None
    doc = read_toml(source) if source is not None else {}
    role, name = _identity(doc, source) if source is not None else (None, None)
    layers = [
        Layer({k: v for k, v in doc.items() if k in SECTIONS}, base=source.parent if source else None),
        env_layer(ClientConfig, os.environ if environ is None else environ, ENV, base=Path.cwd()),
        Layer(nest(flags or {}), base=Path.cwd(), text=True),
    ]
    config = build(ClientConfig, layers, role=role, name=name, source=source)
    _validate(config)
    return config


def _validate(config: ClientConfig) -> None:
    try:
        Topics(config.mqtt.prefix)
    except TopicError as exc:
        raise ConfigError("mqtt.prefix", str(exc)) from None
    check_mqtt(config.mqtt)
