"""edge-gateway: what the HTTP face adds to a task's round trip, and how many submissions a second.

    .venv/bin/python benchmarks/gateway.py [--requests N] [--submits M] [--concurrency C] [--check]

A fleet is made by `edge-provision` (agent node-1, gateway gw-1, device sensor-1, an API client);
Mosquitto runs from its broker files (plain listener on 127.0.0.1); the agent and the gateway run
as processes (`python -m agent run`, `python -m gateway`) with their default settings: the agent
durable (fsync), the gateway's record SQLite with synchronous=FULL. Figures:

  round trip     N requests one after the other, alternating: `POST /api/v1/compute?wait=10` over
                 one kept-alive HTTP connection (request sent -> 200 with the result read), and the
                 same task (stats of 64 samples) signed by the device and published over MQTT with
                 `reply: true` (publish -> its reply received). p50 / p99 of each and the difference
                 of the medians: what the gateway adds (target: <= 2 ms at p50).
  submit rate    M `POST /api/v1/compute` (no wait: answered 202 once recorded and acknowledged by
                 the broker) from C concurrent keep-alive connections: requests/s answered; beside
                 it the agent's own rate, the same M tasks published directly over MQTT and counted
                 when their results arrive (the ceiling the gateway feeds). Target: >= 1,000 req/s,
                 or the agent's rate when that is lower. Also the CPU time per request in that
                 phase of every process sharing the machine's cores: the gateway, the agent (with
                 its workers), Mosquitto and this benchmark's own client.
  gateway alone  M more `POST /api/v1/compute` to a node nobody runs (`bench-sink`): answered 202 on
                 the broker's PUBACK as before, but no agent competes for the cores and no result
                 comes back. The capacity of the gateway's submit path on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import _bootstrap  # noqa: F401 - before `agent`: benchmarks/agent.py must not shadow the package
import aiohttp
import psutil
from _harness import agent_env, agent_process, gateway_process, paho_client, progress, wait_healthy

from agent.protocol import load_signer, make_task
from provisioning.cli import main as provision_main
from tests.support.fleet import edge_provision, fleet_broker, provision
from tests.support.services import free_port

NODE = "node-1"
SAMPLES = [float(i % 7) for i in range(64)]
BODY = {"algorithm": "stats", "parameters": {"signal": SAMPLES}, "node": NODE}
SINK_BODY = {**BODY, "node": "bench-sink"}  # a node nobody runs: the broker acknowledges, no result
TARGET_ADDED_MS = 2.0
TARGET_RATE = 1000.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Replies:
    """The device's replies, by task id, with the time each arrived (paho's network thread)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = threading.Condition()

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.changed:
            self.arrived[message.topic.rsplit("/", 1)[1]] = time.perf_counter()
            self.changed.notify_all()

    def wait(self, task_id: str, timeout: float = 30.0) -> float:
        with self.changed:
            if not self.changed.wait_for(lambda: task_id in self.arrived, timeout):
                raise TimeoutError(f"no reply for {task_id}")
            return self.arrived[task_id]


