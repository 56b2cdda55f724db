"""The program: one venv per version under /opt/edge-agent/<version>, and the `current` link.

    venv = VersionVenv(layout.venv("0.1.0"), python=Path("/usr/bin/python3"), system_site=False)
    venv.holds(wheel)      # made from this very wheel (its sha256 is kept in .wheel)
    venv.make(wheel)       # python -m venv, pip install WHEEL (dependencies from the index as pip
                           # is configured: PIP_INDEX_URL, PIP_FIND_LINKS, /etc/pip.conf ...)
    switch(layout.current, "0.1.0")                      # atomic: a new link renamed over the old

`system_site`: the venv sees the system's packages (Debian's python3-numpy ...): the route of
32-bit ARM boards, where PyPI has no wheels for numpy, cffi, msgpack or psutil. Runs on the
installer's one thread; a venv half made (pip failed) is removed, so a retry starts clean.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .errors import StepFailed
from .system import remove_tree
from .wheel import AgentWheel

MARKER = ".wheel"
PIP_TIMEOUT_S = 1800.0  # a slow board on a slow link; pip's own network timeouts apply within


class VersionVenv:
    def __init__(self, path: Path, *, python: Path, system_site: bool) -> None:
        self.path = path
        self.python = python
        self.system_site = system_site

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    def holds(self, wheel: AgentWheel) -> bool:
        try:
            return self.marker.read_text().split()[0] == wheel.sha256 and self.entry_point.is_file()
        except (OSError, IndexError):
            return False

    @property
    def entry_point(self) -> Path:
        return self.path / "bin" / "edge-agent"

    def make(self, wheel: AgentWheel) -> None:
        remove_tree(self.path)
        venv = [
            str(self.python),
            "-m",
            "venv",
            *(["--system-site-packages"] if self.system_site else []),
            str(self.path),
        ]
        try:
            self._run(venv, f"make a venv with {self.python} (Debian: apt-get install python3-venv)")
            pip = [str(self.path / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-input"]
            self._run(
                [*pip, "--disable-pip-version-check", str(wheel.path)], f"pip install {wheel.path.name}"
            )
            if not self.entry_point.is_file():
                raise StepFailed(
                    f"{self.entry_point} is missing after pip install: is {wheel.path.name} ours?"
                )
            self.marker.write_text(f"{wheel.sha256}  {wheel.path.name}\n")
        except BaseException:
            remove_tree(self.path)
            raise

    @staticmethod
    def _run(command: list[str], doing: str) -> None:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StepFailed(f"cannot {doing}: {exc}") from None
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            hint = (
                " (no index reachable? set PIP_INDEX_URL or PIP_FIND_LINKS to a wheelhouse)"
                if "pip" in doing
                else ""
            )
            raise StepFailed(f"cannot {doing}{hint}; it said:\n{tail}")


def switch(link: Path, version: str) -> None:
    """Point `link` at `version` (a sibling directory) atomically."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(version)
    os.replace(temporary, link)
