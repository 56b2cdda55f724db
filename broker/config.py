"""The broker's configuration: one typed, validated object from TOML, `EDGE_BROKER_*` and flags.

Layers, later ones winning: defaults; `broker.toml` in the fleet files directory (written by
`edge-provision broker-files --format amqtt`); the `--config` TOML file; environment variables;
command-line flags. Every key has an environment variable named after its path:
`listeners.tcp.port` is `EDGE_BROKER_LISTENERS_TCP_PORT`, `fleet_files` is `EDGE_BROKER_FLEET_FILES`.

Every problem is reported as a `ConfigError` naming the key, before anything starts. Reading,
converting, range checks (field metadata) and unknown keys are the project's one settings loader
(`agent.common.settings`); this module declares the settings, finds the fleet files and checks
what relates values to each other and to the files they name.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.common.settings import EnvNames, Layer, build, env_layer, limit, nest, read_toml
from agent.protocol.errors import TopicError
from agent.protocol.topics import DEFAULT_PREFIX, Topics

from .credentials import AclTable, PasswordFile
from .errors import ConfigError, CredentialsError

ENV_PREFIX = "EDGE_BROKER_"
ENV = EnvNames(ENV_PREFIX, owns_prefix=True, listed_in="`edge-broker --help` and broker/README.md list them")
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class ListenerSettings:
    """One listener; TLS when `certfile`/`keyfile` are set, mutual TLS with `require_certificate`."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata=limit(0, 65535))  # 0: a free one
    max_connections: int = field(default=0, metadata=limit(0))  # 0: no limit
    certfile: Path | None = None
    keyfile: Path | None = None
    cafile: Path | None = None
    require_certificate: bool = False
    crlfile: Path | None = None

    @property
    def tls(self) -> bool:
        return self.certfile is not None


def _tcp() -> ListenerSettings:
    return ListenerSettings()


def _tls() -> ListenerSettings:
    return ListenerSettings(enabled=False, port=8883, require_certificate=True)


def _ws() -> ListenerSettings:
    return ListenerSettings(enabled=False, port=9001)


@dataclass(frozen=True)
class Listeners:
    tcp: ListenerSettings = field(default_factory=_tcp)
    tls: ListenerSettings = field(default_factory=_tls)
    ws: ListenerSettings = field(default_factory=_ws)


@dataclass(frozen=True)
class AuthSettings:
    password_file: Path | None = None
    acl_file: Path | None = None
    allow_anonymous: bool = False


@dataclass(frozen=True)
class LimitSettings:
    #: PROTOCOL's 1 MiB payload plus topic and headers
    max_packet_size: int = field(default=1024 * 1024 + 65536, metadata=limit(1024))
    #: per client, QoS 1/2, beyond the in-flight window
    max_queued_messages: int = field(default=1000, metadata=limit(0))
    max_queued_bytes: int = 64 * 1024 * 1024  # per client: topic and payload bytes of that queue
    #: per client, unacknowledged QoS 1/2 deliveries
    max_inflight_messages: int = field(default=20, metadata=limit(1, 65535))
    #: retained messages kept; also what a wildcard subscribe scans
    max_retained_messages: int = field(default=10_000, metadata=limit(0))
    max_retained_bytes: int = 64 * 1024 * 1024  # their topic and payload bytes
    connect_timeout_s: float = field(default=10.0, metadata=limit(above=0))  # TCP accept to a whole CONNECT
    #: open connections, every listener together; 0: no limit
    max_connections: int = field(default=1000, metadata=limit(0))
    #: a disconnected persistent session of a non-agent; 0: never
    session_expiry_s: int = field(default=86_400, metadata=limit(0))
    #: the same for agents (acl.toml role = "agent"); 0: never
    agent_session_expiry_s: int = field(default=0, metadata=limit(0))


@dataclass(frozen=True)
class ProtocolSettings:
    """What the broker knows of the edge protocol (PROTOCOL 1)."""

    prefix: str = DEFAULT_PREFIX  # retained publishes on {prefix}/tasks/# and {prefix}/control/# are refused


@dataclass(frozen=True)
class PersistenceSettings:
    data_dir: Path | None = None  # in memory only when unset
    fsync: bool = True  # fsync the journal before acknowledging what it holds
    #: rewrite the snapshot when the journal grows past this
    compact_bytes: int = field(default=16 * 1024 * 1024, metadata=limit(4096))
    #: a batch of messages sent to connected subscribers waits this for their PUBACKs
    ack_wait_ms: float = field(default=5.0, metadata=limit(0, 1000))


@dataclass(frozen=True)
class LogSettings:
    format: LogFormat = "text"
    level: LogLevel = "info"
    #: a `stats` line (clients, sessions, queued, dropped...); 0: never
    stats_interval_s: float = field(default=60.0, metadata=limit(0))


