"""Request bodies, read within the slow-client timeout: JSON or MessagePack (ndarray ext 1) for
`POST /api/v1/compute`, and an API client's credentials for `POST /api/v1/token` (JSON, a form or
HTTP Basic) and `POST /api/v1/session` (JSON only: a cross-site page can send JSON only after a
CORS preflight, which the gateway never grants, so no other site can sign a browser in).

Thread rules: coroutines of the HTTP loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import BasicAuth, web

from agent.protocol import CodecError, unpackb

from .errors import ApiError, TokenRefused
from .timeouts import within

JSON_TYPES = ("application/json", "")
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack")


async def read(request: web.Request, timeout: float) -> bytes:
    try:
        return await within(request.read(), timeout)
    except asyncio.TimeoutError:
        raise ApiError(
            408, "request_timeout", f"the request body did not arrive within {timeout:g} s"
        ) from None


async def body_of(request: web.Request, timeout: float) -> Any:
    kind = request.content_type if request.body_exists else ""
    raw = await read(request, timeout)
    if kind in MSGPACK_TYPES:
        try:
            return unpackb(raw)
        except CodecError as exc:
            raise ApiError(
                400, "invalid_body", f"the MessagePack body does not decode: {exc.message}"
            ) from None
    if kind not in JSON_TYPES:
        raise ApiError(415, "unsupported_media_type", "send application/json or application/msgpack")
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError(400, "invalid_body", f"the JSON body does not parse: {exc}") from None


async def credentials(request: web.Request, timeout: float) -> tuple[str, str]:
    """`client_id` and `client_secret` from HTTP Basic, a form or a JSON body (the token route)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            basic = BasicAuth.decode(header)
        except ValueError:
            raise TokenRefused("invalid_client", "malformed Basic credentials") from None
        return basic.login, basic.password
    if request.content_type == "application/x-www-form-urlencoded":
        form = await within(request.post(), timeout)
        return _pair(form.get("client_id"), form.get("client_secret"))
    return _pair_of(await body_of(request, timeout))


async def json_credentials(request: web.Request, timeout: float) -> tuple[str, str]:
    """`client_id` and `client_secret` from a body that must be `application/json` (the session
    route: a form, `text/plain` or a body without a type could come from another site)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the credentials as application/json")
    return _pair_of(await body_of(request, timeout))


def _pair_of(body: Any) -> tuple[str, str]:
    if not isinstance(body, dict):
        return _pair(None, None)
    return _pair(body.get("client_id"), body.get("client_secret"))


def _pair(name: object, secret: object) -> tuple[str, str]:
    if not isinstance(name, str) or not isinstance(secret, str):
        raise ApiError(
            400, "invalid_request", "give client_id and client_secret (JSON, a form, or HTTP Basic)"
        )
    return name, secret
