"""The worker pool: kernel attempts in separate processes, never in the agent's.

    pool = WorkerPool(WorkerSettings(count=2, memory_limit_mb=512))
    pool.start()
    outcome = pool.workers[0].run("stats", body, attempt=1, timeout=30.0)   # one thread per worker
    pool.stop()

An attempt ends in one of the outcomes of PROTOCOL 6, and the worker is replaced whenever it
cannot be trusted any more:

| what happened | code | worker |
|---|---|---|
| the kernel returned | (ok) | kept |
| the kernel raised an error | `kernel_error` (or `invalid_params`) | kept |
| past `timeout_s` | `timeout` | SIGKILL, replaced |
| the process died (segfault, abort, exit) | `worker_crashed` | replaced |
| past the memory limit (allocation failed, or SIGKILL from the OOM killer) | `out_of_memory` | replaced |
| `cancel(tag)` from another thread (sys.cancel) | `cancelled` | SIGKILL, replaced |
| `stop()` during the attempt (the agent stops) | `stopped` (ours: the attempt does not count) | SIGKILL |
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, NamedTuple

import msgpack

from ..errors import WorkerError
from .child import recv_frame, send_frame, serve

log = logging.getLogger(__name__)
_PRELOAD = ["agent.node.exec._preload"]


class Outcome(NamedTuple):
    """How one attempt ended; `result` is the MessagePack of the kernel's output when `ok`."""

    ok: bool
    started_at: float
    finished_at: float
    result: bytes | None = None
    duration_ms: float | None = None
    code: str | None = None
    message: str | None = None

    @property
    def error(self) -> dict[str, str]:
        return {"code": self.code or "kernel_error", "message": self.message or ""}


class Begun(NamedTuple):
    """An attempt sent to its worker (`Worker.begin`), its outcome not read yet (`Worker.end`)."""

    conn: Connection
    process: BaseProcess
    started: float
    sent: bool  # False: the pipe broke while sending (the worker is dead)


@dataclass(frozen=True)
class WorkerSettings:
    count: int = 1
    memory_limit_mb: int = 1024
    test_kernels: bool = False
    max_payload: int = 1 << 20
    start_timeout_s: float = 60.0


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


#: A worker idle for less than this is not checked for death before its next attempt (a syscall that
#: releases the GIL on every task): one that died in so short a gap fails that attempt instead.
RECHECK_IDLE_S = 0.05
_TIMEVAL = struct.Struct("@ll")  # struct timeval, for SO_RCVTIMEO


def _receive_timeout(fd: int, seconds: float) -> None:
    """Reads of the worker's socket (multiprocessing's duplex Pipe is a socketpair) give up after
    `seconds` with EAGAIN: the attempt waits in one `read`, not in a `poll` and then a `read`."""
    whole = int(seconds)
    micros = int((seconds - whole) * 1e6) or (0 if whole else 1)  # 0 s would mean "no timeout"
    sock = socket.socket(fileno=os.dup(fd))  # a second handle on the same socket, closed below
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(whole, micros))
    finally:
        sock.close()


#: Why a worker was replaced, by the code of the attempt it died in (the metrics' `reason` label).
_RESTART_REASON = {"cancelled": "cancel", "out_of_memory": "memory", "worker_crashed": "crash"}


def _death(process: BaseProcess) -> tuple[str, str]:
    """(code, message) for a worker that died during an attempt."""
    process.join(5)
    exitcode = process.exitcode
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        if -exitcode == signal.SIGKILL:  # not ours (we say timeout/cancelled): the OOM killer
            return "out_of_memory", "the worker was killed (SIGKILL), most likely by the kernel's OOM killer"
        return "worker_crashed", f"the worker died of {name}"
    return "worker_crashed", f"the worker exited with status {exitcode}"


def _stopped(started: float) -> Outcome:
    return Outcome(
        False, started, time.time(), code="stopped", message="the agent stopped during the attempt"
    )


