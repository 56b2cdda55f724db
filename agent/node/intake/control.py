"""Control commands (PROTOCOL 8): `sys.*` on `{p}/control/{node}`, answered at once.

    control = Control(store, lifecycle, signing, audit, steering=agent)
    Intake(..., control=control)          # the intake calls control(accepted, received_at)

The intake has already run checks 1-7 (a `control` key, `target` = this node, replay protection)
and calls this on its own thread, ahead of the task queue. The answer is a result on
`{p}/results/{node}/{id}`, committed with the command's replay row and published once durable, so
a redelivered command is acknowledged again and never executed twice.

| command | params | result (`completed`) |
|---|---|---|
| `sys.status` | `task`, `kid`? | the task's record (`queries.describe`) |
| `sys.list` | `status`?, `kid`?, `limit`? (100, 1..1000) | `{tasks: [records, newest first], more}` |
| `sys.cancel` | `task`, `kid`? | `{cancelled, was, task, reason?}` |
| `sys.drain` / `sys.resume` | none | `{state, changed, queued, running}` |
| `sys.reload` | none | `{trusted_keys, config_file, applied, restart_needed}` |

Refusals are `rejected` results: another kernel is `unknown_kernel`; a missing, unknown or wrong
parameter, a task id that matches no task, or one that several issuers used (without `kid`), is
`invalid_params` naming the field. A reload that finds a broken file is `abandoned` with
`kernel_error` (the command ran and failed; the agent keeps its current keys and settings); an
answer too large to publish (`sys.list` of many records) is `abandoned` with `result_too_large`.
Cancelling a task that already finished is not an error: `{cancelled: false, reason}`.
Draining survives a restart (stored in the state): an agent drained for maintenance stays
drained until `sys.resume`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.protocol import AcceptedTask, Task, TaskRejected, is_valid_id, packb

from ..errors import ReloadError, ResultTooLarge, StoreError
from ..observe.audit import AuditLog
from ..publish.signing import Signing, SignOnce
from ..store import META, Op, Store
from ..tasks.lifecycle import Lifecycle, task_key
from .queries import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, STATUSES, TaskQueries

log = logging.getLogger(__name__)

#: Every command and its params, for CLIs and messages (the handlers are `Control.handlers`).
COMMANDS = {
    "sys.status": "task: id, kid?: str",
    "sys.list": f"status?: str, kid?: str, limit?: int (default {DEFAULT_LIST_LIMIT}, 1..{MAX_LIST_LIMIT})",
    "sys.cancel": "task: id, kid?: str",
    "sys.drain": "none",
    "sys.resume": "none",
    "sys.reload": "none",
}
_STATE_KEY = "control"  # META document: {"draining": bool}


class Report(Protocol):
    """A reload's report (reload.py `ReloadReport`): the `sys.reload` result is its body."""

    def to_body(self) -> dict[str, Any]: ...


class Steering(Protocol):
    """What the agent offers to control commands (runner.Agent)."""

    @property
    def draining(self) -> bool: ...

    def set_draining(self, draining: bool) -> None: ...

    def reload(self) -> Report: ...

    def load(self) -> tuple[int, int]:
        """(queued, running) now."""
        ...


