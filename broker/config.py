"""The broker's configuration: one typed, validated object from TOML, `EDGE_BROKER_*` and flags.

Layers, later ones winning: defaults; `broker.toml` in the fleet files directory (written by
`edge-provision broker-files --format amqtt`); the `--config` TOML file; environment variables;
command-line flags. Every key has an environment variable named after its path:
`listeners.tcp.port` is `EDGE_BROKER_LISTENERS_TCP_PORT`, `fleet_files` is `EDGE_BROKER_FLEET_FILES`.

Every problem is reported as a `ConfigError` naming the key, before anything starts.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from agent.common import tomlio
from agent.protocol.errors import TopicError
from agent.protocol.topics import DEFAULT_PREFIX, Topics

from .credentials import AclTable, PasswordFile
from .errors import ConfigError, CredentialsError

ENV_PREFIX = "EDGE_BROKER_"
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class ListenerSettings:
    """One listener; TLS when `certfile`/`keyfile` are set, mutual TLS with `require_certificate`."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    max_connections: int = 0
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
    max_packet_size: int = 1024 * 1024 + 65536  # PROTOCOL's 1 MiB payload plus topic and headers
    max_queued_messages: int = 1000  # per client, QoS 1/2, beyond the in-flight window
    max_queued_bytes: int = 64 * 1024 * 1024  # per client: topic and payload bytes of that queue
    max_inflight_messages: int = 20  # per client, unacknowledged QoS 1/2 deliveries
    max_retained_messages: int = 10_000  # retained messages kept; also what a wildcard subscribe scans
    max_retained_bytes: int = 64 * 1024 * 1024  # their topic and payload bytes
    connect_timeout_s: float = 10.0  # from TCP accept to a complete CONNECT
    max_connections: int = 1000  # open connections, every listener together; 0: no limit
    session_expiry_s: int = 86_400  # a disconnected persistent session of a non-agent; 0: never
    agent_session_expiry_s: int = 0  # the same for agents (acl.toml role = "agent"); 0: never


@dataclass(frozen=True)
class ProtocolSettings:
    """What the broker knows of the edge protocol (PROTOCOL 1)."""

    prefix: str = DEFAULT_PREFIX  # retained publishes on {prefix}/tasks/# and {prefix}/control/# are refused


@dataclass(frozen=True)
class PersistenceSettings:
    data_dir: Path | None = None  # in memory only when unset
    fsync: bool = True  # fsync the journal before acknowledging what it holds
    compact_bytes: int = 16 * 1024 * 1024  # rewrite the snapshot when the journal grows past this
    ack_wait_ms: float = 5.0  # a batch of messages sent to connected subscribers waits this for their PUBACKs


@dataclass(frozen=True)
class LogSettings:
    format: LogFormat = "text"
    level: LogLevel = "info"
    stats_interval_s: float = 60.0  # a `stats` line (clients, sessions, queued, dropped...); 0: never


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
    environ = os.environ if environ is None else environ
    layers: list[dict[str, Any]] = []
    user_doc = _read_toml(Path(config_file), "--config") if config_file else {}
    env_doc = _env_layer(environ)
    flags = _nest(dict(overrides or {}))
    fleet_files = _first_set("fleet_files", flags, env_doc, user_doc)
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
        if snippet.is_file():
            layers.append(_relative_paths(_read_toml(snippet, "fleet_files"), fleet_dir))
        layers.append(_fleet_defaults(fleet_dir))
    layers += [user_doc, env_doc, flags]
    merged: dict[str, Any] = {}
    for layer in layers:
        _deep_merge(merged, layer)
    settings = _build(BrokerSettings, merged, "")
    return settings.validate()


def settings_from(doc: Mapping[str, Any]) -> BrokerSettings:
    """Settings from a dict shaped like the TOML file (for embedding and tests), validated."""
    return _build(BrokerSettings, _nest(dict(doc)), "").validate()


# --- layers ----------------------------------------------------------------------------------


def _read_toml(path: Path, key: str) -> dict[str, Any]:
    try:
        return tomlio.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(key, f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"{path}: cannot read: {exc}") from None
    except tomlio.TOMLDecodeError as exc:
        raise ConfigError(key, f"{path}: not valid TOML: {exc}") from None


def _fleet_defaults(fleet_dir: Path) -> dict[str, Any]:
    auth: dict[str, Any] = {}
    if (fleet_dir / "passwd").is_file():
        auth["password_file"] = str(fleet_dir / "passwd")
    if (fleet_dir / "acl.toml").is_file():
        auth["acl_file"] = str(fleet_dir / "acl.toml")
    return {"auth": auth} if auth else {}


