"""What the agent loads from its bundle before it starts: signing key, trust store, broker login.

Each failure is a `ConfigError` naming the setting whose file is wrong, so that an operator who
copied half a bundle reads which file is missing rather than a traceback.
"""

from __future__ import annotations

from pathlib import Path

from ..common.tls import tls_context
from ..protocol import Signer, TrustStore, TrustStoreError, load_signer
from .config import Config
from .errors import ConfigError
from .link.mqtt import LinkSettings


def load_agent_signer(config: Config) -> Signer:
    path = config.security.signing_key
    assert path is not None  # checked by config validation
    try:
        signer = load_signer(path, kid=config.node)
    except ValueError as exc:
        raise ConfigError("security.signing_key", str(exc)) from None
    if signer.alg != "ed25519":
        raise ConfigError("security.signing_key", f"an agent signs with Ed25519, {path} is {signer.alg}")
    return signer


def load_trust(config: Config) -> TrustStore:
    path = config.security.trust_store
    assert path is not None
    try:
        return TrustStore.load(path)
    except TrustStoreError as exc:
        raise ConfigError("security.trust_store", str(exc)) from None


def _read_password(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError("mqtt.password_file", f"cannot read {path}: {exc.strerror}") from None


def link_settings(config: Config, protocol: str | None = None) -> LinkSettings:
    """How to reach the broker; `protocol` overrides the configured one (a remembered probe)."""
    m = config.mqtt
    tls = tls_context(m.ca_file, m.cert_file, m.key_file) if m.tls and m.ca_file is not None else None
    topics = config.topics
    return LinkSettings(
        host=m.host,
        port=m.port,
        client_id=config.client_id,
        subscriptions=tuple(
            topics.agent_subscriptions(config.node, config.agent.pools, shared=m.shared_pools)
        ),
        protocol=protocol or m.protocol,
        keepalive_s=m.keepalive_s,
        session_expiry_s=m.session_expiry_s,
        reconnect_min_s=m.reconnect_min_s,
        reconnect_max_s=m.reconnect_max_s,
        connack_timeout_s=m.connack_timeout_s,
        username=m.username,
        password=_read_password(m.password_file) if m.password_file is not None else None,
        tls=tls,
    )
