"""Errors of the kernel layer; each carries the protocol error code it stands for (PROTOCOL 4, 6)."""

from __future__ import annotations


class KernelError(Exception):
    """Base of every error a kernel call raises. `field` names the offending parameter, if any."""

    code = "kernel_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class UnknownKernel(KernelError):
    """No kernel of that name (acceptance check 8)."""

    code = "unknown_kernel"


class InvalidParams(KernelError):
    """The params fail validation: wrong type, shape, size or value (acceptance check 8)."""

    code = "invalid_params"


class KernelFailed(KernelError):
    """The kernel ran and reported an error (a failed attempt, code kernel_error)."""

    code = "kernel_error"


class KernelOutOfMemory(KernelFailed):
    """The kernel could not allocate its work buffers."""

    code = "out_of_memory"


class NativeLibraryError(Exception):
    """The native library could not be loaded or is not the ABI this package expects."""
