"""What every request goes through, around the routes (aiohttp middlewares), outermost first:

1. `security_headers`: `Strict-Transport-Security` on HTTPS, `no-store` caching, `nosniff`, on
   every answer, refusals included.
2. `errors`: an `ApiError` (and aiohttp's own HTTP errors: 404, 405, 413) becomes the JSON
   `{"error": {"code", "message", "field"?}}` with its status and headers (`Retry-After`,
   `WWW-Authenticate`); anything else is a logged 500.
3. `authenticate`: every route but the public ones needs `Authorization: Bearer <token>`
   (`TokenRefused`: 401 with `WWW-Authenticate` and the reason); then the client's token bucket
   (429 with `Retry-After`). The client is `request["client"]`.
4. `audit`: one JSON line per mutating request (POST, DELETE) to the audit log: who, what, the
   answer's status and the task it concerns.

Routes say the role they need with `require(request, "submit")` (403 otherwise).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from agent.common.ratelimit import TokenBucket

from .clients import ApiClient, ApiClients
from .errors import ApiError, TokenRefused
from .tokens import Tokens

log = logging.getLogger(__name__)
audit_log = logging.getLogger("gateway.audit")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = frozenset({"/health", "/metrics", "/api/v1/token", "/api/v1/openapi.json"})


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


def security_headers(tls: bool) -> Middleware:
    @web.middleware
    async def add(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        if tls:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    return add


class Authenticator:
    """Bearer tokens and rate limits (one bucket per API client, made at its first request)."""

    def __init__(self, tokens: Tokens, clients: ApiClients, rate_per_s: float, burst: int) -> None:
        self.tokens = tokens
        self.clients = clients  # replaced whole on SIGHUP
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, name: str) -> TokenBucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(self.rate_per_s, self.burst)
        return bucket

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

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRefused(
                "missing_token", "send Authorization: Bearer <token> (POST /api/v1/token gives one)"
            )
        claims = self.tokens.check(token.strip(), self.clients)
        self.throttle(claims.client.name)
        request["client"] = claims.client
        return await handler(request)


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
    except ApiError as exc:
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
    if "task_id" in request:
        entry["task_id"] = request["task_id"]
    audit_log.info(json.dumps(entry, sort_keys=True))