@dataclass(frozen=True)
class BrokerSettings:
    """Everything `edge-broker` and `EmbeddedBroker` need, validated."""

    fleet_files: Path | None = None
    listeners: Listeners = field(default_factory=Listeners)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    persistence: PersistenceSettings = field(default_factory=PersistenceSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def validate(self) -> BrokerSettings:
        _validate(self)
        return self

    def load_passwords(self) -> PasswordFile | None:
        path = self.auth.password_file
        return _credential("auth.password_file", PasswordFile.load, path) if path else None

    def load_acl(self) -> AclTable | None:
        path = self.auth.acl_file
        return _credential("auth.acl_file", AclTable.load, path) if path else None


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BrokerSettings:
    """Build and validate the settings from every layer (see the module docstring)."""
    user_doc = read_toml(Path(config_file), "--config") if config_file else {}
    env = env_layer(BrokerSettings, os.environ if environ is None else environ, ENV)
    flags = nest(dict(overrides or {}))
    layers: list[Layer] = []
    fleet_files = _first_set("fleet_files", flags, env.doc, user_doc)
    if fleet_files:
        fleet_dir = Path(str(fleet_files))
        if not fleet_dir.is_dir():
            raise ConfigError("fleet_files", f"{fleet_dir} is not a directory (make it with edge-provision)")
        if (fleet_dir / "fleet.toml").is_file() and not (fleet_dir / "passwd").is_file():
            raise ConfigError(
                "fleet_files",
                f"{fleet_dir} is a fleet directory, not its broker files: run "
                f"`edge-provision --fleet {fleet_dir} broker-files --format amqtt --out DIR` and use DIR",
            )
        snippet = fleet_dir / "broker.toml"
        if snippet.is_file():  # its paths are relative to the directory that holds it
            layers.append(Layer(read_toml(snippet, "fleet_files"), base=fleet_dir, text=True))
        layers.append(Layer(_fleet_defaults(fleet_dir), text=True))
    layers += [Layer(user_doc, text=True), env, Layer(flags, text=True)]
    return build(BrokerSettings, layers).validate()


def settings_from(doc: Mapping[str, Any]) -> BrokerSettings:
    """Settings from a dict shaped like the TOML file (dotted keys allowed; for embedding and
    tests), validated."""
    return build(BrokerSettings, [Layer(nest(doc), text=True)]).validate()


# --- layers ----------------------------------------------------------------------------------


def _fleet_defaults(fleet_dir: Path) -> dict[str, Any]:
    auth: dict[str, Any] = {}
    if (fleet_dir / "passwd").is_file():
        auth["password_file"] = str(fleet_dir / "passwd")
    if (fleet_dir / "acl.toml").is_file():
        auth["acl_file"] = str(fleet_dir / "acl.toml")
    return {"auth": auth} if auth else {}


def _first_set(key: str, *layers: Mapping[str, Any]) -> Any:
    for layer in layers:
        if layer.get(key):
            return layer[key]
    return None


# --- validation ----------------------------------------------------------------------------


def _validate(settings: BrokerSettings) -> None:
    listeners = settings.listeners
    enabled = [(name, listener) for name, listener in _listeners(listeners) if listener.enabled]
    if not enabled:
        raise ConfigError("listeners", "every listener is disabled: enable tcp, tls or ws")
    for name, listener in enabled:
        _validate_listener(f"listeners.{name}", listener)
    if listeners.tcp.tls:
        raise ConfigError(
            "listeners.tcp.certfile", "the tcp listener is plain MQTT: put TLS on listeners.tls"
        )
    if listeners.tls.enabled and not listeners.tls.tls:
        raise ConfigError("listeners.tls.certfile", "the tls listener needs certfile and keyfile")
    ports = [(listener.host, listener.port) for _, listener in enabled if listener.port]
    if len(ports) != len(set(ports)):
        raise ConfigError("listeners", "two enabled listeners share a host and port")
    auth = settings.auth
    has_cert_auth = listeners.tls.enabled and listeners.tls.require_certificate
    if not (auth.allow_anonymous or auth.password_file or has_cert_auth):
        raise ConfigError(
            "auth",
            "nobody could connect: set auth.password_file (or fleet_files), a tls listener with "
            "require_certificate, or auth.allow_anonymous = true",
        )
    settings.load_passwords()
    settings.load_acl()
    _validate_byte_bounds(settings.limits)
    _validate_prefix(settings.protocol.prefix)
    data_dir = settings.persistence.data_dir
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise ConfigError("persistence.data_dir", f"{data_dir} exists and is not a directory")


def _listeners(listeners: Listeners) -> list[tuple[str, ListenerSettings]]:
    return [("tcp", listeners.tcp), ("tls", listeners.tls), ("ws", listeners.ws)]


def _validate_listener(key: str, listener: ListenerSettings) -> None:
    if not listener.host:
        raise ConfigError(f"{key}.host", "must not be empty")
    if (listener.certfile is None) != (listener.keyfile is None):
        raise ConfigError(f"{key}.keyfile", "certfile and keyfile go together")
    for name in ("certfile", "keyfile", "cafile", "crlfile"):
        path = getattr(listener, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"{key}.{name}", f"{path}: no such file")
    if listener.tls and listener.require_certificate and listener.cafile is None:
        raise ConfigError(f"{key}.cafile", "require_certificate needs the CA that signs client certificates")


def _validate_byte_bounds(limits: LimitSettings) -> None:
    packet = limits.max_packet_size
    for name in ("max_queued_bytes", "max_retained_bytes"):
        value = getattr(limits, name)
        if not _off_or_at_least(value, packet):
            raise ConfigError(
                f"limits.{name}",
                f"{value!r} must be 0 (no bound) or at least limits.max_packet_size ({packet})",
            )


def _off_or_at_least(value: int, minimum: int) -> bool:
    """0 turns a bound off; otherwise it must let at least one `minimum`-sized thing through."""
    return value == 0 or value >= minimum


def _validate_prefix(prefix: str) -> None:
    if prefix:
        try:
            Topics(prefix)
        except TopicError as exc:
            raise ConfigError("protocol.prefix", f"{exc} (empty: refuse no retained publish)") from None


_T = typing.TypeVar("_T")


def _credential(key: str, loader: typing.Callable[[Path], _T], path: Path) -> _T:
    try:
        return loader(path)
    except CredentialsError as exc:
        raise ConfigError(key, exc.message) from None
