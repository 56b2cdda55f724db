"""Check the kernels on this machine: `python -m native [--allow-numpy]`.

Loads the registry as the agent would, says which library it found, and runs every golden case
(native/selftest/golden.txt, made by the numpy references) through the full Python path. Exit 0
only if every case agrees and the native library is in use. Meant for a board after an install
(deploy/arm/README.md).
"""

from __future__ import annotations

import argparse
import sys

from native.agreement import result_mismatch
from native.errors import KernelError
from native.golden import GOLDEN, STATUS, Case, parse
from native.registry import Registry, load_registry


def check_case(registry: Registry, case: Case) -> str | None:
    """Why the case fails on this registry, or None."""
    kernel = registry.get(case.kernel)
    try:
        got = kernel(case.params())
    except KernelError as exc:
        status = STATUS.get(type(exc), 2)
        return None if status == case.status else f"raised {exc!r}, expected status {case.status}"
    if case.status:
        return f"returned a result, expected status {case.status}"
    return result_mismatch(case.kernel, got, case.result())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m native", description=__doc__.splitlines()[0])
    parser.add_argument("--allow-numpy", action="store_true", help="pass with the numpy fallback too")
    args = parser.parse_args(argv)
    registry = load_registry()
    binding = registry.binding
    print(f"backend: {registry.backend}")
    where = f" ({binding.mode} mode, {binding.origin})" if binding else ""
    print(f"library: {registry.build_info}{where}")
    failed = 0
    cases = parse(GOLDEN.read_text())
    for case in cases:
        why = check_case(registry, case)
        if why:
            failed += 1
            print(f"FAIL {case.kernel} {case.label}: {why}")
    print(f"{len(cases) - failed} passed, {failed} failed")
    native_ok = registry.backend == "native" or args.allow_numpy
    return 0 if failed == 0 and native_ok else 1


if __name__ == "__main__":
    sys.exit(main())
