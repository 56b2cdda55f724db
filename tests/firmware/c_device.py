"""Building and running `edge-device` (firmware_examples/c) for the tests.

`build(variant)` runs the example's own Makefile (incremental, into build/firmware/<variant>) and
returns a `Device` that runs the binary: natively, under ASan+UBSan (any sanitizer report fails the
test), or under qemu-user for aarch64 and armhf with the cross sysroot's libraries. A missing
library, compiler or qemu skips locally and fails in CI (tests/support/services.py `require_tool`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.services import in_ci, require_tool

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "firmware_examples" / "c"
BUILD = ROOT / "build" / "firmware"
LIBRARIES = ["libmosquitto", "msgpack", "libsodium"]
MAKE_ARGS = {"native": [], "asan": ["SANITIZE=1"], "aarch64": ["TARGET=aarch64"], "armhf": ["TARGET=armhf"]}
OUTPUT = {"native": "host", "asan": "host-asan", "aarch64": "aarch64", "armhf": "armhf"}
QEMU = {
    "aarch64": ("qemu-aarch64", "/usr/aarch64-linux-gnu", "aarch64-linux-gnu"),
    "armhf": ("qemu-arm", "/usr/arm-linux-gnueabihf", "arm-linux-gnueabihf"),
}
CROSS_CC = {"aarch64": "aarch64-linux-gnu-gcc", "armhf": "arm-linux-gnueabihf-gcc"}
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def _require_libraries() -> None:
    require_tool("make")
    require_tool("pkg-config")
    missing = [
        lib for lib in LIBRARIES if subprocess.run(["pkg-config", "--exists", lib], check=False).returncode
    ]
    if missing:
        _unavailable(
            f"pkg-config finds no {', '.join(missing)}: apt-get install libmosquitto-dev libmsgpack-dev"
            " libsodium-dev (or run .ci/run)"
        )


@dataclass
class Device:
    """One build of edge-device; `run` and `start` return its process."""

    variant: str
    binary: Path
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str | Path) -> list[str]:
        prefix: list[str] = []
        if self.variant in QEMU:
            qemu, libc_root, _ = QEMU[self.variant]
            prefix = [qemu, "-L", libc_root]
        return [*prefix, str(self.binary), *map(str, args)]

    def run(
        self, *args: str | Path, timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=cwd,
            check=False,
        )
        self.check_sanitizers(done.stderr)
        return done

    def start(self, *args: str | Path, cwd: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=cwd,
        )

    def check_sanitizers(self, stderr: str) -> None:
        reports = [mark for mark in SANITIZER_MARKS if mark in stderr]
        assert not reports, f"{self.variant}: sanitizer report:\n{stderr}"


def _environment(variant: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    if variant == "asan":
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=99"
        env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    if variant in QEMU:
        triplet = QEMU[variant][2]
        env["LD_LIBRARY_PATH"] = str(BUILD / "sysroot" / variant / "usr" / "lib" / triplet)
    return env


def build(variant: str) -> Device:
    """make the variant (the first call of a session compiles; later ones find it up to date)."""
    _require_libraries()
    if variant in QEMU:
        require_tool(CROSS_CC[variant])
        require_tool(QEMU[variant][0])
        require_tool("apt-get")
    command = ["make", "-s", "-C", str(SOURCE), "-j2", *MAKE_ARGS[variant]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    binary = BUILD / OUTPUT[variant] / "edge-device"
    assert binary.is_file() and shutil.which(str(binary)) is not None
    return Device(variant, binary, _environment(variant))
