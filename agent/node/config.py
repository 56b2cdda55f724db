"""The agent's configuration: one typed object from `agent.toml` plus `EDGE_*` environment variables.

    config = load_config("node-1/agent.toml")              # what `edge-agent run --config` does
    config = load_config(path, environ={"EDGE_MQTT_PORT": "1883"})

Layers, later ones winning: defaults, the TOML file (the one `edge-provision bundle` writes runs
as it is), then `EDGE_<SECTION>_<KEY>` variables (`EDGE_MQTT_PORT`, `EDGE_WORKERS_COUNT`;
lists comma-separated). Relative paths are relative to the TOML file. Every value is checked
before anything starts, and a bad one raises `ConfigError` whose message starts with its key
(`mqtt.port: must be an integer from 1 to 65535`). Unknown keys are errors too: a misspelt
setting must not silently keep its default. Variables of other components (`EDGE_KERNELS_*`,
`EDGE_BROKER_*`, ...) are left alone: only sections of this file are read from the environment.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..common import tomlio
from ..protocol.errors import TopicError
from ..protocol.topics import Topics, check_id, check_node_id
from .errors import ConfigError

ENV_PREFIX = "EDGE_"


def _limit(lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> Any:
    return {"lo": lo, "hi": hi, "above": above}


@dataclass(frozen=True)
class AgentSection:
    node: str = ""
    pools: tuple[str, ...] = ()
    data_dir: Path = Path("data")


@dataclass(frozen=True)
class MqttSection:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata=_limit(1, 65535))
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    prefix: str = "edge"
    client_id: str | None = None  # default: the node id (a stable id keeps the persistent session)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"  # auto: MQTT 5, else 3.1.1 (the embedded broker)
    keepalive_s: int = field(default=30, metadata=_limit(5, 3600))
    session_expiry_s: int = field(default=7 * 86400, metadata=_limit(0, 0xFFFFFFFF))
    reconnect_min_s: float = field(default=0.5, metadata=_limit(above=0))
    reconnect_max_s: float = field(default=30.0, metadata=_limit(above=0))
    connack_timeout_s: float = field(default=5.0, metadata=_limit(above=0))  # auto: then MQTT 3.1.1
    shared_pools: bool = True  # pools through $share (MQTT 5, Mosquitto, the embedded broker)


@dataclass(frozen=True)
class SecuritySection:
    signing_key: Path | None = None
    trust_store: Path | None = None
    clock_skew_s: float = field(default=60.0, metadata=_limit(0, 86400))
    max_lifetime_s: float = field(default=86400.0, metadata=_limit(above=0))
    max_payload: int = field(default=1 << 20, metadata=_limit(1024, 256 << 20))


@dataclass(frozen=True)
class LimitsSection:
    queue_capacity: int = field(default=10_000, metadata=_limit(1))
    #: Bytes of task bodies the agent holds (queued, scheduled, running): they live in memory and
    #: in every snapshot. 10,000 tasks of `max_payload` would be 10 GiB on a board with 1 GiB.
    queue_bytes: int = field(default=128 << 20, metadata=_limit(1 << 16))
    max_timeout_s: float = field(default=3600.0, metadata=_limit(above=0))
    intake_batch: int = field(default=256, metadata=_limit(1, 100_000))


@dataclass(frozen=True)
class WorkersSection:
    count: int = field(default=0, metadata=_limit(0, 256))  # 0: one per core
    memory_limit_mb: int = field(default=1024, metadata=_limit(16))
    grace_s: float = field(default=10.0, metadata=_limit(0))
    start_timeout_s: float = field(default=60.0, metadata=_limit(above=0))


@dataclass(frozen=True)
class SchedulingSection:
    retry_base_s: float = field(default=1.0, metadata=_limit(0))
    retry_max_s: float = field(default=300.0, metadata=_limit(0))
    retry_jitter: float = field(default=0.5, metadata=_limit(0, 1))


@dataclass(frozen=True)
class StoreSection:
    fsync: bool = True
    compact_bytes: int = field(default=8 << 20, metadata=_limit(4096))
    retention_days: int = field(default=7, metadata=_limit(0, 3650))


@dataclass(frozen=True)
class HeartbeatSection:
    interval_s: float = field(default=10.0, metadata=_limit(above=0))


@dataclass(frozen=True)
class EventsSection:
    enabled: bool = False  # three more Ed25519 signatures per task: on for dashboards that show progress


@dataclass(frozen=True)
class RejectsSection:
    rate_per_s: float = field(default=10.0, metadata=_limit(above=0))


@dataclass(frozen=True)
class AuditSection:
    file: Path | None = None  # default: <data_dir>/audit.log
    max_bytes: int = field(default=10 << 20, metadata=_limit(4096))
    backups: int = field(default=5, metadata=_limit(0, 1000))


@dataclass(frozen=True)
class LogSection:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "text", "json"] = "auto"  # auto: json unless stderr is a terminal


@dataclass(frozen=True)
class MetricsSection:
    """The HTTP endpoint of /metrics (Prometheus) and /health; no authentication: keep it local."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=9464, metadata=_limit(0, 65535))  # 0: any free port (logged)


