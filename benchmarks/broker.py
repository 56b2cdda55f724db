"""The embedded broker against stock amqtt and Mosquitto: same paho clients, same run.

    .venv/bin/python benchmarks/broker.py [--messages N] [--rounds R] [--samples S] [--clients C] [--check]

Each broker runs as its own process on a free port of 127.0.0.1:
  edge           `python -m broker` (this repository), in memory
  edge+disk      the same with --data-dir and a persistent subscriber: a message's PUBACK waits
                 until it is journaled and fsynced, or until the subscriber acknowledged it (a
                 message acknowledged before its batch is written is never written)
  edge+disk/0    the same with persistence.ack_wait_ms = 0: most messages are written and
                 fsynced, then their acknowledgement written (the cost of the journal itself)
  amqtt          amqtt 0.12 as shipped (its Broker, anonymous auth plugin, nothing else)
  mosquitto      Mosquitto 2.0 with set_tcp_nodelay true
Figures, every one a median over the rounds:
  throughput     one paho publisher and one paho subscriber, each its own process, QoS 1,
                 200-byte messages, paho's default 20 in flight: messages / (last received -
                 first published)
  round trip     one paho client publishes QoS 1 and receives it back through its own
                 subscription, one at a time: p50 and p99
  broker cpu     the broker process's CPU time during the throughput run, per message (steadier
                 than throughput on a machine shared with other work)
  memory         the broker's RSS idle, and with C clients connected (raw MQTT CONNECTs, idle)
Targets (issue 4): edge throughput >= 2x amqtt's; edge round-trip p50 <= 3x Mosquitto's.
Every paho client sets TCP_NODELAY. `--check` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shlex
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"
PAYLOAD = b"x" * 200
STOCK_AMQTT = """
import asyncio, sys
from amqtt.broker import Broker

async def main():
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{sys.argv[1]}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"broker exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Broker:
    name: str
    command: list[str]
    persistent: bool = False  # subscriber uses clean_session=False
    env: dict[str, str] = field(default_factory=dict)  # for the broker process
    results: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.results.setdefault(key, []).append(value)

    def median(self, key: str) -> float:
        return statistics.median(self.results[key]) if key in self.results else float("nan")


def brokers(workdir: Path) -> list[Broker]:
    python = sys.executable
    edge = [python, "-m", "broker", "--allow-anonymous", "--log-level", "warning", "--bind"]
    found = [
        Broker("edge", [*edge, "{bind}"]),
        Broker("edge+disk", [*edge, "{bind}", "--data-dir", str(workdir / "data-{port}")], persistent=True),
        Broker(
            "edge+disk/0",
            [*edge, "{bind}", "--data-dir", str(workdir / "data-{port}")],
            persistent=True,
            env={"EDGE_BROKER_PERSISTENCE_ACK_WAIT_MS": "0"},
        ),
        Broker("amqtt", [python, "-c", STOCK_AMQTT, "{port}"]),
    ]
    mosquitto = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None
    )
    if mosquitto:
        conf = workdir / "mosquitto-{port}.conf"
        found.append(Broker("mosquitto", [mosquitto, "-c", str(conf)]))
    return found


@contextlib.contextmanager
def running(broker: Broker) -> Iterator[tuple[int, int]]:
    port = free_port()
    values = {"{bind}": f"{HOST}:{port}", "{port}": str(port)}
    command = [values.get(part, part).replace("{port}", str(port)) for part in broker.command]
    if broker.name == "mosquitto":
        Path(command[-1]).write_text(
            f"listener {port} {HOST}\nallow_anonymous true\nset_tcp_nodelay true\n"
            "max_queued_messages 100000\n"
        )
    # Like Mosquitto's below: a queue bound the publisher can never reach (1,000 by default,
    # past which both brokers drop messages for a subscriber that falls behind), and no
    # connection limit (1,000 by default: the memory figure opens --clients idle ones).
    env = {
        **os.environ,
        "EDGE_BROKER_LIMITS_MAX_QUEUED_MESSAGES": "100000",
        "EDGE_BROKER_LIMITS_MAX_CONNECTIONS": "0",
        **broker.env,
    }
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for_port(port, proc)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def client(client_id: str, clean: bool = True) -> mqtt.Client:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=clean
    )
    c.on_socket_open = lambda _c, _u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.max_queued_messages_set(0)
    return c


def connected(c: mqtt.Client, port: int) -> None:
    ready = threading.Event()
    c.on_connect = lambda *_: ready.set()
    c.connect(HOST, port, keepalive=120)
    c.loop_start()
    if not ready.wait(20):
        raise SystemExit("no CONNACK")


# --- throughput: publisher and subscriber in processes of their own ----------------------------


def subscriber(port: int, count: int, persistent: bool, ready: Any, out: Any) -> None:
    c = client("bench-sub", clean=not persistent)
    done = threading.Event()
    times: list[float] = []

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        times.append(time.monotonic())
        if len(times) == count:
            done.set()

    c.on_message = on_message
    connected(c, port)
    subscribed = threading.Event()
    c.on_subscribe = lambda *_: subscribed.set()
    c.subscribe("bench/t", 1)
    subscribed.wait(20)
    ready.set()
    finished = done.wait(300)
    if not finished:
        print(f"subscriber: {len(times)} of {count} messages", file=sys.stderr)
    out.put(times[-1] if finished else None)
    c.disconnect()
    c.loop_stop()


def publisher(port: int, count: int, ready: Any, out: Any) -> None:
    c = client("bench-pub")
    acked = threading.Event()
    left = [count]

    def on_publish(*_: Any) -> None:
        left[0] -= 1
        if left[0] == 0:
            acked.set()

    c.on_publish = on_publish
    connected(c, port)
    ready.wait(60)
    start = time.monotonic()
    for _ in range(count):
        c.publish("bench/t", PAYLOAD, qos=1)
    acked.wait(300)
    out.put(start)
    c.disconnect()
    c.loop_stop()


