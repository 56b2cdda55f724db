"""The kernel registry: name -> validation, native call and numpy reference (PROTOCOL 9).

registry = load_registry()            # once per process; falls back to numpy with a warning
kernel = registry.get("stats")        # UnknownKernel (code unknown_kernel) if absent
args = kernel.validate(params)        # InvalidParams (code invalid_params) naming the field
result = kernel.run(args)             # KernelFailed (code kernel_error) from the kernel
result = kernel(params)               # both at once
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Literal, TypeVar

from native import calls, references, specs
from native.binding import Binding
from native.errors import KernelOutOfMemory, UnknownKernel
from native.loader import load_binding
from native.references import Result
from native.signatures import SIGNATURES, Signature
from native.validation import Limits, Params

log = logging.getLogger(__name__)

A = TypeVar("A")
Backend = Literal["native", "numpy"]


@dataclass(frozen=True)
class KernelSpec(Generic[A]):
    name: str
    validate: Callable[[Params, Limits], A]
    reference: Callable[[A], Result]
    native: Callable[[Binding], Callable[[A], Result]]  # binds the kernel to a library
    signature: Signature  # its params declared (signatures.py), for clients


SPECS: tuple[KernelSpec[Any], ...] = tuple(
    KernelSpec(name, getattr(specs, name), getattr(references, name), getattr(calls, name), SIGNATURES[name])
    for name in (
        "matrix_multiply",
        "fir_filter",
        "moving_average",
        "stats",
        "fft_magnitude",
        "zscore_anomalies",
        "conv2d",
        "histogram",
    )
)


def _guarded(reference: Callable[[A], Result]) -> Callable[[A], Result]:
    """The numpy reference as a backend: running out of memory is a kernel error, as in C++."""

    def run(args: A) -> Result:
        try:
            return reference(args)
        except MemoryError as exc:
            raise KernelOutOfMemory("out of memory allocating a work buffer") from exc

    return run


def _validate_and_run(
    validate: Callable[[Params, Limits], A], limits: Limits, run: Callable[[A], Result], params: Params
) -> Result:
    return run(validate(params, limits))


class Kernel(partial[Result], Generic[A]):
    """One kernel bound to a backend and to size limits; `kernel(params)` validates and runs.

    A functools.partial over `_validate_and_run` rather than a class with `__call__`: calling a
    partial is one C-level call, where a Python `__call__` costs ~0.3 us more on every call, a tenth
    of the 3 us budget of a trivial kernel (issue 3).
    """

    name: str
    backend: Backend
    run: Callable[[A], Result]
    _validate: Callable[[Params, Limits], A]
    _limits: Limits
    _reference: Callable[[A], Result]

    def __new__(cls, spec: KernelSpec[A], limits: Limits, binding: Binding | None) -> Kernel[A]:
        run = _guarded(spec.reference) if binding is None else spec.native(binding)
        self = super().__new__(cls, _validate_and_run, spec.validate, limits, run)
        self.name = spec.name
        self.backend = "numpy" if binding is None else "native"
        self.run = run
        self._validate = spec.validate
        self._limits = limits
        self._reference = spec.reference
        return self

    def validate(self, params: Params) -> A:
        return self._validate(params, self._limits)

    def reference(self, args: A) -> Result:
        """The numpy reference, whatever the backend."""
        return self._reference(args)

    def __repr__(self) -> str:
        return f"<Kernel {self.name} ({self.backend})>"


class Registry:
    """Every kernel of one backend."""

    def __init__(self, binding: Binding | None, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.binding = binding
        self.backend: Backend = "numpy" if binding is None else "native"
        self._kernels: dict[str, Kernel[Any]] = {s.name: Kernel(s, self.limits, binding) for s in SPECS}

    def names(self) -> tuple[str, ...]:
        return tuple(self._kernels)

    def get(self, name: str) -> Kernel[Any]:
        try:
            return self._kernels[name]
        except KeyError:
            raise UnknownKernel(f"no kernel named {name!r}", field="kernel") from None

    def __contains__(self, name: object) -> bool:
        return name in self._kernels

    @property
    def build_info(self) -> str:
        return "numpy reference" if self.binding is None else self.binding.build_info


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(message: str) -> None:
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning("%s", message)


def load_registry(limits: Limits | None = None, env: Mapping[str, str] | None = None) -> Registry:
    """The registry over the native library, or over the numpy references (warning logged once)."""
    outcome = load_binding(env)
    if outcome.binding is None:
        _warn_once("native kernels unavailable, using the numpy references: " + "; ".join(outcome.problems))
    return Registry(outcome.binding, limits)