@dataclass(frozen=True)
class TestingSection:
    """Never in a production file: kernels that crash, hang or eat memory, for the test suite."""

    __test__ = False  # not a pytest test class
    test_kernels: bool = False


@dataclass(frozen=True)
class Config:
    agent: AgentSection
    mqtt: MqttSection = MqttSection()
    security: SecuritySection = SecuritySection()
    limits: LimitsSection = LimitsSection()
    workers: WorkersSection = WorkersSection()
    scheduling: SchedulingSection = SchedulingSection()
    store: StoreSection = StoreSection()
    heartbeat: HeartbeatSection = HeartbeatSection()
    events: EventsSection = EventsSection()
    rejects: RejectsSection = RejectsSection()
    audit: AuditSection = AuditSection()
    log: LogSection = LogSection()
    metrics: MetricsSection = MetricsSection()
    testing: TestingSection = TestingSection()
    source: Path | None = None  # the TOML file it came from
    #: The `EDGE_*` variables it was built with: a reload (SIGHUP, sys.reload) reads the file again
    #: with the same ones (a process cannot see its environment change).
    environ: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def node(self) -> str:
        return self.agent.node

    @property
    def topics(self) -> Topics:
        return Topics(self.mqtt.prefix)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or self.agent.node

    @property
    def worker_count(self) -> int:
        return self.workers.count or os.cpu_count() or 1

    @property
    def audit_file(self) -> Path:
        return self.audit.file or self.agent.data_dir / "audit.log"

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections or single keys replaced: `replace(workers={"count": 1})`."""
        changes = {
            name: dataclasses.replace(getattr(self, name), **value) if isinstance(value, dict) else value
            for name, value in sections.items()
        }
        return dataclasses.replace(self, **changes)


SECTION_CLASSES: dict[str, type] = {
    n: c for n, c in typing.get_type_hints(Config).items() if n not in ("source", "environ")
}
_HINTS = {name: typing.get_type_hints(cls) for name, cls in SECTION_CLASSES.items()}


# --- converting one value -----------------------------------------------------------------------


def _convert(key: str, hint: Any, value: object, base: Path | None, from_env: bool) -> object:
    """`value` as the type `hint`, or ConfigError naming `key`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (from_env and value == ""):
            return None
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return _convert(key, inner, value, base, from_env)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin is tuple:
        items = (
            [s.strip() for s in value.split(",") if s.strip()]
            if from_env and isinstance(value, str)
            else value
        )
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ConfigError(key, "must be a list of strings")
        return tuple(items)
    return _scalar(key, hint, value, base, from_env)


def _scalar(key: str, hint: Any, value: object, base: Path | None, from_env: bool) -> object:
    if hint is bool:
        if from_env and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        return _number(key, hint, value, from_env)
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, "must be a non-empty path string")
        path = Path(value).expanduser()
        return path if path.is_absolute() or base is None else base / path
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {type(value).__name__}")
        return value
    raise TypeError(f"unsupported configuration type {hint!r} for {key}")  # a bug in this module


_KIND = {int: "an integer", float: "a number"}


def _number(key: str, hint: type, value: object, from_env: bool) -> float | int:
    if from_env and isinstance(value, str):
        try:
            value = int(value) if hint is int else float(value)
        except ValueError:
            raise ConfigError(key, f"must be {_KIND[hint]}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be {_KIND[hint]}, got {value!r}")
    if hint is int and not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(key, "must be finite")
    return hint(value)  # type: ignore[no-any-return]


