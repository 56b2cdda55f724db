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

This module declares the sections and checks what relates them; reading, converting and range
checks are the project's one settings loader (`agent.common.settings`), and `[mqtt]` and
`[security]` are declared beside it (`agent.common.sections`: the client tools read `[mqtt]` too).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..common.errors import ConfigError
from ..common.sections import MqttSection, SecuritySection, check_mqtt
from ..common.settings import INTERNAL, EnvNames, Layer, build, env_layer, limit, read_toml
from ..protocol.errors import TopicError
from ..protocol.topics import Topics, check_id, check_node_id

ENV = EnvNames("EDGE_")
#: What a clean stop (app.py `Agent.stop`) may take beyond `workers.grace_s`: killing the workers
#: left (1 s), joining the dispatcher (10 s at most), the last results' acknowledgements (5 s) and
#: the offline presence (5 s), closing the link and the store, with room to spare.
STOP_OVERHEAD_S = 30.0  # EDGE_<SECTION>_<KEY>; the prefix is shared with the tools and the demo


@dataclass(frozen=True)
class AgentSection:
    node: str = ""
    pools: tuple[str, ...] = ()
    data_dir: Path = Path("data")


@dataclass(frozen=True)
class LimitsSection:
    queue_capacity: int = field(default=10_000, metadata=limit(1))
    #: Bytes of task bodies the agent holds (queued, scheduled, running): they live in memory and
    #: in every snapshot. 10,000 tasks of `max_payload` would be 10 GiB on a board with 1 GiB.
    queue_bytes: int = field(default=128 << 20, metadata=limit(1 << 16))
    max_timeout_s: float = field(default=3600.0, metadata=limit(above=0))
    intake_batch: int = field(default=256, metadata=limit(1, 100_000))


@dataclass(frozen=True)
class WorkersSection:
    count: int = field(default=0, metadata=limit(0, 256))  # 0: one per core
    memory_limit_mb: int = field(default=1024, metadata=limit(16))
    grace_s: float = field(default=10.0, metadata=limit(0))
    start_timeout_s: float = field(default=60.0, metadata=limit(above=0))


@dataclass(frozen=True)
class SchedulingSection:
    retry_base_s: float = field(default=1.0, metadata=limit(0))
    retry_max_s: float = field(default=300.0, metadata=limit(0))
    retry_jitter: float = field(default=0.5, metadata=limit(0, 1))


@dataclass(frozen=True)
class StoreSection:
    fsync: bool = True
    compact_bytes: int = field(default=8 << 20, metadata=limit(4096))
    retention_days: int = field(default=7, metadata=limit(0, 3650))


@dataclass(frozen=True)
class HeartbeatSection:
    interval_s: float = field(default=10.0, metadata=limit(above=0))


@dataclass(frozen=True)
class EventsSection:
    enabled: bool = False  # three more Ed25519 signatures per task: on for dashboards that show progress


@dataclass(frozen=True)
class RejectsSection:
    rate_per_s: float = field(default=10.0, metadata=limit(above=0))


@dataclass(frozen=True)
class AuditSection:
    file: Path | None = None  # default: <data_dir>/audit.log
    max_bytes: int = field(default=10 << 20, metadata=limit(4096))
    backups: int = field(default=5, metadata=limit(0, 1000))


@dataclass(frozen=True)
class LogSection:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "text", "json"] = "auto"  # auto: json unless stderr is a terminal


@dataclass(frozen=True)
class MetricsSection:
    """The HTTP endpoint of /metrics (Prometheus) and /health; no authentication: keep it local."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=9464, metadata=limit(0, 65535))  # 0: any free port (logged)


@dataclass(frozen=True)
class TestingSection:
    """Never in a production file: kernels that crash, hang or eat memory, for the test suite."""

    __test__ = False  # not a pytest test class
    test_kernels: bool = False


@dataclass(frozen=True)
class Config:
    agent: AgentSection
    mqtt: MqttSection = field(default_factory=MqttSection)
    security: SecuritySection = field(default_factory=SecuritySection)
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
    source: Path | None = field(default=None, metadata=INTERNAL)  # the TOML file it came from
    #: The `EDGE_*` variables it was built with: a reload (SIGHUP, sys.reload) reads the file again
    #: with the same ones (a process cannot see its environment change).
    environ: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False, metadata=INTERNAL)

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
    def stop_timeout_s(self) -> float:
        """The longest a clean stop takes: what a supervisor waits before SIGKILL (TimeoutStopSec=)."""
        return self.workers.grace_s + STOP_OVERHEAD_S

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
    check_mqtt(config.mqtt)
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
    env = env_layer(Config, environ, ENV, base=Path.cwd())
    used = {k: v for k, v in environ.items() if k.startswith(ENV.prefix)}
    config = build(Config, [Layer(doc, base=base), env], source=None, environ=used)
    _validate(config)
    return config


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and check `path` (TOML) with the environment's overrides."""
    source = Path(path).resolve()
    config = build_config(read_toml(source), base=source.parent, environ=environ)
    return dataclasses.replace(config, source=source)
