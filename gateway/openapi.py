# ruff: noqa: E501  (a declarative document: one route or schema per line reads best)
"""The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json` (validated in the tests)."""

from __future__ import annotations

from typing import Any

from .compute import VALIDATORS

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
        "links": {"type": "object", "properties": {"self": {"type": "string"}}},
    },
}
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
            "get": {"summary": "a task's status and results", "parameters": [_TASK_ID, _WAIT],
                    "responses": _answers({"200": _TASK_ANSWER}, 403, 404)},
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
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA)"}
            },
            "schemas": {
                "Error": _ERROR,
                "Result": _RESULT,
                "Task": _TASK,
                "Compute": _COMPUTE,
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
