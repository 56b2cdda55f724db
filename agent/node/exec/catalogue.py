"""The kernels this agent offers: PROTOCOL 9's from the native registry, plus the test kernels when
configured. Used twice, with the same names and checks: by the intake for check 8 (validation only:
no kernel ever runs in the agent process) and by each worker process to run them.

The intake's catalogue also bounds outputs (`max_output_bytes`, from `results.output_budget`): check 8
refuses params whose output could not be published (PROTOCOL 6). The workers' does not: a task
accepted under a larger limit (before a restart that lowered it) runs, and its result ends
`result_too_large` if it is too large.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from native import Limits, Registry, UnknownKernel, load_registry

from .testkernels import TEST_KERNELS


class Catalogue:
    """Names, validation and (in workers) execution of every kernel this agent accepts."""

    def __init__(self, registry: Registry, test_kernels: bool = False) -> None:
        self.registry = registry
        self.test_kernels = test_kernels

    @classmethod
    def load(cls, test_kernels: bool = False, max_output_bytes: int | None = None) -> Catalogue:
        return cls(load_registry(Limits(max_output_bytes=max_output_bytes)), test_kernels)

    @property
    def backend(self) -> str:
        return self.registry.backend

    def names(self) -> list[str]:
        names = list(self.registry.names())
        if self.test_kernels:
            names += sorted(TEST_KERNELS)
        return names

    def check(self, kernel: str, params: Mapping[str, Any]) -> None:
        """Check 8: raises `UnknownKernel` or `InvalidParams` (both carry the protocol code)."""
        if self.test_kernels and kernel in TEST_KERNELS:
            TEST_KERNELS[kernel][0](params)
            return
        self.registry.get(kernel).validate(params)

    def run(self, kernel: str, params: Mapping[str, Any], attempt: int) -> Any:
        """In a worker process only."""
        if kernel in TEST_KERNELS:
            if not self.test_kernels:
                raise UnknownKernel(f"no kernel named {kernel!r}", field="kernel")
            return TEST_KERNELS[kernel][1](params, attempt)
        return self.registry.get(kernel)(params)