class Worker:
    """One worker process. `run` is called by one thread at a time; `cancel` from any thread."""

    def __init__(self, index: int, settings: WorkerSettings) -> None:
        self.index = index
        self.settings = settings
        self._process: BaseProcess | None = None
        self._death = select.poll()
        self._conn: Connection | None = None
        self._launched: tuple[BaseProcess, Connection] | None = None  # started, no hello yet
        self._cancelled = False  # cancel() killed the running attempt (set and cleared under _lock)
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # busy, the running attempt's tag, a cancel waiting for its attempt
        self._tag: object = None
        self._cancel_tag: object = None
        self.backend = "numpy"
        self.pid: int | None = None
        self.busy = False
        self._idle_since = 0.0  # time.monotonic() when the last attempt ended
        self._read_timeout: float | None = None  # SO_RCVTIMEO set on the current process's socket
        self.restarts = 0
        self.restarts_by: dict[str, int] = {}  # reason (timeout, crash, memory, cancel) -> count

    # -- process life ------------------------------------------------------------------------------

    def spawn(self) -> None:
        self.launch()
        self.handshake()

    def launch(self) -> None:
        """Start the process without waiting for it (a pool launches all, then waits for all)."""
        ctx = _context()
        parent, child = ctx.Pipe()
        s = self.settings
        process = ctx.Process(
            target=serve,
            args=(child, s.memory_limit_mb, s.test_kernels, s.max_payload),
            name=f"edge-worker-{self.index}",
            daemon=True,
        )
        process.start()
        child.close()
        self._launched = (process, parent)

    def handshake(self) -> None:
        """Wait for the launched process's hello; then it takes attempts."""
        assert self._launched is not None, "launch() first"
        process, parent = self._launched
        s = self.settings
        if not parent.poll(s.start_timeout_s):
            process.kill()
            raise WorkerError(f"worker {self.index} did not start within {s.start_timeout_s} s")
        try:
            hello = msgpack.unpackb(parent.recv_bytes())
        except (EOFError, OSError):
            raise WorkerError(f"worker {self.index} died while starting: {_death(process)[1]}") from None
        self._process, self._conn = process, parent
        self._death = select.poll()  # the process sentinel: readable once it is gone (is_alive() costs more)
        self._death.register(process.sentinel, select.POLLIN)
        self.backend, self.pid = hello["backend"], hello["pid"]
        self._launched = None
        self._read_timeout = None
        self._idle_since = 0.0  # a new process: checked before its first attempt

    def _replace(self, reason: str) -> None:
        self._discard()
        self.restarts += 1
        self.restarts_by[reason] = self.restarts_by.get(reason, 0) + 1
        self.spawn()

    @property
    def alive(self) -> bool:
        """The process exists and has not died (any thread: the sentinel, without reaping it)."""
        process = self._process
        if process is None:
            return False
        try:
            gone, _, _ = select.select([process.sentinel], [], [], 0)
        except (OSError, ValueError):  # closed meanwhile: being replaced
            return False
        return not gone

    def ensure_alive(self) -> bool:
        """The driving thread, while idle: a worker that died without a task (the OOM killer, an
        operator's kill) is replaced now rather than at the next task. True if it was replaced."""
        if self._process is None or not self._death.poll(0) or self._stopped.is_set():
            return False  # not started, alive, or dead because the agent stops it
        log.warning("worker %d died while idle (%s): starting another", self.index, _death(self._process)[1])
        try:
            self._replace("crash")
        except WorkerError as exc:  # /health shows it down; run() tries again with the next task
            log.error("worker %d cannot be restarted: %s", self.index, exc)
            return False
        return True

    def _discard(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is not None and process.is_alive():
            process.kill()
        if process is not None:
            process.join(5)
        if conn is not None:
            conn.close()

    def stop(self, timeout: float = 5.0) -> None:
        """An idle worker: close its pipe (it exits at EOF). A busy one: kill it; its attempt ends
        `stopped` (it does not count, see Agent.stop). Never replaced afterwards."""
        self._stopped.set()
        process = self._process
        if process is None:
            if self._launched is not None:  # launched, never ready: nothing to finish
                launched, self._launched = self._launched[0], None
                launched.kill()
                launched.join(timeout)
            return
        if self.busy:
            process.kill()  # the driving thread sees the pipe end and returns
        elif self._conn is not None:
            self._conn.close()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join(timeout)

    # -- attempts ------------------------------------------------------------------------------------

    def cancel(self, tag: object) -> bool:
        """Kill the attempt `tag` (it ends `cancelled`, the worker is replaced); True if it was running.

        An attempt handed to this worker but not started yet (`run` not yet called with `tag`) is
        not started at all: the cancel waits for it, so no window lets it slip through."""
        with self._lock:
            process = self._process
            if self.busy and self._tag == tag and process is not None:
                self._cancelled = True
                process.kill()
                return True
            self._cancel_tag = tag
            return False

    def run(self, kernel: str, body: bytes, attempt: int, timeout: float, tag: object = None) -> Outcome:
        """One attempt of `kernel` on the task `body`, at most `timeout` seconds; `tag` names the
        attempt for `cancel`."""
        begun = self.begin(kernel, body, attempt, tag)
        assert begun is not None  # replace=True: a dead worker was replaced
        return begun if isinstance(begun, Outcome) else self.end(begun, timeout)

    def begin(
        self, kernel: str, body: bytes, attempt: int, tag: object = None, *, replace: bool = True
    ) -> Begun | Outcome | None:
        """Send an attempt to the worker; `end` then waits for its outcome, on the driving thread.

        Any thread may begin an attempt while the worker is idle (the intake hands a task to an idle
        worker this way). Returns an `Outcome` when the attempt ends before it starts (the agent
        stops, or it was cancelled), and None when the worker died while idle and `replace` is
        False: starting its successor can take long, and is the driving thread's job (`run`)."""
        if self._stopped.is_set():
            return _stopped(time.time())
        if self._process is None or (  # died while idle: start its successor
            time.monotonic() - self._idle_since >= RECHECK_IDLE_S and self._death.poll(0)
        ):
            if not replace:
                return None
            self._replace("crash")
        conn, process = self._conn, self._process
        assert conn is not None and process is not None
        started = time.time()
        with self._lock:
            if tag is not None and self._cancel_tag == tag:  # cancelled before it started
                self._cancel_tag = None
                return Outcome(
                    False, started, started, code="cancelled", message="cancelled before it started"
                )
            self._cancelled = False
            self._tag = tag
            self.busy = True
        try:
            send_frame(conn.fileno(), msgpack.packb([kernel, body, attempt], use_bin_type=True))
        except OSError:
            return Begun(conn, process, started, sent=False)  # the worker is dead: `end` says why
        except BaseException:
            self._idle()
            raise
        return Begun(conn, process, started, sent=True)

    def end(self, begun: Begun, timeout: float) -> Outcome:
        """The outcome of the attempt `begun`, waiting up to `timeout` seconds for it."""
        try:
            return self._receive(begun, timeout)
        finally:
            self._idle()

    def _idle(self) -> None:
        with self._lock:
            self.busy = False
            self._tag = None
        self._idle_since = time.monotonic()

    def _receive(self, begun: Begun, timeout: float) -> Outcome:
        conn, process, started = begun.conn, begun.process, begun.started
        fd = conn.fileno()
        timed_out, frame = False, None
        if begun.sent:
            try:
                if timeout != self._read_timeout:
                    _receive_timeout(fd, timeout)
                    self._read_timeout = timeout
                frame = recv_frame(fd)  # waits up to `timeout` for the reply
            except BlockingIOError:  # SO_RCVTIMEO: no reply in time
                timed_out = True
            except (EOFError, OSError):  # the pipe broke or ended: the worker is dead, the reason below
                pass
        if self._stopped.is_set():
            return _stopped(started)
        if timed_out:
            process.kill()
            self._replace("timeout")
            return Outcome(
                False, started, time.time(), code="timeout", message=f"no result after {timeout:g} s"
            )
        if frame is None:
            code, message = ("cancelled", "cancelled while running") if self._cancelled else _death(process)
            self._replace(_RESTART_REASON.get(code, "crash"))
            return Outcome(False, started, time.time(), code=code, message=message)
        reply = msgpack.unpackb(frame, raw=False)
        finished = time.time()
        if reply["ok"]:
            return Outcome(True, started, finished, result=reply["result"], duration_ms=reply["duration_ms"])
        if reply["code"] == "out_of_memory":
            self._replace("memory")  # it exits after reporting: start its successor now
        return Outcome(False, started, finished, code=reply["code"], message=reply["message"])


class WorkerPool:
    """`count` workers, started together; each is driven by one thread of the caller's."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.workers = [Worker(i, settings) for i in range(settings.count)]

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start every worker process at once: they import and load the kernels side by side,
        while the agent goes on starting (the MQTT link connects meanwhile)."""
        for worker in self.workers:
            worker.launch()

    def wait_ready(self) -> None:
        """Wait for every launched worker's hello; on a failure, stop them all."""
        try:
            for worker in self.workers:
                worker.handshake()
        except WorkerError:
            for worker in self.workers:
                with contextlib.suppress(Exception):
                    worker.stop()
            raise
        log.info("%d workers started (backend %s)", len(self.workers), self.workers[0].backend)

    @property
    def backend(self) -> str:
        return self.workers[0].backend if self.workers else "numpy"

    @property
    def busy(self) -> int:
        return sum(1 for w in self.workers if w.busy)

    @property
    def alive(self) -> int:
        return sum(1 for w in self.workers if w.alive)

    def stop(self, timeout: float = 5.0) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.stop(timeout)
