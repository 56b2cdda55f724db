"""A paho client from a device, operator or dashboard bundle (`edge-provision bundle`).

    login = load_login(Path(".demo/demo-sensor/device.toml"))
    client = connect(login, "demo-sensor-1")     # connected over mutual TLS, network loop running

The bundle's `[mqtt]` table says where and how (paths relative to the file); `[security]` names
the signing key and, for operators and dashboards, the trust store.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent import tomlio
from agent.protocol import Signer, Topics, TrustStore, load_signer

from .errors import DemoError

CONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Login:
    """What one bundle file says about reaching the broker and signing."""

    name: str
    host: str
    port: int
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None
    prefix: str
    signing_key: Path | None
    trust_store: Path | None

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    def signer(self) -> Signer:
        if self.signing_key is None:
            raise DemoError(f"{self.name}: the bundle names no signing key")
        return load_signer(self.signing_key, kid=self.name)

    def trust(self) -> TrustStore:
        if self.trust_store is None:
            raise DemoError(f"{self.name}: the bundle names no trust store")
        return TrustStore.load(self.trust_store)


def _path(base: Path, table: dict[str, Any], key: str) -> Path | None:
    value = table.get(key)
    return None if value is None else base / str(value)


def load_login(path: Path) -> Login:
    """Read `device.toml`, `operator.toml` or `dashboard.toml`; DemoError names what is missing."""
    try:
        doc = tomlio.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DemoError(f"cannot read the bundle file {path}: {exc}") from None
    base = path.parent
    mqtt: dict[str, Any] = doc.get("mqtt", {})
    security: dict[str, Any] = doc.get("security", {})
    name = security.get("kid") or next((t["name"] for t in doc.values() if "name" in t), None)
    if not isinstance(name, str) or "host" not in mqtt or "port" not in mqtt:
        raise DemoError(f"{path}: not a bundle file (needs [mqtt] host and port and a name)")
    password_file = _path(base, mqtt, "password_file")
    tls = None
    if mqtt.get("tls"):
        ca = _path(base, mqtt, "ca_file")
        tls = ssl.create_default_context(cafile=str(ca) if ca else None)
        cert, key = _path(base, mqtt, "cert_file"), _path(base, mqtt, "key_file")
        if cert is not None and key is not None:
            tls.load_cert_chain(str(cert), str(key))
    return Login(
        name=name,
        host=str(mqtt["host"]),
        port=int(mqtt["port"]),
        username=mqtt.get("username"),
        password=password_file.read_text(encoding="utf-8").strip() if password_file else None,
        tls=tls,
        prefix=str(mqtt.get("prefix", "edge")),
        signing_key=_path(base, security, "signing_key"),
        trust_store=_path(base, security, "trust_store"),
    )


def connect(login: Login, client_id: str, timeout: float = CONNECT_TIMEOUT_S) -> paho.Client:
    """A connected client (MQTT 3.1.1, clean session) with its network loop running.

    paho reconnects by itself after a drop; `DemoError` if the first CONNACK does not come or refuses.
    """
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    if login.tls is not None:
        client.tls_set_context(login.tls)
    if login.username is not None:
        client.username_pw_set(login.username, login.password)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(login.host, login.port, keepalive=30)
    except OSError as exc:
        raise DemoError(
            f"{login.name}: cannot reach the broker at {login.host}:{login.port}: {exc}"
        ) from None
    client.loop_start()
    if not connected.wait(timeout) or refused:
        client.loop_stop()
        client.disconnect()
        why = refused[0] if refused else f"no CONNACK within {timeout:.0f} s"
        raise DemoError(f"{login.name}: the broker at {login.host}:{login.port} refused: {why}")
    return client
