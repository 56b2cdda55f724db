"""Find and load the native library; report why not when it cannot be had.

Order: the library named by EDGE_KERNELS_LIB (ABI mode, nothing else is tried); else the cffi
extension compiled by `pip install` (API mode, the fastest calls); else the library shipped for
this machine in native/lib/<target>/ (ABI mode: how cross-built ARM libraries reach a board).
EDGE_KERNELS_BACKEND=numpy skips the native library; =native makes its absence an error.
"""

from __future__ import annotations

import importlib
import os
import platform
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from native.binding import Binding
from native.cdef import read_cdef
from native.errors import NativeLibraryError

ENV_LIBRARY = "EDGE_KERNELS_LIB"
ENV_BACKEND = "EDGE_KERNELS_BACKEND"
LIBRARY_NAME = "libedge_kernels.so"
EXTENSION = "native._edge_kernels_cffi"
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class LoadOutcome:
    binding: Binding | None
    problems: tuple[str, ...]  # why each candidate was not used


def target_name(machine: str | None = None, pointer_bits: int | None = None) -> str:
    """The library folder for this machine: x86_64, aarch64 or armhf.

    A 32-bit userland on a 64-bit ARM kernel (Raspberry Pi OS 32-bit) reports aarch64 but needs armhf.
    """
    name = (machine or platform.machine()).lower()
    bits = pointer_bits or struct.calcsize("P") * 8
    if name in ("x86_64", "amd64"):
        return "x86_64"
    if name in ("aarch64", "arm64", "armv8l", "armv8b"):
        return "aarch64" if bits == 64 else "armhf"
    if name.startswith("armv7"):
        return "armhf"
    return name


def packaged_library(machine: str | None = None) -> Path:
    return PACKAGE_DIR / "lib" / target_name(machine) / LIBRARY_NAME


def _checked(binding: Binding) -> Binding:
    version = binding.lib.ek_abi_version()
    if version != binding.lib.EK_ABI_VERSION:
        raise NativeLibraryError(
            f"{binding.origin}: ABI version {version}, this package needs {binding.lib.EK_ABI_VERSION}"
        )
    return binding


def _info(binding_ffi: object, lib: object) -> str:
    return str(binding_ffi.string(lib.ek_build_info()).decode())  # type: ignore[attr-defined]


def load_api() -> Binding:
    """The cffi extension built by pip install (ImportError when it was not built)."""
    module = importlib.import_module(EXTENSION)
    ffi, lib = module.ffi, module.lib
    return _checked(Binding(ffi, lib, "api", str(module.__file__), _info(ffi, lib)))


def load_abi(path: Path) -> Binding:
    """A shared library opened with dlopen, declared from the header (OSError when missing)."""
    from cffi import FFI

    if not path.is_file():
        raise OSError(f"{path}: no such file")
    ffi = FFI()
    ffi.cdef(read_cdef())
    lib = ffi.dlopen(str(path))
    return _checked(Binding(ffi, lib, "abi", str(path), _info(ffi, lib)))


def _candidates(env: Mapping[str, str]) -> list[tuple[str, Callable[[], Binding]]]:
    explicit = env.get(ENV_LIBRARY)
    if explicit:
        return [(explicit, lambda: load_abi(Path(explicit)))]
    packaged = packaged_library()
    return [(EXTENSION, load_api), (str(packaged), lambda: load_abi(packaged))]


def load_binding(env: Mapping[str, str] | None = None) -> LoadOutcome:
    """The first candidate that loads, or None with the reasons (NativeLibraryError if required)."""
    env = os.environ if env is None else env
    choice = env.get(ENV_BACKEND, "auto")
    if choice not in ("auto", "native", "numpy"):
        raise NativeLibraryError(f"{ENV_BACKEND}={choice!r}: expected auto, native or numpy")
    if choice == "numpy":
        return LoadOutcome(None, (f"{ENV_BACKEND}=numpy",))
    problems: list[str] = []
    for name, attempt in _candidates(env):
        try:
            return LoadOutcome(attempt(), tuple(problems))
        except (ImportError, OSError, AttributeError, NativeLibraryError) as exc:
            problems.append(f"{name}: {exc}")
    if choice == "native":
        raise NativeLibraryError(f"{ENV_BACKEND}=native but no native library loads: {'; '.join(problems)}")
    return LoadOutcome(None, tuple(problems))
