"""The gateway's configuration: `gateway.toml` from `edge-provision bundle`, then `EDGE_GATEWAY_*`.

    config = load_config("gw-1/gateway.toml", environ=os.environ)

The bundle file has `[gateway]` (`name`: the identity), `[mqtt]` (the agent's and the tools'
section, same keys and checks) and `[security]` (`signing_key`, `kid`, `alg`, `trust_store`); the
gateway's own sections are optional, with these defaults:

| key | default | meaning |
|---|---|---|
| `http.host`, `http.port` | 127.0.0.1, 8080 | where the API listens (port 0: a free one) |
| `http.tls_cert`, `http.tls_key` | none | HTTPS (TLS 1.3 at least) with this certificate; HSTS then |
| `http.max_body_bytes` | 16 MiB | larger request bodies: 413 |
| `http.read_timeout_s` | 30 | a client slower than this to send its request is cut off |
| `http.web_dir` | the packaged page | the dashboard's files, served at `/` and `/static/` |
| `auth.api_clients` | api-clients.json | the API clients' hashed secrets (provisioning; SIGHUP reloads) |
| `auth.token_key` | `<data_dir>/token.key` | the Ed25519 key tokens are signed with (made at first start) |
| `auth.token_ttl_s` | 3600 | lifetime of a token |
| `auth.audience` | edge-gateway | the `aud` of tokens: a token for another service is refused |
| `limits.rate_per_s`, `limits.burst` | 50, 100 | token bucket per API client: then 429 + Retry-After |
| `tasks.default_target` | none | where `POST /compute` sends a task that names no node/pool/all |
| `tasks.ttl_s` | 3600 | a task's lifetime (`expires_at - issued_at`) |
| `tasks.wait_max_s` | 60 | the longest `?wait=S` |
| `store.data_dir` | data | the SQLite record of submitted tasks (`tasks.sqlite3`, WAL) |
| `events.queue_max` | 1000 | events queued per page of `/api/v1/events`; then the oldest go, `gap` |
| `events.batch_s` | 0.05 | events are gathered this long and written to each page at once |
| `events.keepalive_s` | 15 | a `: keepalive` comment after this long without an event |
| `events.pages_max` | 100 | pages connected to `/api/v1/events` at once; then 503 `too_many_pages` |

Variables: `EDGE_GATEWAY_` + the key's path, `_` for `.`: `EDGE_GATEWAY_HTTP_PORT`,
`EDGE_GATEWAY_MQTT_PORT`, `EDGE_GATEWAY_STORE_DATA_DIR`. Relative paths are relative to the file
(to the working directory for variables). Every problem is a `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.common.errors import ConfigError
from agent.common.sections import MqttSection, check_mqtt
from agent.common.settings import INTERNAL, EnvNames, Layer, build, env_layer, limit, read_toml
from agent.protocol import Signer, TopicError, Topics, TrustStore, TrustStoreError, load_signer
from agent.protocol.topics import is_valid_id

ENV = EnvNames(
    "EDGE_GATEWAY_", owns_prefix=True, listed_in="gateway/README.md and `edge-gateway --help` list them"
)
SECTIONS = ("http", "auth", "limits", "tasks", "store", "events", "mqtt", "security")


@dataclass(frozen=True)
class HttpSection:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=limit(0, 65535))
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_body_bytes: int = field(default=16 << 20, metadata=limit(1024))
    read_timeout_s: float = field(default=30.0, metadata=limit(above=0))
    web_dir: Path | None = None  # default: the packaged page (static.WEB_ROOT)


@dataclass(frozen=True)
class AuthSection:
    api_clients: Path = Path("api-clients.json")
    token_key: Path | None = None
    token_ttl_s: float = field(default=3600.0, metadata=limit(1, 86400))
    audience: str = "edge-gateway"


@dataclass(frozen=True)
class LimitsSection:
    rate_per_s: float = field(default=50.0, metadata=limit(above=0))
    burst: int = field(default=100, metadata=limit(1))


@dataclass(frozen=True)
class TasksSection:
    default_target: str | None = None
    ttl_s: float = field(default=3600.0, metadata=limit(1, 86400))
    wait_max_s: float = field(default=60.0, metadata=limit(0, 3600))


@dataclass(frozen=True)
class StoreSection:
    data_dir: Path = Path("data")


@dataclass(frozen=True)
class EventsSection:
    queue_max: int = field(default=1000, metadata=limit(1, 1_000_000))
    batch_s: float = field(default=0.05, metadata=limit(0, 5))
    keepalive_s: float = field(default=15.0, metadata=limit(above=0))
    pages_max: int = field(default=100, metadata=limit(1, 100_000))


@dataclass(frozen=True)
class GatewaySecurity:
    signing_key: Path | None = None
    kid: str | None = None  # default: the gateway's name
    alg: str | None = None  # informational: load_signer reads the key file's own format
    trust_store: Path | None = None


@dataclass(frozen=True)
class GatewayConfig:
    name: str = field(metadata=INTERNAL)
    http: HttpSection
    auth: AuthSection
    limits: LimitsSection
    tasks: TasksSection
    store: StoreSection
    events: EventsSection
    mqtt: MqttSection
    security: GatewaySecurity
    source: Path | None = field(default=None, metadata=INTERNAL)

    @property
    def topics(self) -> Topics:
        return Topics(self.mqtt.prefix)

    @property
    def kid(self) -> str:
        return self.security.kid or self.name

    @property
    def token_key_path(self) -> Path:
        return self.auth.token_key or self.store.data_dir / "token.key"

    def signer(self) -> Signer:
        path = self.security.signing_key
        if path is None:
            raise ConfigError(
                "security.signing_key", "no signing key: the gateway signs the tasks it submits"
            )
        try:
            return load_signer(path, kid=self.kid)
        except (OSError, ValueError) as exc:
            raise ConfigError("security.signing_key", f"cannot load {path}: {exc}") from None

    def trust(self) -> TrustStore:
        path = self.security.trust_store
        if path is None:
            raise ConfigError("security.trust_store", "no trust store: the gateway verifies what agents sign")
        try:
            return TrustStore.load(path)
        except (TrustStoreError, OSError) as exc:
            raise ConfigError("security.trust_store", str(exc)) from None


def _name(doc: Mapping[str, Any], source: Path) -> str:
    unknown = sorted(set(doc) - set(SECTIONS) - {"gateway"})
    if unknown:
        raise ConfigError(unknown[0], f"unknown section in {source}")
    head = doc.get("gateway")
    name = head.get("name") if isinstance(head, dict) else None
    if not is_valid_id(name):
        raise ConfigError(
            "gateway.name",
            f"{source} names no gateway: use the gateway.toml of `edge-provision add gateway NAME`"
            " and `edge-provision bundle NAME`",
        )
    return name


def load_config(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    source = Path(path).resolve()
    doc = read_toml(source)
    name = _name(doc, source)
    layers = [
        Layer({k: v for k, v in doc.items() if k in SECTIONS}, base=source.parent),
        env_layer(GatewayConfig, os.environ if environ is None else environ, ENV, base=Path.cwd()),
    ]
    config = _anchored(build(GatewayConfig, layers, name=name, source=source), source.parent)
    _validate(config)
    return config


def _anchored(config: GatewayConfig, base: Path) -> GatewayConfig:
    """The default paths (`api-clients.json`, `data`) are the bundle's: beside the file, wherever
    the gateway is started from (layers resolve the paths they give themselves)."""
    auth, store = config.auth, config.store
    if not auth.api_clients.is_absolute():
        auth = dataclasses.replace(auth, api_clients=base / auth.api_clients)
    if not store.data_dir.is_absolute():
        store = dataclasses.replace(store, data_dir=base / store.data_dir)
    return dataclasses.replace(config, auth=auth, store=store)


def _validate(config: GatewayConfig) -> None:
    try:
        Topics(config.mqtt.prefix)
    except TopicError as exc:
        raise ConfigError("mqtt.prefix", str(exc)) from None
    check_mqtt(config.mqtt)
    if (config.http.tls_cert is None) != (config.http.tls_key is None):
        raise ConfigError("http.tls_cert", "give both http.tls_cert and http.tls_key, or neither")
    target = config.tasks.default_target
    if target is not None:
        try:
            config.topics.for_target(target)
        except TopicError as exc:
            raise ConfigError("tasks.default_target", str(exc)) from None
