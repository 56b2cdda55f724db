"""A loaded native library: the cffi ffi object and library, and where they came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Binding:
    ffi: Any  # cffi.FFI
    lib: Any  # the compiled extension's lib, or the dlopen'ed library
    mode: Literal["api", "abi"]  # compiled cffi extension, or ABI mode over a shared library
    origin: str  # the module file or the library path
    build_info: str  # ek_build_info() of the library
