"""The wheels a board installs, built from this checkout as `make dist` builds them (deploy/dist.py).

`build_wheels(out)` gives the aarch64 and armv7l wheels of this version (`arches` others: the
systemd tests in tests/service install the x86_64 one); with `version_suffix` it gives a newer
version of the same code (`X.Y.Z+SUFFIX`), the upgrade the board and service tests install.
The kernels' C++ self-tests are left to tests/native and tests/deploy (--no-selftest).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.services import require_tool

CHECKOUT = Path(__file__).resolve().parents[2]
COMPILERS = {"x86_64": "g++", "aarch64": "aarch64-linux-gnu-g++", "armv7l": "arm-linux-gnueabihf-g++"}
ARCHES = ("aarch64", "armv7l")
# The builds the board tests install: a first and a newer one (the upgrade).
BUILDS = {"first": None, "upgrade": "b2"}  # role: --version-suffix


def version_of(wheel: Path) -> str:
    return wheel.name.split("-")[1]


class WheelBuildError(AssertionError):
    """deploy/dist.py failed: its output is in the message."""


def build_wheels(
    out: Path, version_suffix: str | None = None, arches: tuple[str, ...] = ARCHES
) -> dict[str, Path]:
    """The wheel of each architecture (default: the boards', aarch64 and armv7l), built into `out`."""
    for tool in ("make", *(COMPILERS[arch] for arch in arches)):
        require_tool(tool)
    command = [sys.executable, str(CHECKOUT / "deploy" / "dist.py"), "--targets", ",".join(arches)]
    command += ["--out", str(out), "--no-selftest"]
    if version_suffix:
        command += ["--version-suffix", version_suffix]
    done = subprocess.run(command, cwd=CHECKOUT, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise WheelBuildError(f"deploy/dist.py exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    wheels = {}
    for arch in arches:
        [wheels[arch]] = sorted(out.glob(f"mqtt_edge_agent-*-manylinux_*_{arch}.whl"))
    return wheels
