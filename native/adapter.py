"""The one place that turns native status codes into typed Python exceptions."""

from __future__ import annotations

from typing import Any

from native.binding import Binding
from native.errors import InvalidParams, KernelError, KernelFailed, KernelOutOfMemory

OK = 0
_EXCEPTIONS: dict[int, type[KernelError]] = {
    1: InvalidParams,  # EK_INVALID_ARGUMENT
    2: KernelFailed,  # EK_DOMAIN_ERROR
    3: KernelOutOfMemory,  # EK_OUT_OF_MEMORY
    4: KernelFailed,  # EK_INTERNAL_ERROR
}


def check(status: int, binding: Binding, err: Any, kernel: str) -> None:
    """Raise the exception of a non-zero status, with the field and message the kernel wrote."""
    if status == OK:
        return
    ffi = binding.ffi
    field = ffi.string(err.field).decode("utf-8", "replace") or None
    message = ffi.string(err.message).decode("utf-8", "replace")
    if status == 4:
        message = f"{kernel}: internal error: {message}"
    raise _EXCEPTIONS.get(status, KernelFailed)(message or f"{kernel}: status {status}", field=field)
