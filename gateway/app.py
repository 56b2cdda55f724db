"""The gateway: builds its parts from the configuration, wires them, runs them.

    gateway = Gateway(load_config("gw-1/gateway.toml"))
    await gateway.start()        # the record, the MQTT link, the HTTP site; .port is the bound one
    ...
    await gateway.stop()

Parts, each given what it needs in its constructor: `TaskRecords` (SQLite), `ApiClients` and
`Tokens` (auth), `FleetView`, `Waiters`, `Inbox` (verifies what the fleet publishes), `FleetLink`
(MQTT), `Submitter` (record, then publish), `Routes`, `SessionRoutes` and `StaticFiles` (HTTP).
`reload()` (SIGHUP) re-reads the API clients and the trust store.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from aiohttp import web

from agent.common.errors import ConfigError

from .clients import ApiClients
from .config import GatewayConfig
from .events import EventHub
from .inbox import Inbox, subscriptions
from .link import FleetLink
from .middleware import Authenticator, audit, errors, security_headers
from .nodes import FleetView
from .records import TaskRecords
from .resultwriter import ResultWriter
from .routes import Routes
from .session import SessionRoutes
from .static import WEB_ROOT, StaticFiles
from .stream import EventStream
from .submit import Submitter
from .tokens import Tokens, load_or_make_key
from .waiters import Waiters

log = logging.getLogger(__name__)
FLUSH_S = 0.5


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.records = TaskRecords.open(config.store.data_dir)
        self.fleet = FleetView()
        tokens = Tokens(
            load_or_make_key(config.token_key_path),
            issuer=config.name,
            audience=config.auth.audience,
            ttl_s=config.auth.token_ttl_s,
        )
        self.auth = Authenticator(
            tokens,
            ApiClients.load(config.auth.api_clients),
            config.limits.rate_per_s,
            config.limits.burst,
            secure=config.http.tls_cert is not None,
        )
        self.signer = config.signer()
        self.trust = config.trust()
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self.inbox: Inbox | None = None
        self.hub: EventHub | None = None
        self.link: FleetLink | None = None
        self.submitter: Submitter | None = None
        self.writer: ResultWriter | None = None
        self._flusher: asyncio.Task[None] | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        http = self.config.http
        if http.tls_cert is None or http.tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(http.tls_cert, http.tls_key)
        return context

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        waiters = Waiters(loop)
        topics = self.config.topics
        self.writer = ResultWriter(self.records, self.fleet)
        self.writer.start()
        self.hub = hub = EventHub(
            self.fleet,
            priorities=self.records.priorities,
            loop=loop,
            settings=self.config.events,
            topics=topics,
        )
        self.inbox = Inbox(topics, self.trust, self.records, self.fleet, waiters, self.writer, listener=hub)
        submitter: Submitter | None = None

        def puback(mid: int) -> None:
            if submitter is not None:
                submitter.on_puback(mid)

        self.link = FleetLink(
            self.config.mqtt,
            client_id=self.config.name,
            filters=subscriptions(topics),
            on_message=self.inbox.handle,
            on_puback=puback,
        )
        submitter = Submitter(
            self.signer, topics, self.records, self.link, waiters, loop, read=self.writer.read
        )
        tls = self.tls_context()
        app = self._app(submitter, hub, self.link, tls is not None)
        hub.start()
        self.submitter = submitter
        self._flusher = loop.create_task(self._flush_published())
        self.link.start()
        again = submitter.republish()  # paho queues them until the connection is up
        if again:
            log.warning("publishing again %d task(s) the broker had not acknowledged before a stop", again)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        sock = _listening_socket(self.config.http.host, self.config.http.port)
        self.port = int(sock.getsockname()[1])  # the bound one, for port 0
        await web.SockSite(self.runner, sock, ssl_context=tls).start()
        scheme = "https" if tls else "http"
        log.info(
            "edge-gateway %s listening on %s://%s:%s",
            self.config.name,
            scheme,
            self.config.http.host,
            self.port,
        )

    def _app(self, submitter: Submitter, hub: EventHub, link: FleetLink, tls: bool) -> web.Application:
        """The HTTP side: middlewares (middleware.py) and every route, given the parts they use."""
        app = web.Application(
            client_max_size=self.config.http.max_body_bytes,
            middlewares=[errors, audit, self.auth.middleware],
        )
        app.on_response_prepare.append(security_headers(tls))
        app.on_shutdown.append(self._close_streams)
        routes = Routes(
            self.config, self.records, self.fleet, submitter, self.auth, lambda: link.connected, hub.seen
        )
        routes.add_to(app)
        SessionRoutes(self.auth, self.config.http.read_timeout_s, secure=tls).add_to(app)
        StaticFiles(self.config.http.web_dir or WEB_ROOT).add_to(app)
        EventStream(hub, self.auth.still_allowed).add_to(app)
        return app

    async def _close_streams(self, app: web.Application) -> None:
        """aiohttp's shutdown waits for running handlers: the event streams end first."""
        if self.hub is not None:
            await self.hub.close()

    async def _flush_published(self) -> None:
        """PUBACKs are noted in memory and written with the next group commit; when requests are
        few, this writes them within FLUSH_S."""
        while True:
            await asyncio.sleep(FLUSH_S)
            if self.submitter is not None:
                await self.submitter.flush_published()

    def reload(self) -> None:
        """SIGHUP: the API clients (revocations, new clients) and the trust store (agent keys)."""
        self.auth.clients = ApiClients.load(self.config.auth.api_clients)
        self.trust = self.config.trust()
        if self.inbox is not None:
            self.inbox.trust = self.trust
        log.info("reloaded the API clients and the trust store")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self._flusher is not None:
            self._flusher.cancel()
        if self.submitter is not None:
            await self.submitter.flush_published()
        if self.link is not None:
            self.link.stop()
        if self.writer is not None:
            self.writer.stop()
        self.records.close()


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bound here so the port (0: a free one) is known without aiohttp's private attributes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("http.port", f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(512)
    sock.setblocking(False)
    return sock
