"""The dashboard page under load: its script time while results arrive at 200/s, and the gateway's
memory while the page stays connected.

    flock /tmp/bench.lock .venv/bin/python benchmarks/dashboard.py [--rate R] [--trace-s T] \
        [--minutes M] [--check]

A fleet is made by `edge-provision` (agent node-1, gateway gw-1, device sensor-1, a read-only API
client); Mosquitto runs from its broker files (plain listener on 127.0.0.1); the agent and the
gateway run as processes with their default settings; the device (this process, paho) publishes
signed `stats` tasks of 16 samples at R per second, paced, for the whole run; Debian's headless
Chromium (Selenium through Debian's chromedriver) opens the dashboard, signs in with the form and
keeps the page open. Figures:

  page, T s      long tasks (PerformanceObserver 'longtask': tasks of the page's main thread over
                 50 ms) in a window of T s (default 30) once the rate is steady: the longest, and
                 how many were over 50 and over 100 ms (target: none over 100 ms); the main thread's
                 busy time from the Chrome DevTools Protocol (Performance.getMetrics: ScriptDuration,
                 TaskDuration) per second of the window; results the page received per second.
  gateway RSS    sampled every 5 s for M minutes (default 10) with the page connected and the rate
                 on: start, end and max, and the end against the first minute's end (target: flat,
                 within 5 %); the page's reconnections and gaps over the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _bootstrap  # noqa: F401 - before `agent`: benchmarks/agent.py must not shadow the package
import psutil
from _harness import agent_env, agent_process, gateway_process, paho_client, progress, wait_healthy

from agent.protocol import load_signer, make_task
from provisioning.cli import main as provision_main
from tests.support.browser import chrome
from tests.support.fleet import edge_provision, fleet_broker, provision
from tests.support.services import free_port

NODE = "node-1"
SIGNAL = [float(i % 5) for i in range(16)]
LONG_MS = 50.0
TARGET_LONGEST_MS = 100.0
FLAT = 0.05
SAMPLE_S = 5.0
OBSERVE_LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
}).observe({type: 'longtask'});
"""


class Pacer(threading.Thread):
    """Publishes signed tasks at `rate` per second (on a schedule: a late one does not shift the
    next) until stopped."""

    def __init__(self, device: Any, signer: Any, rate: float) -> None:
        super().__init__(name="pacer", daemon=True)
        self.device, self.signer, self.rate = device, signer, rate
        self.sent = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stopped.is_set():
            due = started + self.sent / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                self.stopped.wait(delay)
                continue
            topic, payload, _ = make_task(self.signer, NODE, "stats", {"signal": SIGNAL})
            self.device.publish(topic, payload, qos=1)
            self.sent += 1

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


def open_page(http_port: int, secret: str) -> Any:
    """Headless Chromium signed in to the dashboard, the fleet's node online on the page."""
    from selenium.webdriver.common.by import By

    driver = chrome()
    driver.get(f"http://127.0.0.1:{http_port}/")
    deadline = time.monotonic() + 30
    while not driver.find_element(By.ID, "client-id").is_displayed():
        if time.monotonic() > deadline:
            raise SystemExit("the dashboard showed no sign-in form")
        time.sleep(0.1)
    driver.execute_script(OBSERVE_LONG_TASKS)
    driver.find_element(By.ID, "client-id").send_keys("bench")
    driver.find_element(By.ID, "client-secret").send_keys(secret)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()
    while not driver.execute_script(
        "const n = document.querySelector('#nodes .node[data-node=\"node-1\"]');"
        "return !!n && n.dataset.online === 'true';"
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"the dashboard did not show {NODE} online: {driver.get_log('browser')}")
        time.sleep(0.1)
    driver.execute_cdp_cmd("Performance.enable", {})
    return driver


def page_figures(driver: Any) -> dict[str, float]:
    metrics = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    received = driver.execute_script(
        "return Number(document.getElementById('stream-count').dataset.received || 0)"
    )
    return {
        "script_s": float(metrics.get("ScriptDuration", 0.0)),
        "task_s": float(metrics.get("TaskDuration", 0.0)),
        "now_ms": float(driver.execute_script("return performance.now()")),
        "received": float(received),
    }


def trace(driver: Any, seconds: float) -> dict[str, Any]:
    """The page's long tasks and busy time over `seconds` of steady load."""
    before = page_figures(driver)
    time.sleep(seconds)
    after = page_figures(driver)
    tasks = driver.execute_script("return window.__longTasks")
    window = [d for start, d in tasks if before["now_ms"] <= start <= after["now_ms"]]
    wall = (after["now_ms"] - before["now_ms"]) / 1000.0
    return {
        "wall_s": wall,
        "longest_ms": max(window, default=0.0),
        "over_50": sum(1 for d in window if d > LONG_MS),
        "over_100": sum(1 for d in window if d > TARGET_LONGEST_MS),
        "script_ms_per_s": (after["script_s"] - before["script_s"]) * 1000.0 / wall,
        "task_ms_per_s": (after["task_s"] - before["task_s"]) * 1000.0 / wall,
        "page_rate": (after["received"] - before["received"]) / wall,
        "problems": [
            e
            for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "/api/v1/session" not in e["message"]
        ],
    }


