"""What every request goes through, around the routes (aiohttp middlewares), outermost first:

1. `security_headers` (a response-prepare hook rather than a middleware, so that streamed answers
   such as `/api/v1/events` and files get them too): `Strict-Transport-Security` on HTTPS,
   `no-store` caching unless the route chose otherwise, `nosniff`, on every answer, refusals included.
2. `errors`: an `ApiError` (and aiohttp's own HTTP errors: 404, 405, 413) becomes the JSON
   `{"error": {"code", "message", "field"?}}` with its status and headers (`Retry-After`,
   `WWW-Authenticate`); anything else is a logged 500.
3. `authenticate`: every route but the public ones (`PUBLIC`, decided by the route the request
   matched, not by its path's spelling) needs `Authorization: Bearer <token>` or the dashboard's
   session cookie holding the same token (`TokenRefused`: 401 with `WWW-Authenticate` and the
   reason; a refused cookie is cleared). A cookie-authenticated unsafe request (POST, PUT, PATCH,
   DELETE) must carry `X-Edge-Dashboard: 1` (403 `csrf_header_missing`). Then the client's token
   bucket (429 with `Retry-After`). The client is `request["client"]`, its token's expiry
   `request["expires_at"]`, how it came `request["via"]` (`bearer` or `cookie`).
4. `audit`: one JSON line per mutating request (POST, DELETE) to the audit log: who, how, what, the
   answer's status, and the task or session step (`sign_in`, `sign_out`) it concerns.

Routes say the role they need with `require(request, "submit")` (403 otherwise).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.common.ratelimit import TokenBucket

from .clients import ApiClient, ApiClients
from .cookies import COOKIE, CSRF_HEADER, SAFE_METHODS, cookie_header
from .errors import ApiError, TokenRefused
from .tokens import Claims, Tokens

log = logging.getLogger(__name__)
audit_log = logging.getLogger("gateway.audit")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: (method, route pattern) of the routes anyone may call; HEAD counts as GET.
PUBLIC = frozenset(
    {
        ("GET", "/health"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/openapi.json"),
        ("POST", "/api/v1/token"),
        ("POST", "/api/v1/session"),
        ("GET", "/"),
        ("GET", "/static/{path}"),
    }
)
SignalHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers or None)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status, "http_error"
        )
        headers = dict(exc.headers) if exc.status == 405 else None  # Allow
        return error_response(ApiError(exc.status, code, exc.reason, headers=headers))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(ApiError(500, "internal_error", "the gateway failed; its log says why"))


def security_headers(tls: bool) -> SignalHook:
    """For `app.on_response_prepare`: runs as the headers of any answer are about to be sent."""

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        if tls:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"

    return add


def is_public(request: web.Request) -> bool:
    route = request.match_info.route
    if route.resource is None:  # nothing matched: 404/405 after the token is checked
        return False
    method = "GET" if route.method == "HEAD" else route.method
    return (method, route.resource.canonical) in PUBLIC


class Authenticator:
    """Bearer tokens, session cookies and rate limits (one bucket per API client, made at its
    first request)."""

    def __init__(
        self, tokens: Tokens, clients: ApiClients, rate_per_s: float, burst: int, *, secure: bool = False
    ) -> None:
        self.tokens = tokens
        self.clients = clients  # replaced whole on SIGHUP
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.secure = secure  # HTTPS: a cookie this sets is `Secure`
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, name: str) -> TokenBucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(self.rate_per_s, self.burst)
        return bucket

    def still_allowed(self, client: ApiClient) -> bool:
        """`client` is in the clients file now (reloaded on SIGHUP) and not revoked."""
        current = self.clients.by_name.get(client.name)
        return current is not None and not current.revoked

    def throttle(self, name: str) -> None:
        """429 with Retry-After once `name` is over its rate. Buckets are made for names this
        gateway knows only (API clients, and `token:` + a client's name): any other name shares
        one bucket, so made-up names cannot grow the table."""
        key = name if name.removeprefix("token:") in self.clients.by_name else "unknown"
        bucket = self.bucket(key)
        if not bucket.allow():
            wait = max(1, math.ceil(bucket.retry_after()))
            raise ApiError(
                429,
                "rate_limited",
                f"more than {self.rate_per_s:g} requests/s: retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )

    async def sign_in(self, name: str, secret: str) -> tuple[ApiClient, str, float]:
        """(client, token, expires_at) for an API client's credentials (`POST /api/v1/token` and
        `/api/v1/session`): rate-limited per name, the secret's hash checked in a worker thread."""
        self.throttle(f"token:{name}")
        clients = self.clients
        client = await asyncio.to_thread(clients.authenticate, name, secret)
        token, expires = self.tokens.issue(client)
        return client, token, expires

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_public(request):
            return await handler(request)
        claims, via = self._claims(request)
        request["client"] = claims.client  # from here on the audit line names the client
        request["expires_at"] = claims.expires_at
        request["via"] = via
        if via == "cookie" and request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
            raise ApiError(
                403,
                "csrf_header_missing",
                f"a cookie-authenticated request that changes something must send {CSRF_HEADER}: 1",
            )
        self.throttle(claims.client.name)
        return await handler(request)

    def _claims(self, request: web.Request) -> tuple[Claims, str]:
        """The request's token and how it came: `Authorization: Bearer` first, else the cookie."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise TokenRefused("missing_token", "send Authorization: Bearer <token>")
            return self.tokens.check(token.strip(), self.clients), "bearer"
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            raise TokenRefused(
                "missing_token",
                "send Authorization: Bearer <token> (POST /api/v1/token gives one), or sign in"
                " (POST /api/v1/session)",
            )
        try:
            return self.tokens.check(cookie, self.clients), "cookie"
        except TokenRefused as exc:
            exc.headers["Set-Cookie"] = cookie_header("", 0, self.secure)  # a dead cookie goes
            raise


def client_of(request: web.Request) -> ApiClient:
    client = request.get("client")
    assert isinstance(client, ApiClient), "a public route asked for the client"
    return client


def require(request: web.Request, role: str) -> ApiClient:
    client = client_of(request)
    if not client.may(role):
        raise ApiError(403, "forbidden", f"API client {client.name!r} lacks the {role!r} role")
    return client


@web.middleware
async def audit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals are audited too: the status is the error's."""
    if request.method not in ("POST", "DELETE"):
        return await handler(request)
    started = time.time()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except (ApiError, web.HTTPException) as exc:
        status = exc.status
        raise
    finally:
        _audit(request, started, status)


def _audit(request: web.Request, started: float, status: int) -> None:
    client = request.get("client")
    entry: dict[str, Any] = {
        "at": started,
        "client": client.name if isinstance(client, ApiClient) else None,
        "method": request.method,
        "path": request.path,
        "status": status,
        "remote": request.remote,
    }
    for key in ("via", "task_id", "session"):
        if key in request:
            entry[key] = request[key]
    audit_log.info(json.dumps(entry, sort_keys=True))