def _relative_paths(doc: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths in the fleet's `broker.toml` are relative to the directory that holds it."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out[key] = _relative_paths(value, base)
        elif (
            key.endswith(("file", "_dir"))
            and isinstance(value, str)
            and value
            and not Path(value).is_absolute()
        ):
            out[key] = str(base / value)
        else:
            out[key] = value
    return out


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    known = {_env_name(path): path for path in _leaf_paths(BrokerSettings, "")}
    doc: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if name not in known:
            raise ConfigError(name, "unknown setting (`edge-broker --help` and broker/README.md list them)")
        doc[known[name]] = value
    return _nest(doc)


def _env_name(path: str) -> str:
    return ENV_PREFIX + path.replace(".", "_").upper()


def _leaf_paths(cls: type[Any], prefix: str) -> list[str]:
    paths: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            paths += _leaf_paths(hints[f.name], path + ".")
        else:
            paths.append(path)
    return paths


def _first_set(key: str, *layers: Mapping[str, Any]) -> Any:
    for layer in layers:
        if layer.get(key):
            return layer[key]
    return None


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"a.b": 1}` -> `{"a": {"b": 1}}`; nested dicts pass through."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, dict):
            _deep_merge(node.setdefault(parts[-1], {}), _nest(value))
        else:
            node[parts[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


# --- typed building ------------------------------------------------------------------------

_T = typing.TypeVar("_T")


def _build(cls: type[_T], data: Mapping[str, Any], prefix: str) -> _T:
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "<root>", "must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(prefix + unknown[0], f"unknown setting (known here: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for name in names & set(data):
        key = prefix + name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, data[name], key + ".")  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(hint, data[name], key)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:  # noqa: C901 - one branch per supported type
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or value == "":
            return None
        return _coerce(args[0], value, key)
    if origin is Literal:
        choices = typing.get_args(hint)
        text = str(value).lower()
        if text not in choices:
            raise ConfigError(key, f"{value!r} is not one of {', '.join(choices)}")
        return text
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(key, f"{value!r} is not a boolean (true/false)")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(key, f"{value!r} is not a number")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(
                key, f"{value!r} is not {'an integer' if hint is int else 'a number'}"
            ) from None
    if hint is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise ConfigError(key, f"{value!r} is not a path")
        return Path(value).expanduser()
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"{value!r} is not a string")
        return value
    raise ConfigError(key, f"unsupported setting type {hint!r}")  # pragma: no cover - programming error


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
    _validate_limits(settings.limits)
    _validate_prefix(settings.protocol.prefix)
    if settings.log.stats_interval_s < 0:
        raise ConfigError("log.stats_interval_s", "must be 0 (never) or more")
    if settings.persistence.compact_bytes < 4096:
        raise ConfigError("persistence.compact_bytes", "must be at least 4096")
    if not 0 <= settings.persistence.ack_wait_ms <= 1000:
        raise ConfigError("persistence.ack_wait_ms", "must be between 0 and 1000")
    data_dir = settings.persistence.data_dir
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise ConfigError("persistence.data_dir", f"{data_dir} exists and is not a directory")


def _listeners(listeners: Listeners) -> list[tuple[str, ListenerSettings]]:
    return [("tcp", listeners.tcp), ("tls", listeners.tls), ("ws", listeners.ws)]


def _validate_listener(key: str, listener: ListenerSettings) -> None:
    if not listener.host:
        raise ConfigError(f"{key}.host", "must not be empty")
    if not 0 <= listener.port <= 65535:
        raise ConfigError(f"{key}.port", f"{listener.port} is not a TCP port (0 picks a free one)")
    if listener.max_connections < 0:
        raise ConfigError(f"{key}.max_connections", "must be 0 (no limit) or more")
    if (listener.certfile is None) != (listener.keyfile is None):
        raise ConfigError(f"{key}.keyfile", "certfile and keyfile go together")
    for name in ("certfile", "keyfile", "cafile", "crlfile"):
        path = getattr(listener, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"{key}.{name}", f"{path}: no such file")
    if listener.tls and listener.require_certificate and listener.cafile is None:
        raise ConfigError(f"{key}.cafile", "require_certificate needs the CA that signs client certificates")


def _validate_limits(limits: LimitSettings) -> None:
    packet = limits.max_packet_size
    at_least_a_packet = f"must be 0 (no bound) or at least limits.max_packet_size ({packet})"
    checks = {  # name: (valid, what it must be)
        "max_packet_size": (packet >= 1024, "is out of range"),
        "max_queued_messages": (limits.max_queued_messages >= 0, "is out of range"),
        "max_queued_bytes": (_off_or_at_least(limits.max_queued_bytes, packet), at_least_a_packet),
        "max_inflight_messages": (1 <= limits.max_inflight_messages <= 65535, "is out of range"),
        "max_retained_messages": (limits.max_retained_messages >= 0, "is out of range"),
        "max_retained_bytes": (_off_or_at_least(limits.max_retained_bytes, packet), at_least_a_packet),
        "connect_timeout_s": (limits.connect_timeout_s > 0, "is out of range"),
        "max_connections": (limits.max_connections >= 0, "is out of range"),
        "session_expiry_s": (limits.session_expiry_s >= 0, "is out of range"),
        "agent_session_expiry_s": (limits.agent_session_expiry_s >= 0, "is out of range"),
    }
    for name, (ok, rule) in checks.items():
        if not ok:
            value = getattr(limits, name)
            raise ConfigError(f"limits.{name}", f"{value!r} {rule}")


def _off_or_at_least(value: int, minimum: int) -> bool:
    """0 turns a bound off; otherwise it must let at least one `minimum`-sized thing through."""
    return value == 0 or value >= minimum


def _validate_prefix(prefix: str) -> None:
    if prefix:
        try:
            Topics(prefix)
        except TopicError as exc:
            raise ConfigError("protocol.prefix", f"{exc} (empty: refuse no retained publish)") from None


def _credential(key: str, loader: typing.Callable[[Path], _T], path: Path) -> _T:
    try:
        return loader(path)
    except CredentialsError as exc:
        raise ConfigError(key, exc.message) from None
