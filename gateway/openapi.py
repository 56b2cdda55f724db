# ruff: noqa: E501  (a declarative document: one route or schema per line reads best)
"""The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json` (validated in the tests)."""

from __future__ import annotations

from typing import Any

from .compute import VALIDATORS
from .cookies import COOKIE, CSRF_HEADER

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    },
}
_RESULT = {
    "type": "object",
    "properties": {
        "node": {"type": "string"},
        "run": {"type": "integer"},
        "attempt": {"type": "integer"},
        "status": {"type": "string"},
        "received_at": {"type": "number"},
        "started_at": {"type": ["number", "null"]},
        "finished_at": {"type": ["number", "null"]},
        "duration_ms": {"type": ["number", "null"]},
        "latency_ms": {"type": ["number", "null"]},
        "result": {},
        "error": {"type": ["object", "null"]},
    },
}
_TASK = {
    "type": "object",
    "required": ["task_id", "status", "algorithm", "target", "links"],
    "properties": {
        "task_id": {"type": "string"},
        "status": {
            "type": "string",
            "enum": [
                "submitted",
                "published",
                "completed",
                "abandoned",
                "expired",
                "cancelled",
                "rejected",
                "refused",
            ],
        },
        "algorithm": {"type": "string"},
        "target": {"type": "string"},
        "client": {"type": "string"},
        "priority": {"type": "integer"},
        "submitted_at": {"type": "number"},
        "updated_at": {"type": "number"},
        "expires_at": {"type": "number"},
        "trace": {"type": ["string", "null"]},
        "node": {"type": ["string", "null"]},
        "attempts": {"type": "integer"},
        "result": {},
        "error": {"type": ["object", "null"]},
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
        "params_summary": {
            "type": ["object", "null"],
            "description": "arrays as {shape, dtype}, scalars as they are",
        },
        "timings": {"$ref": "#/components/schemas/Timings"},
        "preview": {"description": "GET /task/{id}: the latest result's preview (Preview)"},
        "source": {"const": "record"},
        "links": {"type": "object", "properties": {"self": {"type": "string"}}},
    },
}
_TIMINGS = {
    "type": "object",
    "properties": {
        k: {"type": ["number", "null"]}
        for k in ("submitted_at", "received_at", "started_at", "finished_at", "latency_ms")
    },
}
_PREVIEW = {
    "description": "a result value, small: scalars as they are, a map's keys (20 at most) with previews, an array or list as below",
    "anyOf": [
        {"type": ["number", "string", "boolean", "null"]},
        {
            "type": "object",
            "required": ["shape", "dtype", "head", "plot", "min", "max"],
            "properties": {
                "shape": {"type": "array", "items": {"type": "integer"}},
                "dtype": {"type": "string"},
                "head": {"type": "array", "maxItems": 8},
                "plot": {"type": ["array", "null"], "maxItems": 64},
                "min": {"type": ["number", "null"]},
                "max": {"type": ["number", "null"]},
            },
        },
        {"type": "object", "additionalProperties": {}},
    ],
}
_RESULT_SUMMARY = {
    "type": "object",
    "required": ["id", "node", "kernel", "status", "run", "attempt", "received_at", "verified"],
    "properties": {
        "id": {"type": "string"},
        "node": {"type": "string"},
        "kernel": {"type": "string"},
        "status": {"type": "string"},
        "run": {"type": "integer"},
        "attempt": {"type": "integer"},
        **{
            k: {"type": ["number", "null"]}
            for k in ("received_at", "started_at", "finished_at", "duration_ms", "latency_ms")
        },
        "error": {"type": ["object", "null"]},
        "trace": {"type": ["string", "null"]},
        "priority": {
            "type": ["integer", "null"],
            "description": "from the gateway's record; null for a task it did not submit",
        },
        "preview": {"$ref": "#/components/schemas/Preview"},
        "verified": {"const": True},
    },
}
_SEEN_TASK = {
    "type": "object",
    "required": ["task_id", "source", "status", "results"],
    "description": "a task this gateway did not submit, from the last 1,000 results it saw",
    "properties": {
        "task_id": {"type": "string"},
        "source": {"const": "seen"},
        "status": {"type": "string"},
        "algorithm": {"type": "string"},
        "node": {"type": "string"},
        "priority": {"type": ["integer", "null"]},
        "trace": {"type": ["string", "null"]},
        "attempts": {"type": "integer"},
        "error": {"type": ["object", "null"]},
        "preview": {"$ref": "#/components/schemas/Preview"},
        "params_summary": {"type": "null"},
        "timings": {"$ref": "#/components/schemas/Timings"},
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/ResultSummary"}},
        "links": {"type": "object"},
    },
}
_ALERT = {
    "type": "object",
    "required": ["kind", "code", "message", "at", "count"],
    "properties": {
        "kind": {"enum": ["forged", "reject"]},
        "code": {"type": "string"},
        "topic": {"type": ["string", "null"]},
        "node": {"type": ["string", "null"]},
        "message": {"type": "string"},
        "at": {"type": "number"},
        "count": {"type": "integer", "description": "the total for this kind and code"},
        "verified": {
            "type": "boolean",
            "description": "false for a forged message; true for an agent's rejects report",
        },
    },
}
_SNAPSHOT = {
    "type": "object",
    "required": ["nodes", "results", "alerts", "throughput", "server_time", "client"],
    "properties": {
        "nodes": {"type": "array", "items": {"type": "object"}, "description": "as GET /api/v1/nodes"},
        "results": {
            "type": "array",
            "maxItems": 100,
            "items": {"$ref": "#/components/schemas/ResultSummary"},
        },
        "alerts": {
            "type": "object",
            "properties": {
                "forged": {"type": "object", "additionalProperties": {"type": "integer"}},
                "rejects": {"type": "object", "additionalProperties": {"type": "integer"}},
                "recent": {"type": "array", "maxItems": 50, "items": {"$ref": "#/components/schemas/Alert"}},
            },
        },
        "throughput": {
            "type": "object",
            "properties": {
                "bucket_s": {"const": 10},
                "end": {"type": "number"},
                "nodes": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "integer"}, "maxItems": 30},
                },
            },
        },
        "server_time": {"type": "number"},
        "client": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "roles": {"type": "array", "items": {"type": "string"}},
            },
        },
        "verified": {"const": True},
    },
}
_SESSION = {
    "type": "object",
    "required": ["client", "roles", "expires_at"],
    "properties": {
        "client": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "expires_at": {"type": "number"},
    },
}
_KERNELS = {
    "type": "object",
    "required": ["kernels"],
    "properties": {
        "kernels": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "params"],
                "properties": {
                    "name": {"type": "string"},
                    "doc": {"type": "string"},
                    "params": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "kind", "required"],
                            "properties": {
                                "name": {"type": "string"},
                                "kind": {"enum": ["ndarray", "int", "float", "range"]},
                                "required": {"type": "boolean"},
                                "doc": {"type": "string"},
                                "ndim": {"type": "integer"},
                                "minimum": {"type": "number"},
                                "maximum": {"type": "number"},
                                "exclusive_minimum": {"type": "number"},
                                "default": {},
                                "example": {},
                            },
                        },
                    },
                },
            },
        }
    },
}
_EVENTS = """Server-Sent Events (text/event-stream): `retry: 2000`, then `event: snapshot` (Snapshot), then
`result` (ResultSummary), `node` (a node as GET /api/v1/nodes), `alert` (Alert) and `gap` ({dropped}:
this page read too slowly and lost that many; reconnect for a new snapshot), each `data:` one JSON
line; `: keepalive` comments after 15 s of silence. Fleet content carries `verified: true`."""
_COMPUTE = {
    "type": "object",
    "required": ["algorithm"],
    "additionalProperties": False,
    "properties": {
        "algorithm": {"type": "string", "enum": sorted(VALIDATORS)},
        "parameters": {"type": "object"},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "node": {"type": "string"},
        "pool": {"type": "string"},
        "all": {"type": "boolean"},
        "task_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
        "max_retries": {"type": "integer", "minimum": 0, "maximum": 10},
        "run_at": {"type": "number"},
        "every_s": {"type": "number", "minimum": 1},
        "cron": {"type": "string"},
        "tz": {"type": "string"},
        "until": {"type": "number"},
        "trace": {"type": "string"},
    },
}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _answers(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    out = dict(ok)
    for status in (*errors, 401, 429):
        out[str(status)] = {"description": "refused", "content": _json("Error")}
    return out


_WAIT = {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0},
         "description": "seconds to wait for the answer (200 when it came, 202 otherwise)"}  # fmt: skip
