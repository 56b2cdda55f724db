"""The parts of the soak (`soak.py`): a broker process, the device, the dashboard, the tally.

    broker = BrokerProcess("embedded", fleet, workdir); broker.start(); broker.restart("kill")
    device = Device(port, password, signer, rate=40, mix=MIX, ttl_s=60)   # paced, signed, QoS 1
    watcher = Watcher(port, password)             # results, persistent session, QoS 1
    device.begin("k"); ...; device.end()
    tally(*device.ids("k"), watcher.results_of("k"), trust)   # lost, duplicate-bytes, statuses

Not a benchmark (no figures). Thread rules: `Device` paces and publishes on a thread of its own;
its `on_publish` and `Watcher._on_message` run on paho's network threads; each class guards what
those threads share with one lock, and the methods called by the soak's main thread take it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psutil
from _harness import TOPICS, paho_client

from agent.protocol import ProtocolError, Result, Signer, TrustStore, make_task, open_agent_message
from tests.support.fleet import Fleet
from tests.support.services import wait_for_port

NODE = "node-1"
STOPS = ("kill", "term")


# --- the broker, as a process of its own ----------------------------------------------------------


class BrokerProcess:
    """Either broker from the fleet's files, in a process of its own so that it can be killed;
    restarted over the same ports and the same data directory (its persistence)."""

    def __init__(self, kind: str, fleet: Fleet, workdir: Path) -> None:
        self.kind = kind
        self.ports = [fleet.tcp_port, fleet.tls_port]
        self.log = workdir / f"{kind}.log"
        if kind == "embedded":
            files = fleet.amqtt_files
            self.argv = [
                sys.executable,
                "-m",
                "broker",
                "--fleet-files",
                str(files),
                "--log-level",
                "warning",
            ]
        elif kind == "mosquitto":
            binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            self.argv = [binary, "-c", str(fleet.mosquitto_files / "mosquitto.conf")]
        else:
            raise ValueError(f"unknown broker kind {kind!r}")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self.ports[0]

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            for port in self.ports:
                wait_for_port(port, timeout=60, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"the {self.kind} broker did not start: {exc}; see {self.log}") from exc

    def stop(self, how: str = "term") -> int:
        """SIGKILL (`kill`: a crash) or SIGTERM (`term`: a clean stop, 30 s at most); the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"the {self.kind} broker did not stop within 30 s of SIGTERM") from None

    def restart(self, how: str) -> None:
        code = self.stop(how)
        if how == "term" and code != 0:
            raise RuntimeError(f"the {self.kind} broker stopped with status {code}; see {self.log}")
        self.start()


# --- the device: a steady load of signed tasks ----------------------------------------------------


def _params(kernel: str, rng: np.random.Generator) -> dict[str, Any]:
    if kernel == "stats":
        return {"signal": rng.normal(size=64)}
    if kernel == "fir_filter":
        return {"signal": rng.normal(size=256), "taps": rng.normal(size=16)}
    if kernel == "fft_magnitude":
        return {"signal": rng.normal(size=256), "sample_rate": 1000.0}
    if kernel == "matrix_multiply":
        return {"matrix_a": rng.normal(size=(16, 16)), "matrix_b": rng.normal(size=(16, 8))}
    if kernel == "test.sleep":  # a long attempt: kills land on running work too
        return {"seconds": float(rng.uniform(0.1, 0.5))}
    raise ValueError(f"no parameters for kernel {kernel!r}")


class Device:
    """Signed tasks for the node at a steady rate, QoS 1, as one device would send them; which of
    them the broker acknowledged (PUBACK). paho keeps a publish that the broker did not
    acknowledge and sends it again after a reconnect, so a broker restart loses none of them."""

    def __init__(
        self,
        port: int,
        password: str,
        signer: Signer,
        *,
        rate: float,
        mix: dict[str, float],
        ttl_s: float,
        seed: int = 1,
    ) -> None:
        self.signer, self.rate, self.ttl_s = signer, rate, ttl_s
        self.kernels, self.weights = list(mix), list(mix.values())
        self.rng = random.Random(seed)
        self.arrays = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._pending: dict[int, str] = {}  # packet id -> task id, until its PUBACK
        self._early: set[int] = set()  # packet ids acknowledged before they were recorded
        self.published: dict[str, float] = {}  # task id -> publish time (perf_counter)
        self.acked: dict[str, float] = {}  # task id -> PUBACK time
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.client = paho_client(
            "sensor-1",
            password,
            port,
            "soak-device",
            protocol=mqtt.MQTTv311,
            callbacks={"on_publish": self._on_publish},
        )

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        """paho's network thread, inside paho's own lock: this lock is taken after paho's, never
        the other way round (`_publish` calls paho outside it), or the two threads deadlock."""
        with self._lock:
            task_id = self._pending.pop(mid, None)
            if task_id is None:
                self._early.add(mid)  # acknowledged before `_publish` could record its packet id
            else:
                self.acked[task_id] = time.perf_counter()

    def begin(self, tag: str) -> None:
        """Start sending tasks `{tag}-000000`, `{tag}-000001`, ... at the rate."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(tag,), name=f"device-{tag}", daemon=True)
        self._thread.start()

    def end(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self, tag: str) -> None:
        started, n = time.monotonic(), 0
        while not self._stop.is_set():
            behind = time.monotonic() - (started + n / self.rate)
            if behind < 0:
                self._stop.wait(-behind)
                continue
            if behind > 1.0:  # the machine stalled: catch up by one second at most
                started += behind - 1.0
            self._publish(f"{tag}-{n:06d}")
            n += 1

    def _publish(self, task_id: str) -> None:
        kernel = self.rng.choices(self.kernels, self.weights)[0]
        topic, payload, _ = make_task(
            self.signer,
            NODE,
            kernel,
            _params(kernel, self.arrays),
            task_id=task_id,
            ttl_s=self.ttl_s,
            max_retries=10,  # a long attempt cut by several kills in a row still completes
        )
        info = self.client.publish(topic, payload, qos=1)  # never under self._lock: see _on_publish
        now = time.perf_counter()
        with self._lock:
            self.published[task_id] = now
            if info.mid in self._early:
                self._early.discard(info.mid)
                self.acked[task_id] = now
            else:
                self._pending[info.mid] = task_id

    def count(self, tag: str) -> int:
        with self._lock:
            return sum(1 for task_id in self.published if task_id.startswith(tag + "-"))

    def ids(self, tag: str) -> tuple[set[str], set[str]]:
        """The phase's task ids: published, and acknowledged by the broker."""
        prefix = tag + "-"
        with self._lock:
            return (
                {t for t in self.published if t.startswith(prefix)},
                {t for t in self.acked if t.startswith(prefix)},
            )

    def close(self) -> None:
        self.end()
        self.client.disconnect()
        self.client.loop_stop()


