"""Codec encode and decode rates: a ~200-byte task and a task with a 4,096-sample float64 array.

    .venv/bin/python benchmarks/codec.py [--rounds N]

Each figure is the median over rounds; every round times our codec and, right after it, the
same work done by bare msgpack (the array as a plain bin, no ext, no limits), so the ratio
compares the two under the same machine load. Also the task bodies the acceptance benchmark signs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import _bootstrap  # noqa: F401 - before `agent`: benchmarks/agent.py must not shadow the package
import msgpack
import numpy as np

from agent.protocol import packb, unpackb

SAMPLES = 4096


def small_task_body(now: float, target: str = "node-1") -> dict[str, Any]:
    """A task body of about 200 bytes: a short signal for `stats`, the required fields, a priority."""
    return {
        "id": os.urandom(12).hex(),
        "kernel": "stats",
        "params": {"signal": [20.5, 20.7, 20.6, 20.9, 21.2, 21.0, 20.8, 20.9, 21.1]},
        "target": target,
        "issued_at": now,
        "expires_at": now + 300.0,
        "nonce": os.urandom(16),
        "priority": 7,
    }


def array_task_body(now: float, target: str = "node-1") -> dict[str, Any]:
    """A task body carrying a 4,096-sample float64 signal as an ext 1 array (~33 KB)."""
    body = small_task_body(now, target)
    body["kernel"] = "fft_magnitude"
    body["params"] = {"signal": np.random.default_rng(7).standard_normal(SAMPLES), "sample_rate": 1000.0}
    return body


def per_item(fn: Callable[[Any], object], items: Sequence[Any]) -> float:
    """Seconds per item of `fn` over `items`."""
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items)


def _bare_body(body: dict[str, Any]) -> dict[str, Any]:
    """The same body with its array as raw bytes: what bare msgpack can encode."""
    params = {k: v.tobytes() if isinstance(v, np.ndarray) else v for k, v in body["params"].items()}
    return {**body, "params": params}


def run(name: str, body: dict[str, Any], rounds: int, batch: int) -> None:
    encoded = packb(body)
    bare = _bare_body(body)
    bare_encoded = msgpack.packb(bare)
    bodies, bares = [body] * batch, [bare] * batch
    payloads, bare_payloads = [encoded] * batch, [bare_encoded] * batch
    enc, enc_base, dec, dec_base = [], [], [], []
    for _ in range(rounds):
        enc.append(per_item(packb, bodies))
        enc_base.append(per_item(msgpack.packb, bares))
        dec.append(per_item(unpackb, payloads))
        dec_base.append(per_item(msgpack.unpackb, bare_payloads))
    for label, ours, base in (("encode", enc, enc_base), ("decode", dec, dec_base)):
        t = statistics.median(ours)
        ratio = statistics.median(b / o for o, b in zip(ours, base, strict=True))
        print(
            f"{name:<13} {len(encoded):>7} B  {label}: {1 / t:>10,.0f} msg/s  {t * 1e6:8.2f} us median"
            f"   bare msgpack {statistics.median(base) * 1e6:8.2f} us  (ours at {ratio:.2f}x its rate)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per figure (default 15)")
    args = parser.parse_args(argv)
    print(f"$ {sys.executable} {' '.join(sys.argv)}")
    now = time.time()
    run("200-byte task", small_task_body(now), args.rounds, batch=4000)
    run("4096 x f8", array_task_body(now), args.rounds, batch=1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
