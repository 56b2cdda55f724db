"""Kernels that misbehave on purpose, for the test suite: they crash, hang, eat memory or fail.

They exist only when the configuration says `[testing] test_kernels = true` (never in a bundle
`edge-provision` writes): the agent then accepts them at check 8 and its workers run them. Names
start with `test.` so they can never shadow a kernel of PROTOCOL 9.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from native import InvalidParams, KernelFailed

Params = Mapping[str, Any]


def _number(params: Params, name: str, default: float | None = None) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidParams("must be a number >= 0", field=name)
    return float(value)


def _check_sleep(params: Params) -> None:
    _number(params, "seconds")


def _sleep(params: Params, attempt: int) -> Any:
    time.sleep(_number(params, "seconds"))
    return {"slept": params["seconds"], "pid": os.getpid()}


def _hang(params: Params, attempt: int) -> Any:
    while True:  # holds the GIL and ignores everything but SIGKILL's effect
        pass


def _crash(params: Params, attempt: int) -> Any:
    if params.get("how") == "abort":
        os.abort()
    ctypes.string_at(0)  # SIGSEGV
    return None


def _eat_memory(params: Params, attempt: int) -> Any:
    hoard = []
    while True:
        hoard.append(bytearray(16 << 20))  # touched pages: real memory, up to the worker's limit


def _check_flaky(params: Params) -> None:
    _number(params, "fail_attempts")


def _flaky(params: Params, attempt: int) -> Any:
    """Fails its first `fail_attempts` attempts with `code` (kernel_error, or crash/timeout)."""
    if attempt <= _number(params, "fail_attempts"):
        how = params.get("how", "kernel_error")
        if how == "crash":
            _crash({}, attempt)
        if how == "hang":
            _hang({}, attempt)
        raise KernelFailed(f"attempt {attempt} fails on purpose")
    return {"attempt": attempt}


def _fail(params: Params, attempt: int) -> Any:
    raise KernelFailed(str(params.get("message", "failing on purpose")))


def _check_mark(params: Params) -> None:
    if not isinstance(params.get("path"), str) or not isinstance(params.get("tag"), str):
        raise InvalidParams("'path' and 'tag' must be strings", field="path")
    _number(params, "seconds", 0.0)


def _mark(params: Params, attempt: int) -> Any:
    """Appends `tag attempt time` to `path` when it starts, then sleeps: tests count executions."""
    line = f"{params['tag']} {attempt} {time.time():.6f}\n".encode()
    fd = os.open(params["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    time.sleep(_number(params, "seconds", 0.0))
    return {"tag": params["tag"], "attempt": attempt}


def _echo(params: Params, attempt: int) -> Any:
    return dict(params)


def _no_check(params: Params) -> None:
    pass


#: name -> (params check in the agent, run in a worker)
TEST_KERNELS: dict[str, tuple[Callable[[Params], None], Callable[[Params, int], Any]]] = {
    "test.sleep": (_check_sleep, _sleep),
    "test.hang": (_no_check, _hang),
    "test.crash": (_no_check, _crash),
    "test.eat_memory": (_no_check, _eat_memory),
    "test.flaky": (_check_flaky, _flaky),
    "test.fail": (_no_check, _fail),
    "test.echo": (_no_check, _echo),
    "test.mark": (_check_mark, _mark),
}
