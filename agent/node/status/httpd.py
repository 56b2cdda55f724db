"""The agent's HTTP endpoint: `GET /metrics` (Prometheus text format) and `GET /health` (JSON).

    server = StatusServer("127.0.0.1", 9464, registry, health)
    server.start()          # binds (ConfigError naming metrics.port / metrics.host), serves on a thread
    server.port             # the bound port (config port 0: any free one)
    server.stop()

`/health` answers 200 with `{"status": "ok", ...}` when every check of health.py passes, else 503
with the failed checks named in `failed` and explained in `checks`. Anything else is 404. Requests
are served by daemon threads of the standard library's `ThreadingHTTPServer`; they read counters
and flags only, so a slow or stuck scraper never delays a task. There is no authentication: the
default host is 127.0.0.1; expose it further only on a network you trust.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import ConfigError
from ..observe.metrics import CONTENT_TYPE, Registry
from .health import Health

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
REQUEST_TIMEOUT_S = 10.0  # a client that connects and sends nothing holds a thread this long at most


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: Registry, health: Health) -> None:
        self.registry = registry
        self.health = health
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN (a DNS query that can stall start-up on
        # a board without a resolver); the name is used by nothing here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    server_version = "edge-agent"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(200, CONTENT_TYPE, self.server.registry.expose().encode())
            elif path == "/health":
                healthy, body = self.server.health.report()
                self._send(200 if healthy else 503, JSON_TYPE, json.dumps(body).encode())
            else:
                body = {"error": f"no such path {path!r}: try /metrics or /health"}
                self._send(404, JSON_TYPE, json.dumps(body).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the scraper went away
        except Exception:  # a bug: a 500 for this request, the server goes on
            log.exception("serving %s failed", path)
            self._send(500, JSON_TYPE, b'{"error": "internal error, see the agent log"}')

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class StatusServer:
    """/metrics and /health on a daemon thread."""

    def __init__(self, host: str, port: int, registry: Registry, health: Health) -> None:
        self.host = host
        self.requested_port = port
        self._registry = registry
        self._health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else self.requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        try:
            self._server = _Server((self.host, self.requested_port), self._registry, self._health)
        except socket.gaierror as exc:
            raise ConfigError("metrics.host", f"cannot resolve {self.host!r}: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    "metrics.port",
                    f"{self.host}:{self.requested_port} is in use (another agent on this machine?): "
                    "set metrics.port to a free port, 0 for any, or metrics.enabled = false",
                ) from None
            raise ConfigError(
                "metrics.host", f"cannot listen on {self.host}:{self.requested_port}: {exc.strerror}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, name="http", daemon=True
        )
        self._thread.start()
        log.info("metrics on %s/metrics, health on %s/health", self.url, self.url)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # waits for serve_forever to return
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)