class ParamError(Exception):
    """A command's params are wrong; answered `invalid_params` naming `field`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Command:
    """One command being answered: its body and who signed it."""

    task: Task
    kid: str  # who sent it

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.task.params)


def _check_params(command: Command, spec: dict[str, type]) -> dict[str, Any]:
    """Only the names in `spec`, each of its type (bool is not an int)."""
    params = command.params
    for name, value in params.items():
        expected = spec.get(name)
        if expected is None:
            known = ", ".join(spec) or "none"
            raise ParamError(name, f"{command.task.kernel} has no parameter {name!r} (known: {known})")
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ParamError(name, f"{name!r} must be {_KIND[expected]}, got {type(value).__name__}")
    return params


_KIND = {str: "a string", int: "an integer"}


def _task_param(params: dict[str, Any]) -> tuple[str, str | None]:
    task_id, kid = params.get("task"), params.get("kid")
    if task_id is None:
        raise ParamError("task", "'task' is required: the id of the task")
    if not is_valid_id(task_id):
        raise ParamError("task", f"'task' is not a task id ([A-Za-z0-9_.:-]{{1,64}}): {task_id!r}")
    return task_id, kid


class Control:
    """Answers `sys.*` commands; see the module docstring. Called on the intake thread."""

    def __init__(
        self, store: Store, lifecycle: Lifecycle, signing: Signing, audit: AuditLog, steering: Steering
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.signing = signing
        self.audit = audit
        self.steering = steering
        self.queries = TaskQueries(store, lifecycle)
        self.handlers: dict[str, Callable[[Command], dict[str, Any]]] = {
            "sys.status": self.status,
            "sys.list": self.list_tasks,
            "sys.cancel": self.cancel,
            "sys.drain": self.drain,
            "sys.resume": self.resume,
            "sys.reload": self.reload,
        }

    def restore(self) -> None:
        """At start: an agent drained before it stopped stays drained."""
        if (self.store.get(META, _STATE_KEY) or {}).get("draining"):
            log.warning(
                "the agent is draining (sys.drain before the last stop): send sys.resume to take tasks"
            )
            self.steering.set_draining(True)

    # -- the intake's entry point -----------------------------------------------------------------------

    def __call__(self, accepted: AcceptedTask, received_at: float) -> SignOnce:
        task = accepted.task
        handler = self.handlers.get(task.kernel)
        if handler is None:
            raise TaskRejected(
                f"{task.kernel!r} is not a control command (known: {', '.join(COMMANDS)}); "
                "kernels are sent on the tasks topic",
                code="unknown_kernel",
                task_id=task.id,
                kid=accepted.kid,
            )
        started = time.time()
        try:
            output = handler(Command(task, accepted.kid))
        except ParamError as exc:
            self._audit(accepted, "rejected", error=str(exc))
            raise TaskRejected(
                str(exc), code="invalid_params", task_id=task.id, kid=accepted.kid, field=exc.field
            ) from None
        except ReloadError as exc:
            return self._failed(accepted, received_at, started, str(exc))
        except StoreError:
            raise  # the intake stops: nothing more can be made durable
        except Exception as exc:  # a bug: contained, answered, the intake goes on
            log.exception("%s %s failed", task.kernel, task.id)
            return self._failed(accepted, received_at, started, f"internal error: {exc!r}")
        try:
            answer = self._answer(task, received_at, started, output=output)
        except ResultTooLarge as exc:  # e.g. sys.list of many records with long traces
            return self._failed(accepted, received_at, started, str(exc), code=exc.code)
        self._audit(accepted, "completed", params=task.params)
        return answer

    def _failed(
        self,
        accepted: AcceptedTask,
        received_at: float,
        started: float,
        message: str,
        code: str = "kernel_error",
    ) -> SignOnce:
        self._audit(accepted, "failed", params=accepted.task.params, error=message)
        error = {"code": code, "message": message}
        return self._answer(accepted.task, received_at, started, error=error)

    def _answer(
        self,
        task: Task,
        received_at: float,
        started: float,
        output: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
    ) -> SignOnce:
        finished = time.time()
        return self.signing.result(
            task.id,
            task.kernel,
            "completed" if error is None else "abandoned",
            run=1,
            attempt=1,
            received_at=received_at,
            started_at=started,
            finished_at=finished,
            duration_ms=(finished - started) * 1e3,
            output=None if output is None else packb(output),
            error=error,
            trace=task.trace,
        )

    def _audit(self, accepted: AcceptedTask, outcome: str, **extra: Any) -> None:
        """Who steered the agent, how (params only once checked: strings and ints)."""
        task = accepted.task
        self.audit.record(
            "control", command=task.kernel, kid=accepted.kid, id=task.id, outcome=outcome, **extra
        )

    # -- the commands -------------------------------------------------------------------------------------

    def _one_task(self, command: Command) -> dict[str, Any]:
        task_id, kid = _task_param(_check_params(command, {"task": str, "kid": str}))
        found = self.queries.find(task_id, kid)
        if not found:
            who = f"of {kid!r}" if kid is not None else "of any issuer"
            raise ParamError(
                "task",
                f"no task {task_id!r} {who}: not live, and not in the history "
                f"(kept {self.store.retention_days} days)",
            )
        if len(found) > 1:
            kids = ", ".join(view["kid"] for view in found)
            raise ParamError(
                "task", f"several issuers used the task id {task_id!r} ({kids}): add params.kid to choose one"
            )
        return found[0]

    def status(self, command: Command) -> dict[str, Any]:
        return self._one_task(command)

    def list_tasks(self, command: Command) -> dict[str, Any]:
        params = _check_params(command, {"status": str, "kid": str, "limit": int})
        status, kid = params.get("status"), params.get("kid")
        limit = params.get("limit", DEFAULT_LIST_LIMIT)
        if status is not None and status not in STATUSES:
            raise ParamError("status", f"'status' must be one of {', '.join(STATUSES)}, got {status!r}")
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ParamError("limit", f"'limit' must be from 1 to {MAX_LIST_LIMIT}, got {limit}")
        tasks, more = self.queries.matching(status, kid, limit)
        return {"tasks": tasks, "more": more}

    def cancel(self, command: Command) -> dict[str, Any]:
        view = self._one_task(command)
        reason = f"cancelled by {command.kid} (sys.cancel {command.task.id})"
        was = self.lifecycle.cancel(task_key(view["kid"], view["id"]), reason)
        if was is None:  # finished, maybe just now: its final record says how
            found = self.queries.find(view["id"], view["kid"])
            view = found[0] if found else view
            log.info("sys.cancel of %s/%s: already %s", view["kid"], view["id"], view["status"])
            return {
                "cancelled": False,
                "was": view["status"],
                "task": view,
                "reason": f"already {view['status']}",
            }
        log.info("sys.cancel of %s/%s (%s) by %s", view["kid"], view["id"], was, command.kid)
        return {"cancelled": True, "was": was, "task": view}

    def drain(self, command: Command) -> dict[str, Any]:
        return self._set_draining(command, True)

    def resume(self, command: Command) -> dict[str, Any]:
        return self._set_draining(command, False)

    def _set_draining(self, command: Command, draining: bool) -> dict[str, Any]:
        _check_params(command, {})
        changed = self.steering.draining != draining
        if changed:
            self.store.commit([Op(META, _STATE_KEY, {"draining": draining})])
            self.steering.set_draining(draining)
            log.warning("%s by %s", "draining: new tasks are refused" if draining else "resumed", command.kid)
        queued, running = self.steering.load()
        return {
            "state": "draining" if draining else "running",
            "changed": changed,
            "queued": queued,
            "running": running,
        }

    def reload(self, command: Command) -> dict[str, Any]:
        _check_params(command, {})
        return self.steering.reload().to_body()
