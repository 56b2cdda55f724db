"""The C++ self-test against the golden vectors: host build, and aarch64 / armhf under qemu-user.

Each test builds with `make -C native` (incremental) and fails in CI when a tool is missing.
Also: the golden file agrees with the current numpy references, and ABI mode over the host
library gives what the API-mode extension gives.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from native import KernelError, Registry
from native.golden import GOLDEN, STATUS, parse
from native.loader import load_abi
from native.registry import SPECS
from tests.native.compare import assert_result_matches
from tests.support.services import require_tool

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {
    "host": ["g++"],
    "aarch64": ["aarch64-linux-gnu-g++", "qemu-aarch64"],
    "armhf": ["arm-linux-gnueabihf-g++", "qemu-arm"],
}


def _make(target: str, *goals: str) -> subprocess.CompletedProcess[str]:
    require_tool("make")
    for tool in TOOLS[target]:
        require_tool(tool)
    command = ["make", "-s", "-C", str(ROOT / "native"), "-j2", f"TARGET={target}", *goals]
    return subprocess.run(command, capture_output=True, text=True, timeout=110, check=False)


@pytest.mark.selftest
@pytest.mark.parametrize("target", ["host", "aarch64", "armhf"])
def test_cpp_selftest(target: str) -> None:
    done = _make(target, "selftest")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.endswith(" 0 failed") and not summary.startswith("0 passed"), done.stdout
    assert target.replace("host", "x86_64") in done.stdout  # ek_build_info names the target


@pytest.mark.selftest
def test_abi_mode_over_the_host_library_matches_api_mode(registry: Registry) -> None:
    done = _make("host", "all")
    assert done.returncode == 0, done.stdout + done.stderr
    abi = Registry(load_abi(ROOT / "build" / "native" / "host" / "libedge_kernels.so"))
    assert abi.binding is not None and abi.binding.mode == "abi"
    for case in parse(GOLDEN.read_text()):
        if case.status == 0:
            args = registry.get(case.kernel).validate(case.params())
            assert_result_matches(
                case.kernel, abi.get(case.kernel).run(args), registry.get(case.kernel).run(args)
            )


def test_golden_file_agrees_with_the_references(numpy_registry: Registry) -> None:
    """The committed golden vectors are what the numpy references answer today (make golden)."""
    cases = parse(GOLDEN.read_text())
    assert {c.kernel for c in cases} == {s.name for s in SPECS}
    for case in cases:
        kernel = numpy_registry.get(case.kernel)
        args = kernel.validate(case.params())
        if case.status:
            with pytest.raises(KernelError) as raised:
                kernel.reference(args)
            assert STATUS.get(type(raised.value), 2) == case.status
        else:
            assert_result_matches(case.kernel, case.result(), kernel.reference(args))
