"""The routes of `/api/v1` and the public ones. Each handler: the role it needs, the request
checked, one call to the parts it was given (`Submitter`, the record, the fleet view), a view.

Thread rules: handlers run on the HTTP loop; the record's calls (SQLite, fsync) go to worker
threads (`asyncio.to_thread`) so a commit never stalls the loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from agent.protocol.topics import is_valid_id

from .bodies import body_of, credentials
from .clients import ApiClient
from .compute import KERNELS, sign_request
from .config import GatewayConfig
from .errors import ApiError, StoreError
from .history import SeenResults
from .middleware import Authenticator, require
from .nodes import FleetView
from .openapi import document
from .promtext import render
from .records import PENDING, TaskRecords, TaskRow
from .submit import Submitter
from .views import fleet_figures, seen_view, task_detail, task_view

MAX_PAGE = 500


class Routes:
    def __init__(
        self,
        config: GatewayConfig,
        records: TaskRecords,
        fleet: FleetView,
        submitter: Submitter,
        auth: Authenticator,
        connected: Any,
        seen: SeenResults,
    ) -> None:
        self.config = config
        self.records = records
        self.fleet = fleet
        self.submitter = submitter
        self.auth = auth
        self._connected = connected  # () -> bool: the MQTT link is up
        self.seen = seen  # the results seen lately (events.py's ring), for tasks not ours

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/api/v1/openapi.json", self.openapi)
        app.router.add_post("/api/v1/token", self.token)
        app.router.add_post("/api/v1/compute", self.compute)
        app.router.add_get("/api/v1/task/{task_id}", self.task)
        app.router.add_delete("/api/v1/task/{task_id}", self.cancel)
        app.router.add_get("/api/v1/tasks", self.tasks)
        app.router.add_get("/api/v1/nodes", self.nodes)
        app.router.add_get("/api/v1/nodes/{node}", self.node)
        app.router.add_post("/api/v1/nodes/{node}/{action:drain|resume}", self.steer)
        app.router.add_get("/api/v1/metrics", self.metrics)
        app.router.add_get("/api/v1/kernels", self.kernels)

    # -- public ------------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        database = await asyncio.to_thread(self._database_ok)
        broker = bool(self._connected())
        age = self.fleet.newest_heartbeat_age()
        ok = broker and database
        body = {
            "status": "ok" if ok else "unavailable",
            "broker_connected": broker,
            "database_ok": database,
            "newest_heartbeat_age_s": None if age is None else round(age, 3),
            "nodes_online": sum(1 for n in self.fleet.nodes() if n["online"]),
        }
        return web.json_response(body, status=200 if ok else 503)

    def _database_ok(self) -> bool:
        try:
            self.records.ping()
        except StoreError:
            return False
        return True

    async def prometheus(self, request: web.Request) -> web.Response:
        counts = await asyncio.to_thread(self.records.counts)
        text = render(self.fleet, counts, bool(self._connected()))
        return web.Response(
            text=text, content_type="text/plain", charset="utf-8", headers={"Cache-Control": "no-store"}
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(document())

    async def token(self, request: web.Request) -> web.Response:
        """OAuth 2 client credentials (RFC 6749 4.4): a JSON or form body, or HTTP Basic."""
        name, secret = await credentials(request, self.config.http.read_timeout_s)
        client, token, expires = await self.auth.sign_in(name, secret)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": int(expires - time.time()),
             "expires_at": expires, "roles": sorted(client.roles)}
        )  # fmt: skip

    # -- tasks ---------------------------------------------------------------------------------------

    async def compute(self, request: web.Request) -> web.Response:
        client = require(request, "submit")
        body = await body_of(request, self.config.http.read_timeout_s)
        wait = _wait(request, self.config.tasks.wait_max_s)
        signed = sign_request(
            body,
            signer=self.submitter.signer,
            topics=self.config.topics,
            default_target=self.config.tasks.default_target,
            ttl_s=self.config.tasks.ttl_s,
            traceparent=request.headers.get("traceparent"),
        )
        request["task_id"] = signed.task.id
        row = await self.submitter.submit(signed, client, wait)
        return _task_response(row, wait)

    async def task(self, request: web.Request) -> web.Response:
        """Ours: from the record. Not ours: `sys.status` to `?node=` (admin), else from the results
        the gateway saw lately (`source: seen`); 404 otherwise, and for another client's task."""
        client = require(request, "read")
        task_id = request.match_info["task_id"]
        node = request.query.get("node")
        row = await asyncio.to_thread(self.submitter.read, task_id)
        if row is None and node is not None and client.may("admin"):
            return await self._ask_agent(node, task_id, request.query.get("kid"), client)
        if row is None and (seen := self.seen.of_task(task_id)):
            return web.json_response(seen_view(task_id, seen))
        row = _visible(row, task_id, client)
        wait = _wait(request, self.config.tasks.wait_max_s)
        if wait and row.pending:
            row = await self.submitter.wait(row.id, wait) or row
        return web.json_response(task_detail(row))

    async def cancel(self, request: web.Request) -> web.Response:
        client = require(request, "submit")
        row = await self._own(request.match_info["task_id"], client)
        request["task_id"] = row.id
        if not row.pending:
            raise ApiError(409, "already_finished", f"task {row.id} already ended {row.status!r}")
        if row.target == "all" or row.target.startswith("pool:"):
            raise ApiError(
                409,
                "node_unknown",
                f"task {row.id} went to {row.target!r}: the node to cancel it on is not known yet",
            )
        command = await self.submitter.control(row.target, "sys.cancel", {"task": row.id}, client)
        return web.json_response({"task_id": row.id, "cancel": task_view(command)}, status=202)

    async def tasks(self, request: web.Request) -> web.Response:
        client = require(request, "read")
        q = request.query
        limit = _int(q.get("limit", "50"), "limit", 1, MAX_PAGE)
        status = q.get("status")
        node = q.get("node")
        if node is not None and not is_valid_id(node):
            raise ApiError(400, "invalid_query", "node must be a node id", field="node")
        only = None if client.may("admin") else client.name
        rows, cursor = await asyncio.to_thread(
            self.records.page, status=status, node=node, client=only, limit=limit, cursor=q.get("cursor")
        )
        return web.json_response({"tasks": [task_view(r) for r in rows], "next_cursor": cursor})

    async def _ask_agent(self, node: str, task_id: str, kid: str | None, client: ApiClient) -> web.Response:
        """A task this gateway did not submit (a device's, an operator's): `sys.status` to its node
        (PROTOCOL 8), answered with what the agent knows of it (admin only)."""
        if not is_valid_id(node) or node == "all" or not is_valid_id(task_id):
            raise ApiError(400, "invalid_query", "node and task id must be ids", field="node")
        row = await self.submitter.control(
            node, "sys.status", {"task": task_id}, client, self.config.tasks.wait_max_s
        )
        if row.pending:
            raise ApiError(
                504,
                "agent_silent",
                f"{node} did not answer sys.status within {self.config.tasks.wait_max_s:g} s",
            )
        answer = task_view(row)
        if row.status != "completed":
            raise ApiError(502, "agent_refused", f"{node} answered sys.status with {row.status}: {row.error}")
        return web.json_response(
            {"task_id": task_id, "node": node, "source": "sys.status", "status": answer["result"]}
        )

    async def _own(self, task_id: str, client: ApiClient) -> TaskRow:
        return _visible(await asyncio.to_thread(self.submitter.read, task_id), task_id, client)

    # -- nodes and figures ------------------------------------------------------------------------------

    async def nodes(self, request: web.Request) -> web.Response:
        require(request, "read")
        return web.json_response({"nodes": self.fleet.nodes()})

    async def node(self, request: web.Request) -> web.Response:
        require(request, "read")
        view = self.fleet.node(request.match_info["node"])
        if view is None:
            raise ApiError(404, "unknown_node", f"no node {request.match_info['node']!r} has been heard from")
        return web.json_response(view)

    async def steer(self, request: web.Request) -> web.Response:
        client = require(request, "admin")
        node, action = request.match_info["node"], request.match_info["action"]
        if not is_valid_id(node) or node == "all":
            raise ApiError(400, "invalid_node", "the node must be a node id", field="node")
        row = await self.submitter.control(
            node, f"sys.{action}", {}, client, _wait(request, self.config.tasks.wait_max_s)
        )
        request["task_id"] = row.id
        return _task_response(row, 1.0 if not row.pending else 0.0)

    async def kernels(self, request: web.Request) -> web.Response:
        require(request, "read")
        return web.json_response(KERNELS)

    async def metrics(self, request: web.Request) -> web.Response:
        require(request, "read")
        counts = await asyncio.to_thread(self.records.counts)
        return web.json_response(fleet_figures(self.fleet, counts, self.submitter.waiting))