def token(http_port: int, secret: str) -> str:
    body = json.dumps({"client_id": "bench", "client_secret": secret}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/api/v1/token", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["access_token"])


async def round_trips(
    http_port: int, bearer: str, device: Any, signer: Any, replies: Replies, n: int
) -> tuple[list[float], list[float]]:
    gateway_ms, mqtt_ms = [], []
    headers = {"Authorization": f"Bearer {bearer}"}
    url = f"http://127.0.0.1:{http_port}/api/v1/compute?wait=10"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for i in range(n + 10):  # the first 10 of each warm up
            started = time.perf_counter()
            async with session.post(url, json=BODY, headers=headers) as response:
                answer = await response.json()
            took = (time.perf_counter() - started) * 1000.0
            assert response.status == 200 and answer["status"] == "completed", answer
            topic, payload, task = make_task(signer, NODE, "stats", {"signal": SAMPLES}, reply=True)
            started = time.perf_counter()
            device.publish(topic, payload, qos=1)
            arrived = await asyncio.to_thread(replies.wait, task.id)
            if i >= 10:
                gateway_ms.append(took)
                mqtt_ms.append((arrived - started) * 1000.0)
    return gateway_ms, mqtt_ms


async def submit_rate(
    http_port: int, bearer: str, m: int, concurrency: int, body: dict[str, Any] = BODY
) -> float:
    headers = {"Authorization": f"Bearer {bearer}"}
    url = f"http://127.0.0.1:{http_port}/api/v1/compute"
    left = iter(range(m))

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in left:
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
                assert response.status == 202, response.status

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return m / (time.perf_counter() - started)


def agent_rate(device: Any, signer: Any, replies: Replies, m: int) -> float:
    signed = [make_task(signer, NODE, "stats", {"signal": SAMPLES}, reply=True) for _ in range(m)]
    started = time.perf_counter()
    for topic, payload, _ in signed:
        device.publish(topic, payload, qos=1)
    last = max(replies.wait(task.id, 120) for _, _, task in signed)
    return m / (last - started)


def run(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    fleet = provision(workdir, [["agent", NODE], ["gateway", "gw-1"], ["device", "sensor-1"]])
    secret_file = workdir / "bench.secret"
    assert (
        provision_main(
            [
                "--fleet",
                str(fleet.root),
                "add",
                "api-client",
                "bench",
                "--roles",
                "submit",
                "--secret-file",
                str(secret_file),
            ]
        )
        == 0
    )
    for name in (NODE, "gw-1", "sensor-1"):
        edge_provision("--fleet", fleet.root, "bundle", name, "--out", workdir / name)
    signer = load_signer(next((fleet.root / "identities" / "sensor-1").glob("signing-*.key")), "sensor-1")
    http_port = free_port()
    with fleet_broker("mosquitto", fleet) as broker:
        env = agent_env(broker.port, workdir / "data", mqtt_protocol="5")
        with agent_process(workdir / NODE / "agent.toml", env, workdir / "agent.log") as agent:
            gateway = gateway_process(
                workdir / "gw-1" / "gateway.toml",
                broker.port,
                http_port,
                workdir / "gateway.log",
                limits_rate_per_s=100000,
                limits_burst=100000,
            )
            try:
                wait_healthy(http_port, gateway, workdir / "gateway.log")
                bearer = token(http_port, secret_file.read_text().strip())
                replies = Replies()
                device = paho_client(
                    "sensor-1",
                    fleet.password("sensor-1"),
                    broker.port,
                    "bench-device",
                    callbacks={"on_message": replies.on_message},
                )
                device.subscribe("edge/replies/sensor-1/+", qos=1)
                time.sleep(0.5)
                progress(
                    f"round trips: {args.requests} through the gateway and {args.requests} over MQTT, in turn"
                )
                gateway_ms, mqtt_ms = asyncio.run(
                    round_trips(http_port, bearer, device, signer, replies, args.requests)
                )
                progress(f"submit rate: {args.submits} requests from {args.concurrency} connections")
                sharing = Sharing(gateway.pid, agent.pid, broker_pid(workdir))
                rate = asyncio.run(submit_rate(http_port, bearer, args.submits, args.concurrency))
                cpu_ms = sharing.per_request(args.submits)
                time.sleep(2)  # let the agent drain what the gateway sent before measuring it alone
                progress(f"the agent's own rate: {args.submits} tasks over MQTT")
                ceiling = agent_rate(device, signer, replies, args.submits)
                progress(f"gateway alone: {args.submits} requests to a node nobody runs")
                alone = asyncio.run(submit_rate(http_port, bearer, args.submits, args.concurrency, SINK_BODY))
                device.loop_stop()
                device.disconnect()
            finally:
                gateway.terminate()
                gateway.wait(30)
    return {
        "gateway_ms": gateway_ms,
        "mqtt_ms": mqtt_ms,
        "rate": rate,
        "ceiling": ceiling,
        "alone": alone,
        "cpu_ms": cpu_ms,
    }


def broker_pid(workdir: Path) -> int:
    """Mosquitto's process: the one whose config is under this run's directory."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "mosquitto" and str(workdir) in " ".join(proc.info["cmdline"] or []):
            return int(proc.pid)
    raise RuntimeError(f"no mosquitto process runs a config under {workdir}")


class Sharing:
    """CPU seconds used by each process on the machine's cores between two moments (threads and,
    for the agent, its worker processes included)."""

    def __init__(self, gateway: int, agent: int, broker: int) -> None:
        self.processes = {
            "gateway": psutil.Process(gateway),
            "agent": psutil.Process(agent),
            "mosquitto": psutil.Process(broker),
            "client": psutil.Process(os.getpid()),
        }
        self.before = self._now()
        self.started = time.perf_counter()

    def _now(self) -> dict[str, float]:
        return {name: _cpu(proc, children=name == "agent") for name, proc in self.processes.items()}

    def per_request(self, requests: int) -> dict[str, float]:
        """CPU milliseconds per request of each process, and `cores`: all of them per second of wall time."""
        after, wall = self._now(), time.perf_counter() - self.started
        used = {name: after[name] - self.before[name] for name in after}
        shares = {name: seconds * 1000.0 / requests for name, seconds in used.items()}
        shares["cores"] = sum(used.values()) / wall
        return shares


def _cpu(proc: psutil.Process, children: bool = False) -> float:
    """User + system CPU seconds of a process, its threads (and living children) included."""
    procs = [proc, *proc.children(recursive=True)] if children else [proc]
    total = 0.0
    for one in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = one.cpu_times()
            total += times.user + times.system
    return total


def report(figures: dict[str, Any], args: argparse.Namespace) -> int:
    g, m = figures["gateway_ms"], figures["mqtt_ms"]
    added = statistics.median(g) - statistics.median(m)
    rate, ceiling = figures["rate"], figures["ceiling"]
    print(f"round trip, POST /compute?wait  p50 {statistics.median(g):7.2f} ms  p99 {_pct(g, 0.99):7.2f} ms")
    print(f"round trip, MQTT with reply     p50 {statistics.median(m):7.2f} ms  p99 {_pct(m, 0.99):7.2f} ms")
    print(f"added by the gateway (p50)          {added:7.2f} ms  (target <= {TARGET_ADDED_MS:g} ms)")
    print(f"submit rate (202 answered)          {rate:7.0f} req/s from {args.concurrency} connections")
    print(f"the agent's own rate (MQTT)         {ceiling:7.0f} tasks/s  (ratio {rate / ceiling:.2f})")
    print(f"gateway alone (no agent, no result) {figures['alone']:7.0f} req/s")
    cpu = figures["cpu_ms"]
    print(
        "CPU per request in the rate phase   "
        + ", ".join(f"{name} {cpu[name]:.3f} ms" for name in ("gateway", "agent", "mosquitto", "client"))
        + f" ({cpu['cores']:.2f} of {os.cpu_count()} cores busy)"
    )
    target = min(TARGET_RATE, ceiling)
    missed = int(added > TARGET_ADDED_MS) + int(rate < target)
    print(
        f"targets: added <= {TARGET_ADDED_MS:g} ms: {'yes' if added <= TARGET_ADDED_MS else 'NO'}; "
        f"rate >= {target:.0f} req/s: {'yes' if rate >= target else 'NO'}"
    )
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="round trips of each kind (default 300)")
    parser.add_argument("--submits", type=int, default=3000, help="requests of the rate phase (default 3000)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="HTTP connections of the rate phase (default 32)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    print(f"$ {Path(sys.executable).name} {' '.join(sys.argv)}")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="edge-gateway-bench-") as tmp:
        figures = run(Path(tmp), args)
    missed = report(figures, args)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
