"""Signed-task acceptance rate vs bare Ed25519 verification of the same bytes (target ratio >= 0.85).

    .venv/bin/python benchmarks/acceptance.py [--rounds N] [--batch N] [--check]

`accept_task` runs checks 1 to 7 of PROTOCOL 4 (envelope, key, signature, body, target and
times, replay, id). The baseline is `cryptography`'s `Ed25519PublicKey.verify(sig, body)` on the
very same signature and body bytes (the issue's baseline). `accept_task` verifies with libsodium
when PyNaCl is installed (agent/protocol/sodium.py), so a bare libsodium verify is timed as well
and its line says what the checks other than the signature cost. Every round signs a fresh batch
of tasks (fresh ids and nonces, so the replay check stores and looks up for real, in a fresh
cache) and times both on each task in turn, alternating which goes first. Per round: the
median time of each; the figures are the medians over rounds, the ratio (verify time /
accept time = accept rate / verify rate) the median of the per-round ratios.
`--check` exits 1 when a ratio misses the target.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import _bootstrap  # noqa: F401 - before `agent`: benchmarks/agent.py must not shadow the package
import msgpack
from codec import array_task_body, small_task_body
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.protocol import (
    Ed25519Signer,
    MemoryReplayCache,
    TrustedKey,
    TrustStore,
    accept_task,
    packb,
    seal,
    sodium,
)

TARGET = 0.85
TOPIC = "edge/tasks/node-1"


def signed_batch(
    make_body: Callable[[float], dict[str, Any]], signer: Ed25519Signer, now: float, size: int
) -> list[bytes]:
    return [seal(packb(make_body(now)), signer) for _ in range(size)]


def interleaved(
    calls: Sequence[Callable[[bytes, bytes, bytes], object]], payloads: list[bytes]
) -> list[list[float]]:
    """Per-task times of each call on the same task, task by task, rotating which goes first.

    Interleaving at this grain puts them all under the same machine load at every moment;
    rotating the order gives none the others' warm caches. Each call gets (payload, sig, body).
    """
    triples = [
        (p, env["sig"], env["body"]) for p, env in zip(payloads, map(msgpack.unpackb, payloads), strict=True)
    ]
    clock = time.perf_counter
    times: list[list[float]] = [[] for _ in calls]
    n = len(calls)
    for i, (payload, sig, body) in enumerate(triples):
        for j in range(n):
            k = (i + j) % n
            t0 = clock()
            calls[k](payload, sig, body)
            times[k].append(clock() - t0)
    return times


def run(name: str, make_body: Callable[[float], dict[str, Any]], rounds: int, batch: int) -> float:
    signer = Ed25519Signer.generate("sensor-1")
    raw = signer.public_raw()
    trust = TrustStore([TrustedKey("sensor-1", "ed25519", raw, frozenset({"task"}))])
    public = Ed25519PublicKey.from_public_bytes(raw)
    sodium_verify = sodium.verify_detached
    accept_times, verify_times, sodium_times, ratios, sodium_ratios = [], [], [], [], []
    for _ in range(rounds):
        now = time.time()
        payloads = signed_batch(make_body, signer, now, batch)
        cache = MemoryReplayCache()

        def accept(
            payload: bytes, sig: bytes, body: bytes, cache: MemoryReplayCache = cache, now: float = now
        ) -> None:
            accept_task(payload, TOPIC, now, trust, cache)

        def bare_cryptography(payload: bytes, sig: bytes, body: bytes) -> None:
            public.verify(sig, body)

        calls = [bare_cryptography, accept]
        if sodium_verify is not None:

            def bare_libsodium(payload: bytes, sig: bytes, body: bytes) -> None:
                assert sodium_verify is not None and sodium_verify(sig, body, raw)

            calls.append(bare_libsodium)
        gc.collect()
        times = interleaved(calls, payloads)
        assert len(cache) == batch, "every task must have been accepted as new"
        verify_times.append(statistics.median(times[0]))
        accept_times.append(statistics.median(times[1]))
        ratios.append(verify_times[-1] / accept_times[-1])
        if sodium_verify is not None:
            sodium_times.append(statistics.median(times[2]))
            sodium_ratios.append(sodium_times[-1] / accept_times[-1])
    t_acc, t_ver, ratio = (
        statistics.median(accept_times),
        statistics.median(verify_times),
        statistics.median(ratios),
    )
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(
        f"{name:<13} {len(payloads[0]):>6} B  accept_task {1 / t_acc:>7,.0f}/s {t_acc * 1e6:7.1f} us   "
        f"bare verify {1 / t_ver:>7,.0f}/s {t_ver * 1e6:7.1f} us   ratio {ratio:.3f} "
        f"(rounds: min {min(ratios):.3f}, max {max(ratios):.3f})  {verdict} the >= {TARGET} target"
    )
    if sodium_times:
        t_sod = statistics.median(sodium_times)
        print(
            f"{'':<22}  (accept_task verifies with libsodium; bare libsodium verify {t_sod * 1e6:7.1f} us: "
            f"accept_task at {statistics.median(sodium_ratios):.3f} of its rate, the checks other than the "
            f"signature cost {max(t_acc - t_sod, 0) * 1e6:.1f} us)"
        )
    return ratio


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per task kind (default 15)")
    parser.add_argument("--batch", type=int, default=300, help="tasks per round (default 300)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a ratio misses the target")
    args = parser.parse_args(argv)
    print(f"$ {sys.executable} {' '.join(sys.argv)}")
    ratios = [
        run("200-byte task", small_task_body, args.rounds, args.batch),
        run("4096 x f8", array_task_body, args.rounds, args.batch),
    ]
    return 1 if args.check and min(ratios) < TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
