"""`EdgeBroker`: amqtt's `Broker` with our connection admission, routing and persistence.

amqtt keeps the listeners, the packet codec, the per-connection reader and writer, the client
message loop (subscribe / unsubscribe / disconnect dispatch), the plugin system and the session
expiry monitor. This subclass overrides the methods below, each for a fault listed in
`shared/NOTES.md` (the fix names recur in docstrings, tests and broker/README.md):

* `_client_connected` (FIX-ADMISSION): refuse a connection past `limits.max_connections`
  (FIX-CONNECTION-LIMIT; stock amqtt has only a per-listener semaphore, which makes new
  connections wait instead); authenticate *before* touching any existing session
  (stock amqtt deletes or resumes the session named by an unauthenticated CONNECT); bound the
  time to a complete CONNECT; a client error never escapes into asyncio's accept loop; a session
  takeover waits for the old connection to finish; a persistent session stays bound to the
  identity that created it; the Will topic must pass the publish ACL. FIX-CLIENT-ID: a client
  id that is the name of another identity (of the password file or acl.toml) is refused with
  CONNACK 2, so nobody can take an agent's node id before the agent first connects (which
  would lock the agent out for ever, its session being bound to the squatter). A CONNECT of another
  protocol level (an MQTT 5 client) is refused at once with CONNACK 0x01, which clients such as
  paho read as "fall back to 3.1.1"; stock amqtt misparses its properties and waits for bytes
  that never come until the connect timeout (FIX-PROTOCOL-LEVEL).
* `_handle_disconnect`: Will through the router, outbox detached, clean sessions forgotten.
* `_handle_subscription` / `add_subscription` / `_del_subscription` (FIX-SUBSCRIBE): SUBACK after
  the subscription is durable; a repeated filter replaces the old QoS [MQTT-3.8.4-3]; retained
  messages only for the new subscription (FIX-RETAINED-ACL).
* `_run_broadcast` and `retain_message`: internal publishes through the router (FIX-MIN-QOS).
* `_cleanup_session`: an expired session is removed from the store; at shutdown nothing is.
* `_session_monitor` (FIX-SESSION-EXPIRY): amqtt's applies one expiry (none by default) to every
  session; here each identity's role decides (broker/expiry.py): agents' sessions are kept,
  others' expire after `limits.session_expiry_s` (a day by default).
* `_start_listeners` (FIX-PERSISTENCE): restore the store before the first accept, listen with
  TCP_NODELAY and our TLS contexts (FIX-NODELAY, FIX-TLS-REQUIRE-CERT).
* `add_subscription` also accepts shared subscriptions `$share/{group}/{filter}` (which amqtt
  refuses); the ACL must grant the whole `$share/{group}/...` form (PROTOCOL 1: read access to
  the filter alone does not let a client join a group and take its share of the messages).
* Publishing to a `$` topic (FIX-DOLLAR): stock amqtt disconnects the client; here it is an
  ordinary publish subject to the ACL, except `$SYS/...`, reserved for the broker (dropped).
* `_on_publish` and Wills: what broker/publishing.py refuses ($SYS, the ACL, a retained task:
  FIX-RETAINED-TASKS) is acknowledged, dropped, counted and logged.

Thread rule: everything here runs on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker, RetainedApplicationMessage, Server
from amqtt.contexts import BrokerConfig, ListenerConfig, ListenerType
from amqtt.errors import PluginError
from amqtt.events import BrokerEvents
from amqtt.mqtt.connack import (
    IDENTIFIER_REJECTED,
    NOT_AUTHORIZED,
    UNACCEPTABLE_PROTOCOL_VERSION,
    ConnackPacket,
)
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.session import Session

from .acl import EdgeAclPlugin
from .auth import IDENTITY, REFUSAL, EdgeAuthPlugin
from .config import BrokerSettings, ListenerSettings
from .errors import StartError
from .expiry import SessionExpiry, left_over
from .handler import Acceptance, ClientViolation, EdgeProtocolHandler
from .limits import LimitEvents
from .publishing import PublishRules
from .router import Router
from .store import MemoryStore
from .topicfilter import parse_shared, valid_filter, valid_topic
from .transport import (
    ClosingStreamWriter,
    CoalescingWebSocketsWriter,
    LimitedStreamReader,
    LimitedWebSocketsReader,
    ReplayReader,
    encode_packet,
    protocol_level,
    read_packet,
    server_context,
    set_nodelay,
)

log = logging.getLogger("broker.core")

SUBACK_FAILURE = 0x80
TAKEOVER_TIMEOUT_S = 10.0  # longer than a closing connection's bounded drain
SESSION_TICK_S = 1.0  # how often disconnected sessions are looked at (the limits are whole seconds)


def amqtt_config(settings: BrokerSettings) -> BrokerConfig:
    """amqtt's own configuration: our two plugins and nothing else (no anonymous default)."""
    auth = settings.auth
    plugins = {
        "broker.auth.EdgeAuthPlugin": {
            "password_file": str(auth.password_file) if auth.password_file else None,
            "acl_file": str(auth.acl_file) if auth.acl_file else None,
            "allow_anonymous": auth.allow_anonymous,
        },
        "broker.acl.EdgeAclPlugin": {"acl_file": str(auth.acl_file) if auth.acl_file else None},
    }
    # amqtt requires a "default" listener and copies its values into the others; ours start in
    # `_start_listeners` from our settings, so the default one is left unbound (never started).
    return BrokerConfig(
        listeners={"default": ListenerConfig(bind=None)},
        plugins=plugins,
        session_expiry_interval=None,  # EdgeBroker._session_monitor expires sessions by role
        timeout_disconnect_delay=0,
    )


