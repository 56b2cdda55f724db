"""The settings sections that the agent and the client tools (edge-submit, edge-watch) both read.

`[mqtt]` is the same section with the same checks in `agent.toml` and in an operator's, a
dashboard's or a device's bundle file, so `EDGE_MQTT_PORT` means the same to every program.
`[security]` here is the agent's; the tools read their own (`agent.tools.settings.ClientSecurity`)
and leave the agent's other keys in the environment alone. Values only: no state, no threads.

`check_mqtt` checks what relates the keys to each other; `mqtt.prefix` is a protocol identifier,
checked with the others by each program (agent.common imports nothing of the project).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .endpoints import Order, parse_endpoint
from .errors import ConfigError
from .settings import limit
from .tls import tls_context


@dataclass(frozen=True)
class MqttSection:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata=limit(1, 65535))
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    prefix: str = "edge"
    client_id: str | None = None  # default: the node id (a stable id keeps the persistent session)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"  # auto: MQTT 5, else 3.1.1 (the embedded broker)
    keepalive_s: int = field(default=30, metadata=limit(5, 3600))
    session_expiry_s: int = field(default=7 * 86400, metadata=limit(0, 0xFFFFFFFF))
    reconnect_min_s: float = field(default=0.5, metadata=limit(above=0))
    reconnect_max_s: float = field(default=30.0, metadata=limit(above=0))
    connack_timeout_s: float = field(default=5.0, metadata=limit(above=0))  # auto: then MQTT 3.1.1
    shared_pools: bool = True  # pools through $share (MQTT 5, Mosquitto, the embedded broker)
    #: Every endpoint of a broker cluster, `host:port`; set, it replaces host and port: a client
    #: stays on one while it works and moves to the next when the connection is lost or refused.
    servers: tuple[str, ...] = ()
    server_order: Order = "ordered"  # or "random": shuffled once per process (spreads a fleet)

    def endpoints(self) -> list[tuple[str, int]]:
        """(host, port) of every endpoint, in the configured order (`servers`, else host and port)."""
        if not self.servers:
            return [(self.host, self.port)]
        try:
            return [parse_endpoint(server) for server in self.servers]
        except ValueError as exc:
            raise ConfigError("mqtt.servers", str(exc)) from None

    def password(self) -> str | None:
        """The password file's contents, or None without one; a ConfigError names the key."""
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                "mqtt.password_file", f"cannot read {self.password_file}: {exc.strerror}"
            ) from None

    def tls_context(self) -> ssl.SSLContext | None:
        """The client's TLS context (the fleet CA, its certificate), or None for plain MQTT."""
        if not self.tls or self.ca_file is None:
            return None
        return tls_context(self.ca_file, self.cert_file, self.key_file)


@dataclass(frozen=True)
class SecuritySection:
    """The agent's keys and acceptance limits (PROTOCOL 4)."""

    signing_key: Path | None = None
    trust_store: Path | None = None
    clock_skew_s: float = field(default=60.0, metadata=limit(0, 86400))
    max_lifetime_s: float = field(default=86400.0, metadata=limit(above=0))
    max_payload: int = field(default=1 << 20, metadata=limit(1024, 256 << 20))


def check_mqtt(mqtt: MqttSection) -> None:
    """What relates the keys of `[mqtt]` to each other."""
    if mqtt.reconnect_max_s < mqtt.reconnect_min_s:
        raise ConfigError("mqtt.reconnect_max_s", "must not be below mqtt.reconnect_min_s")
    if mqtt.tls and mqtt.ca_file is None:
        raise ConfigError("mqtt.ca_file", "is required when mqtt.tls is true")
    if (mqtt.cert_file is None) != (mqtt.key_file is None):
        raise ConfigError("mqtt.key_file", "mqtt.cert_file and mqtt.key_file go together")
    mqtt.endpoints()  # each of `servers` is host:port
