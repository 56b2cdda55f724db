"""Start real external services for tests: free ports, readiness, CI-vs-local tool policy.

A tool the suite needs that is missing skips the test on a developer's machine but fails it
when CI=true, so CI can never go green by skipping (see .ci/run, which installs them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

LOCALHOST = "127.0.0.1"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


APT_HINT = "apt-get install it, or run .ci/run"


def unavailable(message: str) -> NoReturn:
    """What the suite needs is missing here: skip the test locally, fail it in CI."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str, *, path: str | None = None, hint: str = APT_HINT) -> str:
    """Path of an executable (searched in `path`, default PATH, then /usr/sbin and /usr/bin), or
    skip (locally) / fail (in CI) the test; `hint` says how to install it."""
    found = shutil.which(name, path=path) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if found is None:
        unavailable(f"'{name}' is not installed ({hint})")
    return found


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now and that this process has not handed out before.

    The kernel may give the same ephemeral port to two binds in a row once the first socket is
    closed, so two calls for one fixture (a TLS and a TCP port) could collide without the memory.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOCALHOST, 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {LOCALHOST}:{port} after {timeout} s")


@contextmanager
def run_mosquitto(config: str, workdir: Path, ports: list[int]) -> Iterator[subprocess.Popen[bytes]]:
    """Run `mosquitto -c` with `config` (its listeners on `ports`) until the block ends.

    The config must bind 127.0.0.1 only. Mosquitto's log goes to workdir/mosquitto.log and is
    printed if it fails to start, because its own messages say what is wrong.
    """
    binary = require_tool("mosquitto")
    conf = workdir / "mosquitto.conf"
    conf.write_text(config)
    log = workdir / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            for port in ports:
                wait_for_port(port, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"mosquitto did not start: {exc}\n{log.read_text(errors='replace')}") from exc
        yield proc
    finally:
        terminate(proc, timeout=5)


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
