"""Fixtures for provisioning tests: the real CLI, real files, snapshots of a fleet directory."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning import operations as ops
from provisioning.cli import main
from provisioning.fleet import Fleet, FleetConfig


def _command() -> list[str]:
    script = Path(sys.executable).parent / "edge-provision"
    return [str(script)] if script.exists() else [sys.executable, "-m", "provisioning"]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def run_cli(*args: str | os.PathLike[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Run the installed `edge-provision` in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if k != "EDGE_FLEET"}
    full_env.update(env or {})
    proc = subprocess.run(
        [*_command(), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=120
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def run_main(*args: str | os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> Run:
    """The same command line through `provisioning.cli.main` in this process (no interpreter start-up)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own errors and --help
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and directory under `root`: (mode, content), to prove nothing changed."""
    state: dict[str, tuple[int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            data = path.read_bytes() if path.is_file() else b""
            state[str(path.relative_to(root))] = (st.st_mode, data)
    return state


def new_fleet(root: Path, **config: object) -> Fleet:
    """A fleet made through the library (fast); CLI tests make theirs through the CLI."""
    return ops.init_fleet(root, FleetConfig(**config))  # type: ignore[arg-type]


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return new_fleet(tmp_path / "fleet", name="test")
