"""A loaded native library: the cffi ffi object and library, and where they came from."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal


class Scratch(threading.local):
    """Per-thread output structs, reused from call to call (a kernel call never re-enters)."""

    def __init__(self, ffi: Any) -> None:
        self.err = ffi.new("ek_error *")
        self.zscore = ffi.new("ek_zscore_result *")
        stats = ffi.new("ek_stats_result *")
        # stats' output struct with its bytes: one unpack reads all six fields (cheaper than six
        # cdata attribute reads), and one thread-local lookup fetches all three.
        self.stats = (stats, ffi.buffer(stats), self.err)


@dataclass(frozen=True)
class Binding:
    ffi: Any  # cffi.FFI
    lib: Any  # the compiled extension's lib, or the dlopen'ed library
    mode: Literal["api", "abi"]  # compiled cffi extension, or ABI mode over a shared library
    origin: str  # the module file or the library path
    build_info: str  # ek_build_info() of the library
    scratch: Scratch = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scratch", Scratch(self.ffi))