_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
_NODE = {"name": "node", "in": "path", "required": True, "schema": {"type": "string"}}
_TASK_ANSWER = {"description": "the task", "content": _json("Task")}


def _paths() -> dict[str, Any]:
    return {
        "/health": {"get": {"summary": "broker, database and heartbeats", "security": [],
                            "responses": {"200": {"description": "healthy"}, "503": {"description": "unhealthy"}}}},
        "/metrics": {"get": {"summary": "the fleet in Prometheus text format", "security": [],
                             "responses": {"200": {"description": "text/plain; version=0.0.4"}}}},
        "/api/v1/token": {"post": {
            "summary": "exchange an API client's credentials for a bearer token (OAuth 2 client credentials)",
            "security": [],
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Credentials"}},
                                        "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/Credentials"}}}},
            "responses": _answers({"200": {"description": "a token", "content": _json("Token")}}, 400)}},
        "/api/v1/compute": {"post": {
            "summary": "submit a task (the original specification's body)",
            "parameters": [_WAIT, {"name": "traceparent", "in": "header", "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {**_json("Compute"), "application/msgpack": {"schema": {"$ref": "#/components/schemas/Compute"}}}},
            "responses": _answers({"200": _TASK_ANSWER, "202": _TASK_ANSWER}, 400, 403, 408, 413, 415, 422)}},
        "/api/v1/task/{task_id}": {
            "get": {"summary": "a task's status, results, params summary, timings and preview; a task another issuer submitted from the results seen lately (source: seen)",
                    "parameters": [_TASK_ID, _WAIT],
                    "responses": _answers({"200": {"description": "the task", "content": {"application/json": {"schema": {
                        "oneOf": [{"$ref": "#/components/schemas/Task"}, {"$ref": "#/components/schemas/SeenTask"}]}}}}}, 403, 404)},
            "delete": {"summary": "cancel a task on its node (sys.cancel)", "parameters": [_TASK_ID],
                       "responses": _answers({"202": {"description": "the cancel command was sent"}}, 403, 404, 409)}},
        "/api/v1/tasks": {"get": {
            "summary": "tasks submitted through this gateway, newest first",
            "parameters": [{"name": n, "in": "query", "schema": {"type": t}} for n, t in
                           (("status", "string"), ("node", "string"), ("limit", "integer"), ("cursor", "string"))],
            "responses": _answers({"200": {"description": "a page", "content": _json("TaskPage")}}, 400, 403)}},
        "/api/v1/nodes": {"get": {"summary": "every node heard from", "responses": _answers({"200": {"description": "nodes"}}, 403)}},
        "/api/v1/nodes/{node}": {"get": {"summary": "one node", "parameters": [_NODE],
                                         "responses": _answers({"200": {"description": "the node"}}, 403, 404)}},
        "/api/v1/nodes/{node}/drain": {"post": {"summary": "sys.drain (admin)", "parameters": [_NODE, _WAIT],
                                                "responses": _answers({"200": _TASK_ANSWER, "202": _TASK_ANSWER}, 400, 403)}},
        "/api/v1/nodes/{node}/resume": {"post": {"summary": "sys.resume (admin)", "parameters": [_NODE, _WAIT],
                                                 "responses": _answers({"200": _TASK_ANSWER, "202": _TASK_ANSWER}, 400, 403)}},
        "/api/v1/metrics": {"get": {"summary": "the fleet's figures as JSON", "responses": _answers({"200": {"description": "figures"}}, 403)}},
        "/api/v1/kernels": {"get": {"summary": "the kernels and their params (the dashboard's kernel picker)",
                                    "responses": _answers({"200": {"description": "kernels", "content": _json("Kernels")}}, 403)}},
        "/api/v1/events": {"get": {"summary": "the fleet live, for the dashboard (role read)", "description": _EVENTS,
                                   "responses": _answers({"200": {"description": "an event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}, 403, 503)}},
        "/api/v1/session": {
            "post": {"summary": "sign in: the token in an HttpOnly, SameSite=Strict cookie (edge_session); JSON only",
                     "security": [],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Credentials"}}}},
                     "responses": _answers({"200": {"description": "signed in (Set-Cookie)", "content": _json("Session")}}, 400, 415)},
            "get": {"summary": "who is signed in", "responses": _answers({"200": {"description": "the session", "content": _json("Session")}})},
            "delete": {"summary": "sign out: the cookie cleared (with the cookie: X-Edge-Dashboard: 1)",
                       "responses": _answers({"204": {"description": "signed out"}}, 403)}},
        "/": {"get": {"summary": "the dashboard page", "security": [], "responses": {"200": {"description": "text/html"}}}},
        "/static/{path}": {"get": {"summary": "the dashboard's files", "security": [],
                                   "parameters": [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
                                   "responses": {"200": {"description": "a file"}, "304": {"description": "not modified"}, "404": {"description": "no such file"}}}},
        "/api/v1/openapi.json": {"get": {"summary": "this document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    }  # fmt: skip


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edge-gateway",
            "version": "1",
            "description": "The fleet's HTTP API: signed tasks in, verified results out (gateway/README.md).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA)"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": COOKIE,
                    "description": f"the same JWT, set by POST /api/v1/session; POST, PUT, PATCH and DELETE with"
                    f" it must send {CSRF_HEADER}: 1 (else 403 csrf_header_missing)",
                },
            },
            "schemas": {
                "Error": _ERROR,
                "Result": _RESULT,
                "Task": _TASK,
                "Compute": _COMPUTE,
                "Timings": _TIMINGS,
                "Preview": _PREVIEW,
                "ResultSummary": _RESULT_SUMMARY,
                "SeenTask": _SEEN_TASK,
                "Alert": _ALERT,
                "Snapshot": _SNAPSHOT,
                "Session": _SESSION,
                "Kernels": _KERNELS,
                "TaskPage": {
                    "type": "object",
                    "properties": {
                        "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                },
                "Credentials": {
                    "type": "object",
                    "required": ["client_id", "client_secret"],
                    "properties": {"client_id": {"type": "string"}, "client_secret": {"type": "string"}},
                },
                "Token": {
                    "type": "object",
                    "required": ["access_token", "token_type", "expires_in"],
                    "properties": {
                        "access_token": {"type": "string"},
                        "token_type": {"const": "Bearer"},
                        "expires_in": {"type": "integer"},
                        "expires_at": {"type": "number"},
                        "roles": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    }