class EdgeBroker(Broker):  # type: ignore[misc]  # amqtt ships no type information
    """See the module docstring. Build inside a running event loop."""

    def __init__(self, settings: BrokerSettings, store: MemoryStore) -> None:
        try:
            super().__init__(amqtt_config(settings))
        except PluginError as exc:
            cause = exc.__cause__ or exc
            raise StartError(
                f"cannot load the broker's plugins: {getattr(cause, 'message', cause)}"
            ) from None
        self.settings = settings
        self.store = store
        self.auth_plugin = self._plugin(EdgeAuthPlugin)
        self.acl_plugin = self._plugin(EdgeAclPlugin)
        self.events = LimitEvents()
        self.expiry = SessionExpiry(settings.limits, self._role_of)
        self.router = Router(settings.limits, store, self.acl_plugin.check, self.events)
        self.publish_rules = PublishRules(self.router.allowed, settings.protocol.prefix)
        self.bound: dict[str, tuple[str, int]] = {}
        self._connections: dict[str, asyncio.Event] = {}
        self._writers: set[WriterAdapter] = set()  # every open connection, closed at shutdown
        self._stopping = False

    def _plugin(self, cls: type[Any]) -> Any:
        plugin = self.plugins_manager.get_plugin(cls.__name__)
        if not isinstance(plugin, cls):
            raise StartError(f"plugin {cls.__name__} did not load")
        return plugin

    # -- listeners and restart --------------------------------------------------------------------

    async def _start_listeners(self) -> None:
        """Restore the store, then listen (our TLS contexts; ports 0 pick free ones)."""
        state = await self.store.open()
        self.router.restore(state)
        for client_id, outbox in self.router.outboxes.items():
            handler, session = self.create_offline_session(client_id)
            session.clean_session = False
            session.username = outbox.username
            session.attributes[IDENTITY] = outbox.username
            self._sessions[client_id] = (session, handler)
        for name, listener in self._listener_settings():
            await self._listen(name, listener)

    def _listener_settings(self) -> list[tuple[str, ListenerSettings]]:
        listeners = self.settings.listeners
        every = [("tcp", listeners.tcp), ("tls", listeners.tls), ("ws", listeners.ws)]
        return [(name, listener) for name, listener in every if listener.enabled]

    async def _listen(self, name: str, listener: ListenerSettings) -> None:
        key = f"listeners.{name}"
        context = server_context(listener, key) if listener.tls else None
        kind = ListenerType.WS if name == "ws" else ListenerType.TCP
        try:
            instance = await self._create_server_instance(name, kind, listener.host, listener.port, context)
        except OSError as exc:
            raise StartError(
                f"{key}: cannot listen on {listener.host}:{listener.port}: {exc.strerror}"
            ) from None
        self._servers[name] = Server(name, instance, listener.max_connections)
        sockname = instance.sockets[0].getsockname()
        self.bound[name] = (str(sockname[0]), int(sockname[1]))
        log.info("listening: %s on %s:%d%s", name, *self.bound[name], " (TLS)" if context else "")

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        set_nodelay(writer.transport)
        limited = LimitedStreamReader(reader, self.settings.limits.max_packet_size)
        await self._client_connected(listener_name, limited, ClosingStreamWriter(writer))

    async def ws_connected(self, websocket: Any, listener_name: str) -> None:
        set_nodelay(websocket.transport)
        limited = LimitedWebSocketsReader(websocket, self.settings.limits.max_packet_size)
        await self._client_connected(listener_name, limited, CoalescingWebSocketsWriter(websocket))

    # -- connections ------------------------------------------------------------------------------

    async def _client_connected(
        self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter
    ) -> None:
        """FIX-ADMISSION: one connection from accept to close; nothing it does escapes."""
        server = self._servers.get(listener_name)
        if server is None or self._over_connection_limit(writer):
            await _close(writer)
            return
        await server.acquire_connection()
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        finally:
            self._writers.discard(writer)
            server.release_connection()

    def _over_connection_limit(self, writer: WriterAdapter) -> bool:
        """`limits.max_connections`, all listeners together: past it a new connection is closed
        at once, before it costs a CONNECT read or a session (as Mosquitto does)."""
        limit = self.settings.limits.max_connections
        if not limit or len(self._writers) < limit:
            return False
        self.events.connection_refused(str(writer.get_peer_info()), limit)
        return True

    async def _serve(self, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        peer = writer.get_peer_info()
        timeout = self.settings.limits.connect_timeout_s
        try:
            admitted = await asyncio.wait_for(self._admit(reader, writer), timeout)
        except asyncio.TimeoutError:
            log.info("closed %s: no complete CONNECT within %.1f s", peer, timeout)
            admitted = None
        except Exception as exc:  # garbage, a truncated or refused CONNECT: that client's problem only
            log.info("closed %s before CONNACK: %r", peer, exc)
            admitted = None
        if admitted is None:
            await _close(writer)
            return
        handler, session = admitted
        done = self._connections[session.client_id] = asyncio.Event()
        try:
            await self._open(handler, session)
            await self._client_message_loop(session, handler)
        except Exception as exc:
            log.warning("connection of %s ended by an error: %r", session.client_id, exc)
        finally:
            await self._connection_ended(session, handler)
            done.set()
            if self._connections.get(session.client_id) is done:
                del self._connections[session.client_id]

    async def _admit(
        self, reader: ReaderAdapter, writer: WriterAdapter
    ) -> tuple[EdgeProtocolHandler, Session] | None:
        """Read CONNECT, authenticate, settle the session; None when refused (CONNACK sent)."""
        first, body = await read_packet(reader)  # FIX-PROTOCOL-LEVEL: look at the level first
        if first >> 4 == 1 and (level := protocol_level(body)) not in (None, 4):
            log.info(
                "refused %s: MQTT protocol level %s (this broker speaks 3.1.1, level 4)",
                writer.get_peer_info(),
                level,
            )
            await _refuse(writer, UNACCEPTABLE_PROTOCOL_VERSION)
            return None
        connect = ReplayReader(encode_packet(first, body))  # amqtt parses it; later reads go to `reader`
        handler, incoming = await EdgeProtocolHandler.init_from_connect(connect, writer, self.plugins_manager)
        if not await self._authenticate(incoming, None):
            await _refuse(writer, incoming.attributes.get(REFUSAL, NOT_AUTHORIZED))
            return None
        if self.auth_plugin.squats(incoming):
            log.warning(
                "refused %s as %s: that client id is the name of another identity",
                incoming.client_id,
                incoming.username,
            )
            await _refuse(writer, IDENTIFIER_REJECTED)
            return None
        if incoming.will_flag and not self._will_allowed(incoming):
            log.info("refused %s: may not publish its Will to %r", incoming.client_id, incoming.will_topic)
            await _refuse(writer, NOT_AUTHORIZED)
            return None
        session = await self._resolve_session(incoming)
        if session is None:
            await _refuse(writer, NOT_AUTHORIZED)
            return None
        if session.keep_alive > 0:  # [MQTT-3.1.2-24]: one and a half times the keepalive
            session.keep_alive = math.ceil(session.keep_alive * 1.5)
        handler.attach(session, reader, writer)
        return handler, session

    async def _open(self, handler: EdgeProtocolHandler, session: Session) -> None:
        """Register the connection, make a new persistent session durable, CONNACK, start delivery."""
        if session.transitions.is_connected():  # a previous connection slower to close than the takeover wait
            session.transitions.disconnect()
        session.transitions.connect()
        handler.publish_sink = self._on_publish
        self._sessions[session.client_id] = (session, handler)
        outbox = self.router.outbox(
            session.client_id, persistent=not session.clean_session, username=session.username
        )
        barrier = self.store.barrier()
        if barrier is not None:
            await barrier  # a persistent session exists on disk before the client is told so
        await handler.mqtt_connack_authorize(True)
        await self.plugins_manager.fire_event(
            BrokerEvents.CLIENT_CONNECTED, client_id=session.client_id, client_session=session
        )
        await handler.start()
        outbox.attach(handler)
        log.debug(
            "connected: %s as %s (session present: %d)", session.client_id, session.username, session.parent
        )

    def _will_allowed(self, session: Session) -> bool:
        topic = session.will_topic or ""
        if not valid_topic(topic):
            return False
        return self.publish_rules.refusal(session.username, topic, bool(session.will_retain)) is None

    async def _resolve_session(self, incoming: Session) -> Session | None:
        """Clean start, resume or takeover; None when the client id belongs to another identity."""
        client_id = incoming.client_id
        current = self._sessions.get(client_id)
        if current is None:
            incoming.parent = 0
            return incoming
        old, old_handler = current
        owner = self.router.outboxes.get(client_id)
        bound = owner is not None and (owner.persistent or owner.connected)
        if bound and owner is not None and owner.username != incoming.username:
            log.warning(
                "refused %s as %s: that client id's session belongs to %s",
                client_id,
                incoming.username,
                owner.username,
            )
            return None
        if old.transitions.is_connected():
            await self._take_over(client_id, old_handler)
        if incoming.clean_session or old.clean_session:
            await self._forget(client_id)
            incoming.parent = 0
            return incoming
        _resume(old, incoming)
        return old

    async def _take_over(self, client_id: str, old_handler: Any) -> None:
        """[MQTT-3.1.4-2]: close the connection already using this client id, and wait for it."""
        log.info("client %s connected again: closing its previous connection", client_id)
        done = self._connections.get(client_id)
        await old_handler.handle_connection_closed()
        if done is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), TAKEOVER_TIMEOUT_S)

    async def _forget(self, client_id: str) -> None:
        session, handler = self._sessions.pop(client_id, (None, None))
        if handler is not None and session is not None and session.transitions.is_connected():
            await self._stop_handler(handler)
        self.router.forget(client_id)

    async def _connection_ended(self, session: Session, handler: EdgeProtocolHandler) -> None:
        outbox = self.router.outboxes.get(session.client_id)
        if outbox is not None and handler.acks is outbox:
            outbox.detach()
        current = self._sessions.get(session.client_id)
        if current is None or current[1] is not handler:
            return  # taken over or forgotten: someone else owns the session now
        if session.transitions.is_connected():
            await self._stop_handler(handler)
            session.transitions.disconnect()
        if session.clean_session:  # [MQTT-3.1.2-6]: a clean session ends with its connection
            self._sessions.pop(session.client_id, None)
            self.router.forget(session.client_id)

    async def _handle_disconnect(self, client_session: Session, handler: Any, disconnect_waiter: Any) -> None:
        """A Will on an abnormal end (not at broker shutdown), through the router; then detach."""
        clean_end = isinstance(disconnect_waiter.result(), DisconnectPacket)
        if not clean_end and client_session.will_flag and not self._stopping:
            topic = client_session.will_topic or ""
            if self._will_allowed(client_session):
                payload = bytes(client_session.will_message or b"")
                self.router.publish(
                    topic, payload, client_session.will_qos or 0, bool(client_session.will_retain)
                )
        await self._stop_handler(handler)
        outbox = self.router.outboxes.get(client_session.client_id)
        if outbox is not None and handler.acks is outbox:
            outbox.detach()
        if client_session.transitions.is_connected():
            client_session.transitions.disconnect()
        await self.plugins_manager.fire_event(
            BrokerEvents.CLIENT_DISCONNECTED,
            client_id=client_session.client_id,
            client_session=client_session,
        )

    def _on_publish(
        self, session: Session, topic: str, payload: bytes, qos: int, retain: bool
    ) -> Acceptance | None:
        """The handler's `publish_sink`: ACL, route, journal; the store's acceptance (the group
        of records this PUBLISH made, durable or cancelled) gates the PUBACK."""
        if not valid_topic(topic):
            raise ClientViolation(f"invalid topic name {topic!r} [MQTT-4.7.3]")
        refusal = self.publish_rules.refusal(session.username, topic, retain)
        if refusal is None:
            self.router.publish(topic, payload, qos, retain)
        else:
            self.router.stats.refused_publish += 1
            log.info(
                "dropped a %spublish of %s (%s) to %s: %s",
                "retained " if retain else "",
                session.client_id,
                session.username,
                topic,
                refusal,
            )
        return self.store.accepted()

    # -- subscriptions ----------------------------------------------------------------------------

    async def _handle_subscription(
        self, client_session: Session, handler: Any, subscribe_waiter: Any
    ) -> None:
        subscription = subscribe_waiter.result()
        codes = [await self.add_subscription(topic, client_session) for topic in subscription.topics]
        barrier = self.store.barrier()
        if barrier is not None:
            await barrier
        await handler.mqtt_acknowledge_subscription(subscription.packet_id, codes)
        for (topic_filter, _), code in zip(subscription.topics, codes, strict=True):
            if code == SUBACK_FAILURE:
                continue
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_SUBSCRIBED,
                client_id=client_session.client_id,
                topic=topic_filter,
                qos=code,
            )
            self.router.send_retained(client_session.client_id, topic_filter, code)

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        topic_filter, qos = subscription
        try:
            shared = parse_shared(topic_filter)
        except ValueError:
            return SUBACK_FAILURE
        inner = shared[1] if shared is not None else topic_filter
        if not valid_filter(inner) or qos not in (0, 1, 2):
            return SUBACK_FAILURE
        if not self.router.allowed(session.username, topic_filter, "subscribe"):
            log.info(
                "refused a subscription of %s (%s) to %s", session.client_id, session.username, topic_filter
            )
            return SUBACK_FAILURE
        self.router.subscribe(session.client_id, topic_filter, qos)
        return qos

    def _del_subscription(self, a_filter: str, session: Session) -> int:
        return int(self.router.unsubscribe(session.client_id, a_filter))

    async def _del_all_subscriptions(self, session: Session) -> None:
        self.router.index.remove_client(session.client_id)

    # -- internal publishes, retained, sessions ---------------------------------------------------

    async def _run_broadcast(self, running_tasks: Any) -> None:
        broadcast = await self._broadcast_queue.get()
        qos = broadcast.get("qos")
        payload = bytes(broadcast.get("data") or b"")
        self.router.publish(broadcast["topic"], payload, 2 if qos is None else qos, False)

    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: bytes | None,
        qos: int | None = None,
    ) -> None:
        if topic_name is not None:
            self.router.retained.set(topic_name, bytes(data or b""), qos or 0)

    async def _cleanup_session(self, client_id: str) -> None:
        """Session monitor (expiry, clean sessions) and shutdown; only the former forgets."""
        session, handler = self._sessions.pop(client_id, (None, None))
        if handler is not None and session is not None and session.transitions.is_connected():
            await self._stop_handler(handler)
        if self._stopping:
            outbox = self.router.outboxes.get(client_id)
            if outbox is not None:
                outbox.detach()
        else:
            self.router.forget(client_id)

    def _role_of(self, username: str | None) -> str | None:
        table = self.acl_plugin.table
        return table.role_of(username) if table is not None else None

    async def _session_monitor(self) -> None:
        """Replaces amqtt's monitor (one expiry for everyone): each second, expire disconnected
        persistent sessions past their role's limit (broker/expiry.py) and sweep clean ones."""
        while True:
            await self.expire_sessions(time.time())
            await asyncio.sleep(SESSION_TICK_S)

    async def expire_sessions(self, now: float) -> None:
        sessions = [(client_id, session) for client_id, (session, _) in self._sessions.items()]
        for client_id in left_over(sessions):
            await self._cleanup_session(client_id)
        for expired in list(self.expiry.expired(sessions, now)):
            self.events.session_expired(expired)
            await self._cleanup_session(expired.client_id)

    async def _delete_session(self, client_id: str) -> None:
        await self._forget(client_id)

    @property
    def retained_messages(self) -> dict[str, RetainedApplicationMessage]:
        """amqtt's view (for plugins): built from the router's retained messages."""
        return {t: RetainedApplicationMessage(None, t, p, q) for t, (p, q) in self.router.retained.items()}

    @property
    def subscriptions(self) -> dict[str, list[tuple[Session, int]]]:
        """amqtt's view (for plugins): built from the router's subscription index."""
        view: dict[str, list[tuple[Session, int]]] = {}
        for client_id in self.router.index.clients():
            session = self._sessions.get(client_id, (None, None))[0]
            for topic_filter, qos in self.router.index.filters_of(client_id).items():
                if session is not None:
                    view.setdefault(topic_filter, []).append((session, qos))
        return view

    # -- life cycle -------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        self._stopping = True
        try:
            await super().shutdown()
            for writer in list(self._writers):  # connections still before CONNACK
                await _close(writer)
        finally:
            await self.store.close()

    def reload_credentials(self) -> int:
        """Re-read passwords and ACL, both or neither (a `CredentialsError` changes nothing);
        disconnect clients whose identity is gone. Returns how many."""
        acl = self.acl_plugin.load()
        self.auth_plugin.reload(acl)
        self.acl_plugin.table = acl
        dropped = 0
        for session, handler in list(self._sessions.values()):
            if session.transitions.is_connected() and not self.auth_plugin.still_valid(session):
                log.warning(
                    "disconnecting %s (%s): identity no longer valid", session.client_id, session.username
                )
                handler.abort()
                dropped += 1
        return dropped


def _resume(old: Session, incoming: Session) -> None:
    """[MQTT-3.2.2-2]: the stored session continues, with this connection's parameters."""
    for name in (
        "will_flag",
        "will_message",
        "will_topic",
        "will_qos",
        "will_retain",
        "keep_alive",
        "username",
        "password",
        "remote_address",
        "remote_port",
        "ssl_object",
    ):
        setattr(old, name, getattr(incoming, name))
    old.attributes.update(incoming.attributes)
    old.clean_session = False
    old.parent = 1


async def _refuse(writer: WriterAdapter, code: int) -> None:
    with contextlib.suppress(Exception):
        await ConnackPacket.build(0, code).to_stream(writer)
    await _close(writer)


async def _close(writer: WriterAdapter) -> None:
    with contextlib.suppress(Exception):
        await writer.close()
