"""`GET /api/v1/events` (role `read`): the dashboard's live view as Server-Sent Events.

    retry: 2000                       (EventSource reconnects after 2 s)
    event: snapshot / data: {...}     (the fleet now: nodes, recent results and alerts, throughput)
    event: result | node | alert | gap / data: {...}    (then what changes, batched: events.py)
    : keepalive                       (a comment after `events.keepalive_s` of silence)

The page's EventSource sends the session cookie (same origin); a GET needs no CSRF header. The
stream ends when the client goes (the next write fails), the gateway stops (`EventHub.close`), the
token it was opened with expires (with the clock leeway every request gets), or its API client is
revoked or removed (checked before every write against the clients file SIGHUP reloads): a stream
is no way around a token's lifetime. The page's EventSource then reconnects with its cookie and is
refused (401) like any other request.

The connection's kernel send buffer is fixed at SEND_BUFFER (Linux would otherwise grow it to
megabytes for a reader that does not read): a page that falls behind by more than that, aiohttp's
64 KiB and its `events.queue_max` events loses the oldest and is told so (`gap`), rather than the
gateway holding ever more for it.

Thread rules: the handler runs on the HTTP loop; it only awaits its page's queue and its writes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from aiohttp import web

from .clients import ApiClient
from .events import RETRY, EventHub
from .middleware import require
from .tokens import LEEWAY_S

PATH = "/api/v1/events"
SEND_BUFFER = 64 << 10


class EventStream:
    def __init__(self, hub: EventHub, allowed: Callable[[ApiClient], bool]) -> None:
        self._hub = hub
        self._allowed = allowed  # the client is still known and not revoked (the current file)

    def add_to(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.events)

    async def events(self, request: web.Request) -> web.StreamResponse:
        client = require(request, "read")
        page = self._hub.subscribe(client)
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
                }
            )
            await response.prepare(request)
            _limit_send_buffer(request)
            await response.write(RETRY)
            keepalive_s = self._hub.settings.keepalive_s
            expires_at = float(request["expires_at"]) + LEEWAY_S  # as long as the token is accepted
            while (left := expires_at - time.time()) > 0 and self._allowed(client):
                chunk = await page.next(min(keepalive_s, left))
                if not chunk:
                    break
                await response.write(chunk)
        except ConnectionError:  # the page went away
            pass
        finally:
            self._hub.unsubscribe(page)
        return response


def _limit_send_buffer(request: web.Request) -> None:
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
