"""How the agent reaches its broker, from its configuration: address, login, TLS, subscriptions.

Each failure is a `ConfigError` naming the setting whose file is wrong, so that an operator who
copied half a bundle reads which file is missing rather than a traceback.
"""

from __future__ import annotations

from ..config import Config
from .mqtt import LinkSettings


def link_settings(config: Config, protocol: str | None = None) -> LinkSettings:
    """How to reach the broker; `protocol` overrides the configured one (a remembered probe)."""
    m = config.mqtt
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
        password=m.password(),
        tls=m.tls_context(),
        servers=tuple(m.endpoints()) if m.servers else (),
        server_order=m.server_order,
    )
