"""`edge-agent subscribe`: make the agent's persistent session on a broker, then leave.

A broker keeps QoS 1 messages for a persistent session only once its subscriptions exist; NATS
keeps none at all for a topic nobody subscribes to (its MQTT queue is an interest-based stream).
When a fleet moves to another broker, running this for each agent against the new broker first
makes every task sent there from then on wait for the agent, however late it moves
(deploy/cluster/README.md). The session is the one `MqttLink` resumes: the same client id, clean
session off (MQTT 3.1.1; "auto" also uses 3.1.1, which every broker speaks) or clean start off with
the configured expiry (MQTT 5), the same subscriptions at QoS 1. No Will, no presence.

Blocking; runs on the calling thread (paho's network thread only while it waits).
"""

from __future__ import annotations

import queue
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ...common.endpoints import format_endpoint
from ...common.tls import nodelay
from ..errors import LinkError
from .mqtt import MQTT5, LinkSettings


def make_session(settings: LinkSettings, timeout: float = 30.0) -> tuple[str, list[str]]:
    """Connect to the first endpoint that answers, subscribe, disconnect cleanly; returns that
    endpoint and the filters the broker refused. `LinkError` when no endpoint accepts the login."""
    errors = []
    for host, port in settings.servers or ((settings.host, settings.port),):
        try:
            return format_endpoint(host, port), _subscribe(settings, host, port, timeout)
        except (OSError, LinkError) as exc:
            errors.append(f"{format_endpoint(host, port)}: {exc}")
    raise LinkError("no broker endpoint made the session: " + "; ".join(errors))


def _subscribe(settings: LinkSettings, host: str, port: int, timeout: float) -> list[str]:
    mqtt5 = settings.protocol == MQTT5
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311,
        clean_session=None if mqtt5 else False,
    )
    client.on_socket_open = nodelay
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client.on_connect = lambda c, u, flags, reason, props: events.put(("connack", reason))
    client.on_subscribe = lambda c, u, mid, codes, props: events.put(("suback", codes))
    client.on_disconnect = lambda c, u, flags, reason, props: events.put(("closed", reason))
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls is not None:
        client.tls_set_context(settings.tls)
    options: dict[str, Any] = {}  # MQTT 3.1.1: clean_session=False, given to the client
    if mqtt5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = settings.session_expiry_s
        options = {"clean_start": False, "properties": properties}
    client.connect(host, port, keepalive=settings.keepalive_s, **options)
    client.loop_start()
    try:
        _expect(events, "connack", timeout)
        client.subscribe([(topic, 1) for topic in settings.subscriptions])
        codes = _expect(events, "suback", timeout)
        return [
            topic
            for topic, code in zip(settings.subscriptions, codes, strict=True)
            if int(getattr(code, "value", code)) >= 0x80
        ]
    finally:
        client.disconnect()
        client.loop_stop()


def _expect(events: queue.Queue[tuple[str, Any]], kind: str, timeout: float) -> Any:
    try:
        got, value = events.get(timeout=timeout)
    except queue.Empty:
        raise LinkError(f"no {kind.upper()} within {timeout:g} s") from None
    if got != kind or getattr(value, "is_failure", False):
        raise LinkError(f"the broker refused: {value}")
    return value
