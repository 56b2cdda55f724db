"""Native kernels: C++ behind one C header (native/include/edge_kernels.h), bound with cffi,
checked against numpy references, with a numpy fallback. See native/README.md."""

from native.errors import (
    InvalidParams,
    KernelError,
    KernelFailed,
    KernelOutOfMemory,
    NativeLibraryError,
    UnknownKernel,
)
from native.registry import Kernel, Registry, load_registry
from native.validation import Limits

__all__ = [
    "InvalidParams",
    "Kernel",
    "KernelError",
    "KernelFailed",
    "KernelOutOfMemory",
    "Limits",
    "NativeLibraryError",
    "Registry",
    "UnknownKernel",
    "load_registry",
]