def _check_range(key: str, value: float, meta: Mapping[str, Any]) -> None:
    lo, hi, above = meta.get("lo"), meta.get("hi"), meta.get("above")
    if above is not None and not value > above:
        raise ConfigError(key, f"must be > {above:g}, got {value:g}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"from {lo:g} to {hi:g}" if hi is not None else f">= {lo:g}"
        raise ConfigError(key, f"must be {bounds}, got {value:g}")


# --- building the sections ------------------------------------------------------------------------


def _section(name: str, raw: Mapping[str, Any], env: Mapping[str, str], base: Path | None) -> Any:
    cls = SECTION_CLASSES[name]
    hints = _HINTS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}", f"unknown setting (known: {', '.join(sorted(fields))})")
    values: dict[str, object] = {}
    for key, value in raw.items():
        values[key] = _convert(f"{name}.{key}", hints[key], value, base, from_env=False)
    for key, value in env.items():
        values[key] = _convert(f"{name}.{key}", hints[key], value, Path.cwd(), from_env=True)
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and fields[key].metadata:
            _check_range(f"{name}.{key}", value, fields[key].metadata)
    return cls(**values)


def _env_sections(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """`EDGE_<SECTION>_<KEY>` variables of our sections, by section; an unknown key is an error."""
    found: dict[str, dict[str, str]] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        section, _, key = var[len(ENV_PREFIX) :].lower().partition("_")
        if section not in SECTION_CLASSES or not key:
            continue  # another component's variable (EDGE_KERNELS_LIB, EDGE_BROKER_..., EDGE_FLEET)
        known = {f.name for f in dataclasses.fields(SECTION_CLASSES[section])}
        if key not in known:
            raise ConfigError(f"{section}.{key}", f"unknown setting (from the environment variable {var})")
        found.setdefault(section, {})[key] = value
    return found


def _validate(config: Config) -> None:
    """Relations between values, and identifiers of PROTOCOL 1."""
    try:
        check_node_id(config.agent.node)
    except TopicError as exc:
        raise ConfigError("agent.node", str(exc) if config.agent.node else "is required") from None
    for pool in config.agent.pools:
        try:
            check_id(pool, "pool")
        except TopicError as exc:
            raise ConfigError("agent.pools", str(exc)) from None
    try:
        Topics(config.mqtt.prefix)
    except TopicError as exc:
        raise ConfigError("mqtt.prefix", str(exc)) from None
    if config.mqtt.reconnect_max_s < config.mqtt.reconnect_min_s:
        raise ConfigError("mqtt.reconnect_max_s", "must not be below mqtt.reconnect_min_s")
    if config.mqtt.tls and config.mqtt.ca_file is None:
        raise ConfigError("mqtt.ca_file", "is required when mqtt.tls is true")
    if (config.mqtt.cert_file is None) != (config.mqtt.key_file is None):
        raise ConfigError("mqtt.key_file", "mqtt.cert_file and mqtt.key_file go together")
    if config.limits.queue_bytes < config.security.max_payload:
        raise ConfigError(
            "limits.queue_bytes",
            f"must be at least security.max_payload ({config.security.max_payload}): "
            "else a task of the largest allowed size could never be queued",
        )
    if not config.metrics.host:
        raise ConfigError("metrics.host", "must not be empty (127.0.0.1 keeps /metrics on this machine)")
    for key in ("signing_key", "trust_store"):
        if getattr(config.security, key) is None:
            raise ConfigError(f"security.{key}", "is required")


def build_config(
    doc: Mapping[str, Any], *, base: Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """A `Config` from a TOML-shaped mapping (tests build one without a file)."""
    environ = os.environ if environ is None else environ
    env = _env_sections(environ)
    unknown = sorted(set(doc) - set(SECTION_CLASSES))
    if unknown:
        raise ConfigError(unknown[0], f"unknown section (known: {', '.join(SECTION_CLASSES)})")
    sections: dict[str, Any] = {}
    for name in SECTION_CLASSES:
        raw = doc.get(name, {})
        if not isinstance(raw, Mapping):
            raise ConfigError(name, "must be a table")
        sections[name] = _section(name, raw, env.get(name, {}), base)
    used = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIX)}
    config = Config(**sections, source=None, environ=used)
    _validate(config)
    return config


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and check `path` (TOML) with the environment's overrides."""
    source = Path(path).resolve()
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("config", f"cannot read {source}: {exc.strerror}") from None
    try:
        doc = tomlio.loads(text)
    except tomlio.TOMLDecodeError as exc:
        raise ConfigError("config", f"{source} is not valid TOML: {exc}") from None
    config = build_config(doc, base=source.parent, environ=environ)
    return dataclasses.replace(config, source=source)
