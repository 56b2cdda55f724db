"""cffi build script (API mode): compiles the C++ kernels into native._edge_kernels_cffi.

Run by setuptools through setup.py's cffi_modules. It is exec'd, not imported, so it cannot
import the package: it loads native/cdef.py by path. Flags: C++17, -O3, no -march (the x86-64
hot loops carry their own AVX2 clones), -ffp-contract=off so results do not depend on the CPU.
-Werror is kept for our own builds (native/Makefile, CI); a user's pip install must not fail
because a newer compiler grew a new warning.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = sorted(str(p.relative_to(HERE.parent)) for p in (HERE / "src").glob("*.cpp"))
HEADERS = [*(HERE / "src").glob("*.hpp"), HERE / "include" / "edge_kernels.h"]
DEPENDS = sorted(str(p.relative_to(HERE.parent)) for p in HEADERS)
CXXFLAGS = ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", "-Wno-psabi", "-fvisibility=hidden"]


def _read_cdef() -> str:
    spec = importlib.util.spec_from_file_location("_edge_cdef", HERE / "cdef.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return str(module.read_cdef())


ffibuilder = FFI()
ffibuilder.cdef(_read_cdef())
ffibuilder.set_source(
    "native._edge_kernels_cffi",
    '#include "edge_kernels.h"',
    source_extension=".cpp",
    sources=SOURCES,
    include_dirs=[str(Path("native") / "include")],
    extra_compile_args=CXXFLAGS,
    depends=DEPENDS,  # rebuild when a header changes, not only a .cpp
    libraries=["stdc++", "m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
