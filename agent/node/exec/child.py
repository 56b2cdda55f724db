"""The worker process: loads the kernels once, then runs one attempt at a time for its parent.

Started through multiprocessing's forkserver, which has imported this module (numpy, the native
library) once, so a replacement worker is a fork: milliseconds, not an interpreter start. Messages
are MessagePack frames over the pipe (never pickle):

    worker -> parent   {"ready": true, "pid", "backend"}
    parent -> worker   [kernel, task body bytes, attempt]
    worker -> parent   {"ok": true, "result": <MessagePack of the output>, "duration_ms"}
                       {"ok": false, "code": kernel_error | out_of_memory | invalid_params
                                             | result_too_large, "message"}

An output whose MessagePack alone exceeds the maximum payload is `result_too_large` here, and is
not sent over the pipe; the agent checks the whole result envelope (`results.Signing.result`).

The memory limit is an address-space limit (RLIMIT_AS) of the worker's size after start-up plus
`memory_limit_mb`: an allocation beyond it fails inside the kernel (MemoryError in Python,
`EK_OUT_OF_MEMORY` from C++), which reports `out_of_memory` and then exits, so that its
replacement starts with a clean heap.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import signal
import struct
import time
from multiprocessing.connection import Connection
from typing import Any

import msgpack

from agent.protocol import CodecError, Limits, packb, unpackb
from native import KernelError

from ..errors import ResultTooLarge
from .catalogue import Catalogue

# A worker is one thread: parallelism comes from the number of workers, not from BLAS threads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

_CATALOGUE: Catalogue | None = None
_PR_SET_PDEATHSIG = 1


def _catalogue(test_kernels: bool) -> Catalogue:
    global _CATALOGUE
    if _CATALOGUE is None:
        _CATALOGUE = Catalogue.load(test_kernels)
    elif _CATALOGUE.test_kernels != test_kernels:  # the forkserver's preloaded registry, reused
        _CATALOGUE = Catalogue(_CATALOGUE.registry, test_kernels)
    return _CATALOGUE


_FRAME = struct.Struct("!i")  # multiprocessing.Connection's framing (spawn's hello uses send_bytes)
_FIRST_READ = 1 << 16


def send_frame(fd: int, data: bytes) -> None:
    """One frame straight to the pipe: Connection.send_bytes costs more than the I/O itself."""
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def recv_frame(fd: int) -> bytes:
    """One frame; EOFError when the other side is gone. Header and body come in one read when
    they fit in `_FIRST_READ` (each side sends one frame and waits for the answer, so a read never
    takes bytes of a next frame): a read releases the GIL, and in the agent a hand-off costs more
    than the read."""
    chunk = os.read(fd, _FIRST_READ)
    if len(chunk) < _FRAME.size:
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunk += _read_exactly(fd, _FRAME.size - len(chunk))
    size = _FRAME.unpack_from(chunk)[0]
    body = chunk[_FRAME.size :]
    if len(body) > size:
        raise OSError(f"the pipe holds more than one frame ({len(body) - size} bytes more)")
    if len(body) < size:
        body += _read_exactly(fd, size - len(body))
    return body


def _read_exactly(fd: int, size: int) -> bytes:
    chunk = os.read(fd, size)
    if len(chunk) == size:
        return chunk
    parts = [chunk]
    got = len(chunk)
    while got < size:
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunk = os.read(fd, size - got)
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _limit_memory(limit_mb: int) -> None:
    with open("/proc/self/statm") as f:
        size_pages = int(f.read().split()[0])
    limit = size_pages * os.sysconf("SC_PAGE_SIZE") + limit_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _run_one(catalogue: Catalogue, request: bytes, limits: Limits) -> tuple[dict[str, Any], bool]:
    """One attempt; returns (reply, keep running)."""
    kernel, body, attempt = msgpack.unpackb(request, raw=False)
    started = time.perf_counter()
    try:
        params = unpackb(body, limits)["params"]
        output = catalogue.run(kernel, params, attempt)
        result = packb(output)
    except MemoryError:
        return {
            "ok": False,
            "code": "out_of_memory",
            "message": "the worker's memory limit was reached",
        }, False
    except KernelError as exc:
        return {"ok": False, "code": exc.code, "message": str(exc)}, exc.code != "out_of_memory"
    except (CodecError, KeyError, TypeError) as exc:
        return {"ok": False, "code": "kernel_error", "message": f"cannot read the task: {exc}"}, True
    duration_ms = (time.perf_counter() - started) * 1e3
    if len(result) > limits.max_payload:  # could never be published (PROTOCOL 6)
        message = ResultTooLarge(len(result), limits.max_payload)
        return {"ok": False, "code": message.code, "message": str(message)}, True
    return {"ok": True, "result": result, "duration_ms": duration_ms}, True


def _die_with_parent() -> None:
    """SIGKILL when the forkserver goes, which it does when the agent dies (even by kill -9): a
    worker stuck in a kernel never reads the end of its pipe, and must not outlive its agent."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def serve(conn: Connection, memory_limit_mb: int, test_kernels: bool, max_payload: int) -> None:
    """The worker's main loop (the target of its Process)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the agent, which stops its workers
    catalogue = _catalogue(test_kernels)
    limits = Limits(max_payload=max_payload)
    _limit_memory(memory_limit_mb)
    # What start-up built (modules, the kernel registry) lives as long as the worker: frozen, it is
    # never scanned by a collection again, so a kernel call's garbage is collected in microseconds
    # and the pages shared with the forkserver are not copied by the collector touching them.
    gc.freeze()
    conn.send_bytes(msgpack.packb({"ready": True, "pid": os.getpid(), "backend": catalogue.backend}))
    while True:
        try:
            request = recv_frame(conn.fileno())
        except (EOFError, OSError):
            return  # the parent closed the pipe or died
        reply, keep_running = _run_one(catalogue, request, limits)
        try:
            conn.send_bytes(msgpack.packb(reply, use_bin_type=True))
        except MemoryError:  # the reply itself did not fit: a smaller one
            conn.send_bytes(
                msgpack.packb({"ok": False, "code": "out_of_memory", "message": "result too large"})
            )
            keep_running = False
        if not keep_running:
            return


def preload() -> None:
    """Imported by the forkserver: the kernels are loaded before any worker is forked."""
    _catalogue(False)