# --- the dashboard --------------------------------------------------------------------------------


class Watcher:
    """A dashboard subscribed to the node's results with a persistent session (clean_session
    false, QoS 1): results published while it is away, during a broker restart, wait for it in
    its session, so that it does not lose any by itself. Keeps every copy that arrives."""

    def __init__(self, port: int, password: str) -> None:
        self._lock = threading.Lock()
        self.copies: list[tuple[str, bytes]] = []  # (topic, payload), in arrival order
        self.seen: set[str] = set()  # task ids with a result
        self._subscribed = threading.Event()
        self.client = paho_client(
            "dash-1",
            password,
            port,
            "soak-watcher",
            protocol=mqtt.MQTTv311,
            clean_session=False,
            callbacks={
                "on_connect": lambda c, u, f, r, p: c.subscribe(TOPICS.prefix + f"/results/{NODE}/#", 1),
                "on_subscribe": lambda *a: self._subscribed.set(),
                "on_message": self._on_message,
            },
        )
        if not self._subscribed.wait(30):
            raise RuntimeError("the watcher could not subscribe to the results")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        topic = message.topic
        with self._lock:
            self.copies.append((topic, bytes(message.payload)))
            self.seen.add(topic.rsplit("/", 1)[-1])

    def has_result(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self.seen

    def missing(self, ids: set[str]) -> set[str]:
        with self._lock:
            return ids - self.seen

    def results_of(self, tag: str) -> list[tuple[str, bytes]]:
        prefix = f"/{tag}-"
        with self._lock:
            return [(t, p) for t, p in self.copies if prefix in t]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- the tally ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one phase delivered: `lost` are acknowledged tasks without any result."""

    acked: int = 0
    published: int = 0
    lost: list[str] = field(default_factory=list)
    unacked: list[str] = field(default_factory=list)  # published, never acknowledged, no result
    duplicate_bytes: list[str] = field(default_factory=list)  # (id, run) with copies that differ
    resent: int = 0  # copies identical to one received before
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    unverified: int = 0  # copies that do not verify with the agent's key
    other_runs: int = 0  # results of a one-shot task with run != 1


def tally(published: set[str], acked: set[str], copies: list[tuple[str, bytes]], trust: TrustStore) -> Tally:
    """Every task of a phase (`published`, and `acked` by the broker) against every result copy
    (topic, payload) that the dashboard received for them."""
    out = Tally(acked=len(acked), published=len(published))
    payloads: dict[tuple[str, int], set[bytes]] = collections.defaultdict(set)
    opened: dict[bytes, Result | None] = {}
    for topic, payload in copies:
        if payload not in opened:
            opened[payload] = _open(payload, topic, trust)
        else:
            out.resent += 1
        result = opened[payload]
        if result is None:
            out.unverified += 1
            continue
        if payload not in payloads[(result.id, result.run)]:
            out.statuses[result.status] += 1
        payloads[(result.id, result.run)].add(payload)
    answered = {task_id for task_id, _ in payloads}
    out.lost = sorted(acked - answered)
    out.unacked = sorted(published - acked - answered)
    out.duplicate_bytes = sorted(f"{i}#{run}" for (i, run), copies in payloads.items() if len(copies) > 1)
    out.other_runs = sum(1 for _, run in payloads if run != 1)
    return out


def _open(payload: bytes, topic: str, trust: TrustStore) -> Result | None:
    try:
        message = open_agent_message(payload, topic, trust)
    except ProtocolError as exc:
        print(f"a result that does not verify on {topic}: {exc}", file=sys.stderr)
        return None
    return message if isinstance(message, Result) else None


# --- the agent's processes ------------------------------------------------------------------------


def group_leftovers(pgid: int, grace_s: float = 5.0) -> int:
    """After the agent's main process died: how many processes of its group (forkserver, workers)
    were still alive `grace_s` later (they should end by themselves); those are then killed."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _group_members(pgid):
            return 0
        time.sleep(0.05)
    left = _group_members(pgid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return len(left)


def _group_members(pgid: int) -> list[int]:
    members = []
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(OSError, psutil.Error):  # ended meanwhile
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
    return members