#: The status of an answered request whose task ended otherwise than completed: the agent's
#: `rejected` (a check of PROTOCOL 4 failed there) is the client's error, 422 like ours; `refused`
#: (the agent could not authenticate the gateway's signature) is the gateway's, 502.
ENDED_STATUS = {"rejected": 422, "refused": 502}


def _task_response(row: TaskRow, wait: float) -> web.Response:
    """200 with the answer when it came within the wait (422/502: see ENDED_STATUS); 202 (accepted,
    pending) otherwise."""
    view = task_view(row)
    status = ENDED_STATUS.get(row.status, 200) if wait and row.status not in PENDING else 202
    return web.json_response(view, status=status, headers={"Location": view["links"]["self"]})


def _visible(row: TaskRow | None, task_id: str, client: ApiClient) -> TaskRow:
    """The row when `client` may see it (its own task, or any for admin); 404 otherwise."""
    if row is None or (row.client != client.name and not client.may("admin")):
        raise ApiError(
            404, "unknown_task", f"no task {task_id!r} submitted through this gateway by {client.name}"
        )
    return row


def _int(text: str, name: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name} must be an integer", field=name) from None
    if not lo <= value <= hi:
        raise ApiError(400, "invalid_query", f"{name} must be between {lo} and {hi}", field=name)
    return value


def _wait(request: web.Request, most: float) -> float:
    text = request.query.get("wait")
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, "invalid_query", "wait must be a number of seconds", field="wait") from None
    if not 0 <= value <= most:
        raise ApiError(400, "invalid_query", f"wait must be between 0 and {most:g} s", field="wait")
    return value
