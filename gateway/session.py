"""The dashboard's sign-in: the token of `POST /api/v1/token` in an HttpOnly cookie, so the page
never holds it (no token in a URL, none in localStorage: a script injected into the page cannot
read it).

    POST   /api/v1/session  {"client_id", "client_secret"}  -> 200 {client, roles, expires_at} + Set-Cookie
    GET    /api/v1/session                                   -> 200 the same, for the cookie (or a bearer)
    DELETE /api/v1/session                                   -> 204, the cookie cleared

The cookie is `edge_session=<JWT>; HttpOnly; SameSite=Strict; Path=/; Max-Age=<ttl>` (+ `Secure`
on HTTPS); the middleware (middleware.py) accepts it wherever a bearer token is accepted, and asks a
cookie-authenticated POST, PUT, PATCH or DELETE for the header `X-Edge-Dashboard: 1` (403
`csrf_header_missing` otherwise): another site's page cannot send a custom header without a CORS
preflight, which the gateway never grants. Sign-in takes JSON only for the same reason
(bodies.json_credentials), and shares the token route's refusals and rate limit.

Thread rules: handlers on the HTTP loop; the secret's hash is checked in a worker thread.
"""

from __future__ import annotations

import time

from aiohttp import web

from .bodies import json_credentials
from .clients import ApiClient
from .cookies import cookie_header
from .middleware import Authenticator, client_of

PATH = "/api/v1/session"


def session_view(client: ApiClient, expires_at: float) -> dict[str, object]:
    return {"client": client.name, "roles": sorted(client.roles), "expires_at": expires_at}


class SessionRoutes:
    def __init__(self, auth: Authenticator, read_timeout_s: float, secure: bool) -> None:
        self._auth = auth
        self._read_timeout_s = read_timeout_s
        self._secure = secure

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.sign_in)
        app.router.add_get(PATH, self.current)
        app.router.add_delete(PATH, self.sign_out)

    async def sign_in(self, request: web.Request) -> web.Response:
        request["session"] = "sign_in"  # the audit line says what the request was
        name, secret = await json_credentials(request, self._read_timeout_s)
        client, token, expires = await self._auth.sign_in(name, secret)
        request["client"] = client
        max_age = max(0, int(expires - time.time()))
        return web.json_response(
            session_view(client, expires),
            headers={"Set-Cookie": cookie_header(token, max_age, self._secure)},
        )

    async def current(self, request: web.Request) -> web.Response:
        return web.json_response(session_view(client_of(request), float(request["expires_at"])))

    async def sign_out(self, request: web.Request) -> web.Response:
        request["session"] = "sign_out"
        return web.Response(status=204, headers={"Set-Cookie": cookie_header("", 0, self._secure)})
