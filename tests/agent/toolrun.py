"""Running edge-submit and edge-watch as processes against a test site, configured as a user would:
the bundle file `edge-provision bundle` writes, plus `EDGE_MQTT_PORT` for the test broker's port."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.support.fleet import edge_provision

TIMEOUT = 60.0
KIND_FILE = {"op-1": "operator.toml", "dash-1": "dashboard.toml", "sensor-1": "device.toml"}


def bundle_file(site: Any, name: str) -> Path:
    out = site.tmp / f"bundle-{name}"
    if not out.exists():
        edge_provision("--fleet", site.fleet.root, "bundle", name, "--out", out)
    return out / KIND_FILE[name]


def tool_env(site: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    env.update({"EDGE_MQTT_PORT": str(site.broker.tls_port), "PYTHONUNBUFFERED": "1", **extra})
    return env


def command(tool: str) -> list[str]:
    """`python -m agent.tools.<tool>`: what the console script runs, without needing it installed."""
    return [sys.executable, "-m", f"agent.tools.{tool}"]


def run(site: Any, tool: str, *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [*command(tool), *map(str, args)],
        env=env or tool_env(site),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        input=stdin,
    )


class LiveProcess:
    """A tool running in the background; its stdout lines collected by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            self._queue.put(text.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        """The first line (seen so far or to come) for which `predicate` holds."""
        for seen in self.lines:
            if predicate(seen):
                return seen
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no matching line within {timeout} s; got {self.lines}"
            try:
                text = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert text is not None, f"the process ended ({self.proc.poll()}); got {self.lines}"
            self.lines.append(text)
            if predicate(text):
                return text

    def stop(self) -> str:
        """SIGTERM, wait, and the stderr text; asserts a clean exit."""
        self.proc.terminate()
        self.proc.wait(TIMEOUT)
        self._thread.join(TIMEOUT)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.lines.append(item)
        return err


@contextlib.contextmanager
def live(site: Any, tool: str, *args: str | Path, env: dict[str, str] | None = None) -> Iterator[LiveProcess]:
    proc = subprocess.Popen(
        [*command(tool), *map(str, args)],
        env=env or tool_env(site),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield LiveProcess(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
