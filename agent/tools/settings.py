"""A client's configuration: the bundle file of an operator, dashboard or device, then `EDGE_*`
variables, then command-line flags (later layers win).

    config = load_client_config("op-1/operator.toml", environ=os.environ, flags={"mqtt.port": "1883"})

The file is the one `edge-provision bundle` writes (`[operator]`/`[dashboard]`/`[device]` with
`name`, `[mqtt]`, `[security]` with `kid`, `alg`, `signing_key`, `trust_store`), plus optional
`[submit]` and `[watch]` sections for the tools' defaults. `[mqtt]` has exactly the agent's keys
and checks (agent/node/config.py), so `EDGE_MQTT_PORT` means the same to every program. Relative paths
are relative to the file (to the working directory for variables and flags). Without a file,
variables and flags alone can configure a client.
"""

from __future__ import annotations

import dataclasses
import os
import typing
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.common import tomlio
from agent.node.config import MqttSection, SecuritySection, _check_range, _convert
from agent.node.errors import ConfigError
from agent.protocol import Signer, TopicError, Topics, TrustStore, TrustStoreError, load_signer

from .errors import ClientConfigError

ENV_PREFIX = "EDGE_"
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
    ttl_s: float = field(default=3600.0, metadata={"above": 0})
    wait_timeout_s: float = field(default=60.0, metadata={"above": 0})


@dataclass(frozen=True)
class WatchSection:
    format: Literal["auto", "table", "lines", "json"] = "auto"
    last: int = field(default=10, metadata={"lo": 1, "hi": 1000})  # results shown in the table
    refresh_s: float = field(default=1.0, metadata={"above": 0})
    stale_s: float = field(default=35.0, metadata={"above": 0})  # heartbeat age shown as stale


SECTIONS: dict[str, type] = {
    "mqtt": MqttSection,
    "security": ClientSecurity,
    "submit": SubmitSection,
    "watch": WatchSection,
}
#: Keys of the agent's [security] a client has no use for: ignored in the environment, so one
#: shell can hold the variables of an agent and of the tools.
_AGENT_ONLY = {"security": {f.name for f in dataclasses.fields(SecuritySection)}}


@dataclass(frozen=True)
class ClientConfig:
    role: str | None  # operator, dashboard, device; None without a file
    name: str | None
    mqtt: MqttSection
    security: ClientSecurity
    submit: SubmitSection
    watch: WatchSection
    source: Path | None = None

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
            raise ClientConfigError(
                "security.signing_key",
                "no signing key: pass --config with an operator or device bundle file, or --signing-key"
                " (EDGE_SECURITY_SIGNING_KEY) with --kid",
            )
        kid = self.kid
        if kid is None:
            raise ClientConfigError("security.kid", "unknown: set it (--kid, EDGE_SECURITY_KID)")
        try:
            return load_signer(path, kid=kid)
        except (OSError, ValueError) as exc:
            raise ClientConfigError("security.signing_key", f"cannot load {path}: {exc}") from None

    def trust(self) -> TrustStore:
        path = self.security.trust_store
        if path is None:
            raise ClientConfigError(
                "security.trust_store",
                "no trust store to verify what agents sign: pass --config with an operator or dashboard"
                " bundle file, or --trust-store (EDGE_SECURITY_TRUST_STORE)",
            )
        try:
            return TrustStore.load(path)
        except (TrustStoreError, OSError) as exc:
            raise ClientConfigError("security.trust_store", str(exc)) from None


def _section(name: str, layers: list[tuple[Mapping[str, Any], Path | None, bool]]) -> Any:
    """Section `name` from (values, base directory, from_env) layers; errors name the key."""
    cls = SECTIONS[name]
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, object] = {}
    for raw, base, from_env in layers:
        for key, value in raw.items():
            if key not in known:
                raise ClientConfigError(
                    f"{name}.{key}", f"unknown setting (known: {', '.join(sorted(known))})"
                )
            try:
                values[key] = _convert(f"{name}.{key}", hints[key], value, base, from_env)
            except ConfigError as exc:
                raise ClientConfigError(exc.key, str(exc).split(": ", 1)[1]) from None
    for key, value in values.items():
        meta = known[key].metadata
        if isinstance(value, (int, float)) and not isinstance(value, bool) and meta:
            try:
                _check_range(f"{name}.{key}", value, meta)
            except ConfigError as exc:
                raise ClientConfigError(exc.key, str(exc).split(": ", 1)[1]) from None
    return cls(**values)


def _environment(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        section, _, key = var[len(ENV_PREFIX) :].lower().partition("_")
        if section not in SECTIONS or not key or key in _AGENT_ONLY.get(section, ()):
            continue
        found.setdefault(section, {})[key] = value
    return found


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClientConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    try:
        return tomlio.loads(text)
    except tomlio.TOMLDecodeError as exc:
        raise ClientConfigError("config", f"{path} is not valid TOML: {exc}") from None


def _identity(doc: dict[str, Any], path: Path) -> tuple[str | None, str | None]:
    roles = [r for r in ROLE_SECTIONS if r in doc]
    if "agent" in doc:
        raise ClientConfigError(
            "config",
            f"{path} is an agent's configuration; the tools take an operator, dashboard or device bundle"
            " file (edge-provision add operator NAME && edge-provision bundle NAME)",
        )
    unknown = sorted(set(doc) - set(SECTIONS) - set(ROLE_SECTIONS))
    if unknown:
        raise ClientConfigError(unknown[0], f"unknown section in {path}")
    if len(roles) > 1:
        raise ClientConfigError("config", f"{path} has sections {roles}; one identity per file")
    if not roles:
        return None, None
    head = doc[roles[0]]
    name = head.get("name") if isinstance(head, dict) else None
    if name is not None and not isinstance(name, str):
        raise ClientConfigError(f"{roles[0]}.name", "must be a string")
    return roles[0], name


def load_client_config(
    path: str | os.PathLike[str] | None,
    *,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> ClientConfig:
    """The configuration from `path` (or none), the environment and `flags` ({"mqtt.port": "1883"})."""
    source = Path(path).resolve() if path is not None else None
    doc = _read_file(source) if source is not None else {}
    role, name = _identity(doc, source) if source is not None else (None, None)
    env = _environment(os.environ if environ is None else environ)
    by_flag: dict[str, dict[str, str]] = {}
    for dotted, value in (flags or {}).items():
        section, key = dotted.split(".", 1)
        by_flag.setdefault(section, {})[key] = value
    sections = {}
    for sname in SECTIONS:
        raw = doc.get(sname, {})
        if not isinstance(raw, Mapping):
            raise ClientConfigError(sname, "must be a table")
        base = source.parent if source is not None else None
        layers = [(raw, base, False), (env.get(sname, {}), Path.cwd(), True)]
        layers.append((by_flag.get(sname, {}), Path.cwd(), True))
        sections[sname] = _section(sname, layers)
    config = ClientConfig(role, name, source=source, **sections)
    _validate(config)
    return config


def _validate(config: ClientConfig) -> None:
    try:
        Topics(config.mqtt.prefix)
    except TopicError as exc:
        raise ClientConfigError("mqtt.prefix", str(exc)) from None
    if config.mqtt.tls and config.mqtt.ca_file is None:
        raise ClientConfigError("mqtt.ca_file", "is required when mqtt.tls is true")
    if (config.mqtt.cert_file is None) != (config.mqtt.key_file is None):
        raise ClientConfigError("mqtt.key_file", "mqtt.cert_file and mqtt.key_file go together")
