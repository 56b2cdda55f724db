"""The gateway's MQTT connection: one paho client with a persistent session, as a fleet identity.

    link = FleetLink(config.mqtt, client_id="gw-1", filters=[...], on_message=..., on_puback=...)
    link.start()                     # connects in the background; reconnects by itself
    mid = link.publish(topic, payload)   # QoS 1; `on_puback(mid)` once the broker has it
    link.connected                   # for /health

The session is persistent (MQTT 3.1.1 clean session off; MQTT 5 clean start off with the
configured session expiry) under a stable client id, the gateway's name: results that arrive
while the gateway is down or restarting wait in the broker and are delivered when it is back.
The subscriptions are made at every connect (a broker that lost the session loses nothing then).
With several endpoints (`mqtt.servers`, a cluster) a lost connection is made again to the next one
(paho's own reconnect, pointed there by `follow_next`): the session is the cluster's, not a node's.

Messages are acknowledged by the handler (`ack`, paho's manual acknowledgements), not when
`on_message` returns: a result is acknowledged once it is written (resultwriter.py).

Thread rules: `on_message` and `on_puback` run on paho's network thread and must not block for
long; `publish` and `ack` may be called from any thread (paho's own lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.common.endpoints import Endpoints, follow_next, format_endpoint
from agent.common.sections import MqttSection
from agent.common.tls import nodelay

log = logging.getLogger(__name__)

#: (topic, payload, ack): `ack()` acknowledges the message to the broker (manual acknowledgements:
#: call it once what the message carried is safe; the broker delivers it again until then).
OnMessage = Callable[[str, bytes, Callable[[], None]], None]
OnPuback = Callable[[int], None]


class FleetLink:
    def __init__(
        self,
        settings: MqttSection,
        *,
        client_id: str,
        filters: list[str],
        on_message: OnMessage,
        on_puback: OnPuback,
    ) -> None:
        self.settings = settings
        self.filters = filters
        self._on_message_cb = on_message
        self._on_puback_cb = on_puback
        self._connected = threading.Event()
        self.connects = 0
        self.last_connect_at: float | None = None
        mqtt5 = settings.protocol == "5"
        self._mqtt5 = mqtt5
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id or client_id,
            protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311,
            clean_session=None if mqtt5 else False,
            manual_ack=True,
        )
        c.on_socket_open = nodelay
        c.reconnect_delay_set(max(1, int(settings.reconnect_min_s)), max(1, int(settings.reconnect_max_s)))
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        if settings.username is not None:
            c.username_pw_set(settings.username, settings.password())
        context = settings.tls_context()
        if context is not None:
            c.tls_set_context(context)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_connect_fail = lambda client, userdata: self._follow_next(client)
        self._client = c
        self._endpoints = Endpoints(settings.endpoints(), settings.server_order)
        self._stopping = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def endpoint(self) -> str:
        return format_endpoint(*self._endpoints.current)

    def _connect_options(self) -> dict[str, Any]:
        properties = None
        if self._mqtt5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.settings.session_expiry_s
        clean_start = False if self._mqtt5 else paho.MQTT_CLEAN_START_FIRST_ONLY
        return {"clean_start": clean_start, "properties": properties}

    def _follow_next(self, client: paho.Client) -> None:
        if not self._stopping:
            follow_next(client, self._endpoints, self.settings.keepalive_s, **self._connect_options())

    def start(self) -> None:
        host, port = self._endpoints.current
        self._client.connect_async(host, port, keepalive=self.settings.keepalive_s, **self._connect_options())
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> int:
        """QoS 1; the message id whose PUBACK `on_puback` reports. Queued by paho while the
        connection is down and sent when it is back (in the same process)."""
        info = self._client.publish(topic, payload, qos=1)
        return int(info.mid)

    # -- paho's network thread ----------------------------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("the broker refused the gateway's connection: %s", reason)
            return
        self.connects += 1
        self.last_connect_at = time.time()
        client.subscribe([(f, 1) for f in self.filters])
        self._connected.set()
        log.info("connected to %s (session present: %s)", self.endpoint,
                 bool(getattr(flags, "session_present", False)))  # fmt: skip

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("lost the broker connection to %s (%s); paho reconnects", self.endpoint, reason)
        self._connected.clear()
        self._follow_next(client)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        mid, qos = msg.mid, msg.qos
        try:
            self._on_message_cb(msg.topic, bytes(msg.payload), lambda: self.ack(mid, qos))
        except Exception:  # one bad handler call must not kill paho's thread and the link with it
            log.exception("handling a message on %s failed", msg.topic)
            self.ack(mid, qos)  # the same failure would come again: do not have it redelivered

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (any thread: paho's own lock)."""
        self._client.ack(mid, qos)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._on_puback_cb(mid)
