"""The gateway's errors, under the project's one base (`EdgeError`).

`ApiError` is what an HTTP client sees: a status, a machine code, a sentence that says what to do,
and the field at fault when one is. Every refusal of the API is one of these, turned into JSON by
the error middleware (`api/errors.py`), so no handler formats an error body itself.
"""

from __future__ import annotations

from agent.common.errors import ConfigError, EdgeError

__all__ = ["ApiError", "ConfigError", "DuplicateTask", "GatewayError", "StoreError", "TokenRefused"]


class GatewayError(EdgeError):
    """Anything the gateway refuses or cannot do."""


class StoreError(GatewayError):
    """The task record (SQLite) cannot be opened or written."""


class ApiError(GatewayError):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.headers = headers or {}  # of the response: Retry-After, WWW-Authenticate, Allow

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": str(self)}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class TokenRefused(ApiError):
    """401: a missing, malformed, expired, forged or revoked bearer token; `code` says which."""

    def __init__(self, code: str, message: str) -> None:
        challenge = f'Bearer error="invalid_token", error_description="{code}"'
        super().__init__(401, code, message, headers={"WWW-Authenticate": challenge})


class DuplicateTask(ApiError):
    """409: a task id this gateway already used (the agent would refuse it: check 7)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            409,
            "duplicate_task_id",
            f"task {task_id!r} was already submitted through this gateway",
            field="task_id",
        )