def throughput(port: int, count: int, persistent: bool) -> float:
    ctx = mp.get_context("spawn")
    ready, out_sub, out_pub = ctx.Event(), ctx.Queue(), ctx.Queue()
    sub = ctx.Process(target=subscriber, args=(port, count, persistent, ready, out_sub))
    pub = ctx.Process(target=publisher, args=(port, count, ready, out_pub))
    sub.start()
    pub.start()
    last, start = out_sub.get(timeout=600), out_pub.get(timeout=600)
    sub.join(30)
    pub.join(30)
    return float("nan") if last is None else count / (last - start)


# --- round trip and memory -------------------------------------------------------------------------


def round_trips(port: int, samples: int, budget_s: float = 30.0) -> list[float]:
    c = client("bench-rtt")
    got = threading.Event()
    c.on_message = lambda *_: got.set()
    connected(c, port)
    subscribed = threading.Event()
    c.on_subscribe = lambda *_: subscribed.set()
    c.subscribe("bench/rtt", 1)
    subscribed.wait(20)
    times = []
    deadline = time.monotonic() + budget_s
    for i in range(samples + 20):
        got.clear()
        start = time.perf_counter()
        c.publish("bench/rtt", PAYLOAD, qos=1)
        if not got.wait(10):
            break
        if i >= 20:  # warm-up
            times.append((time.perf_counter() - start) * 1000)
        if time.monotonic() > deadline and len(times) >= 50:
            break
    c.disconnect()
    c.loop_stop()
    return times


def raw_connect(port: int, client_id: str) -> socket.socket:
    cid = client_id.encode()
    body = struct.pack(">H", 4) + b"MQTT" + bytes([4, 2]) + struct.pack(">HH", 600, len(cid)) + cid
    sock = socket.create_connection((HOST, port), timeout=30)
    sock.sendall(bytes([0x10, len(body)]) + body)
    if sock.recv(4)[:1] != b"\x20":
        raise SystemExit("no CONNACK for a memory-test client")
    return sock


def memory(port: int, pid: int, clients: int) -> tuple[float, float]:
    time.sleep(0.5)  # let start-up settle
    idle = rss_kb(pid) / 1024
    socks = [raw_connect(port, f"idle-{i}") for i in range(clients)]
    time.sleep(0.5)
    loaded = rss_kb(pid) / 1024
    for sock in socks:
        sock.close()
    return idle, loaded


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(broker: Broker, args: argparse.Namespace) -> None:
    for _ in range(args.rounds):
        with running(broker) as (port, pid):
            idle, loaded = memory(port, pid, args.clients)
            broker.add("rss idle MB", idle)
            broker.add(f"rss {args.clients} clients MB", loaded)
            cpu_before = cpu_seconds(pid)
            broker.add("throughput msg/s", throughput(port, args.messages, broker.persistent))
            broker.add("broker cpu us/msg", (cpu_seconds(pid) - cpu_before) * 1e6 / args.messages)
            rtt = round_trips(port, args.samples)
            broker.add("rtt p50 ms", percentile(rtt, 0.50))
            broker.add("rtt p99 ms", percentile(rtt, 0.99))
        figures = ", ".join(f"{k} {v[-1]:.1f}" for k, v in broker.results.items())
        print(f"  {broker.name}: {figures}", flush=True)


def report(found: list[Broker], args: argparse.Namespace) -> bool:
    keys = [
        "throughput msg/s",
        "broker cpu us/msg",
        "rtt p50 ms",
        "rtt p99 ms",
        "rss idle MB",
        f"rss {args.clients} clients MB",
    ]
    print(f"\n{'broker':<12}" + "".join(f"{k:>20}" for k in keys))
    for b in found:
        print(f"{b.name:<12}" + "".join(f"{b.median(k):>20.2f}" for k in keys))
    by_name = {b.name: b for b in found}
    ok = True
    print()
    edge, stock, mosq = by_name["edge"], by_name["amqtt"], by_name.get("mosquitto")
    for name in ("edge", "edge+disk", "edge+disk/0"):
        ratio = by_name[name].median("throughput msg/s") / stock.median("throughput msg/s")
        if name == "edge+disk/0":  # not a configuration anyone runs: what writing every message costs
            print(f"{name} QoS 1 throughput = {ratio:.2f}x stock amqtt's (no target: every message written)")
            continue
        verdict = "met" if ratio >= 2 else "MISSED"
        ok &= ratio >= 2
        print(f"{name} QoS 1 throughput = {ratio:.2f}x stock amqtt's (target >= 2x: {verdict})")
    if mosq is not None:
        ratio = edge.median("rtt p50 ms") / mosq.median("rtt p50 ms")
        ok &= ratio <= 3
        verdict = "met" if ratio <= 3 else "MISSED"
        print(f"edge QoS 1 round-trip p50 = {ratio:.2f}x Mosquitto's (target <= 3x: {verdict})")
    stock_p50 = stock.median("rtt p50 ms")
    print(f"stock amqtt round-trip p50 = {stock_p50:.2f} ms (its sockets keep Nagle's algorithm)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000, help="messages per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per broker (medians reported)")
    parser.add_argument("--samples", type=int, default=500, help="round trips per run (fewer if slow)")
    parser.add_argument("--clients", type=int, default=1000, help="idle clients for the memory figure")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    load = os.getloadavg()[0]
    print(f"cpus: {os.cpu_count()}, load average {load:.1f}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp:
        found = brokers(Path(tmp))
        for broker in found:
            measure(broker, args)
    ok = report(found, args)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