def memory(gateway: subprocess.Popen[bytes], driver: Any, minutes: float) -> dict[str, Any]:
    """The gateway's RSS every SAMPLE_S seconds for `minutes`, and the page's reconnections."""
    process = psutil.Process(gateway.pid)
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    end = started + minutes * 60.0
    next_report = started + 60.0
    while True:
        now = time.monotonic()
        samples.append((now - started, process.memory_info().rss))
        if now >= next_report:
            progress(f"gateway RSS {samples[-1][1] / 2**20:.1f} MiB after {(now - started) / 60:.0f} min")
            next_report += 60.0
        if now >= end:
            break
        time.sleep(min(SAMPLE_S, max(0.0, end - now)))
    opens, gaps = driver.execute_script("return [document.body.dataset.opens, document.body.dataset.gaps]")
    return {"samples": samples, "opens": int(opens or 0), "gaps": int(gaps or 0)}


def run(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    fleet = provision(workdir, [["agent", NODE], ["gateway", "gw-1"], ["device", "sensor-1"]])
    secret_file = workdir / "bench.secret"
    command = ["--fleet", str(fleet.root), "add", "api-client", "bench", "--roles", "read"]
    assert provision_main([*command, "--secret-file", str(secret_file)]) == 0
    for name in (NODE, "gw-1"):
        edge_provision("--fleet", fleet.root, "bundle", name, "--out", workdir / name)
    signer = load_signer(next((fleet.root / "identities" / "sensor-1").glob("signing-*.key")), "sensor-1")
    http_port = free_port()
    with fleet_broker("mosquitto", fleet) as broker:
        env = agent_env(broker.port, workdir / "data", mqtt_protocol="5", heartbeat_interval_s=1)
        with agent_process(workdir / NODE / "agent.toml", env, workdir / "agent.log"):
            gateway = gateway_process(
                workdir / "gw-1" / "gateway.toml", broker.port, http_port, workdir / "gateway.log"
            )
            driver = None
            pacer = None
            try:
                wait_healthy(http_port, gateway, workdir / "gateway.log")
                progress("the page: signing in")
                driver = open_page(http_port, secret_file.read_text().strip())
                device = paho_client("sensor-1", fleet.password("sensor-1"), broker.port, "bench-device")
                pacer = Pacer(device, signer, args.rate)
                pacer.start()
                progress(
                    f"{args.rate:g} tasks/s: 10 s to settle, then a {args.trace_s:g} s trace of the page"
                )
                time.sleep(10)
                figures = trace(driver, args.trace_s)
                progress(f"the gateway's RSS over {args.minutes:g} min with the page open")
                figures.update(memory(gateway, driver, args.minutes))
                figures["sent"] = pacer.sent
                figures["gateway_rss_after"] = psutil.Process(gateway.pid).memory_info().rss
            finally:
                if pacer is not None:
                    pacer.stop()
                if driver is not None:
                    driver.quit()
                gateway.terminate()
                gateway.wait(30)
    return figures


def report(f: dict[str, Any], args: argparse.Namespace) -> int:
    print(
        f"page over {f['wall_s']:.1f} s at {args.rate:g} results/s "
        f"(the page received {f['page_rate']:.0f}/s):"
    )
    print(
        f"  longest task {f['longest_ms']:.0f} ms; long tasks over 50 ms: {f['over_50']}, "
        f"over 100 ms: {f['over_100']} (target: none over 100 ms)"
    )
    print(
        f"  main thread busy {f['task_ms_per_s']:.0f} ms per second, of which script "
        f"{f['script_ms_per_s']:.0f} ms"
    )
    if f["problems"]:
        print(f"  console problems: {json.dumps(f['problems'])[:500]}")
    samples = f["samples"]
    rss = [r for _, r in samples]
    minute = next((r for t, r in samples if t >= 60.0), rss[-1])
    growth = (rss[-1] - minute) / minute
    print(
        f"gateway RSS over {samples[-1][0] / 60:.1f} min: start {rss[0] / 2**20:.1f} MiB, after 1 min "
        f"{minute / 2**20:.1f} MiB, end {rss[-1] / 2**20:.1f} MiB, max {max(rss) / 2**20:.1f} MiB "
        f"({growth * 100:+.1f} % since the first minute; target: flat, within {FLAT * 100:.0f} %)"
    )
    print(f"the page reconnected {f['opens'] - 1} time(s) and saw {f['gaps']} gap(s); {f['sent']} tasks sent")
    missed = int(f["over_100"] > 0) + int(abs(growth) > FLAT)
    print(
        f"targets: no task over {TARGET_LONGEST_MS:.0f} ms: {'yes' if f['over_100'] == 0 else 'NO'}; "
        f"RSS flat: {'yes' if abs(growth) <= FLAT else 'NO'}"
    )
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="results per second (default 200)")
    parser.add_argument(
        "--trace-s", type=float, default=30.0, help="seconds of the page's trace (default 30)"
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="minutes of the gateway's RSS samples (default 10)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    print(f"$ {Path(sys.executable).name} {' '.join(sys.argv)}")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="edge-dashboard-bench-") as tmp:
        figures = run(Path(tmp), args)
    missed = report(figures, args)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
