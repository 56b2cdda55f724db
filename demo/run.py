"""`make run`: provision `.demo/`, start broker, agent, gateway and demo device, show the live view.

Ctrl-C (or SIGTERM, or closing the terminal) stops everything in order: the live view, the
device, the gateway, the agent (a clean stop: it publishes its offline presence), the broker;
exit status 0.
A child that dies on its own stops the demo with its log's last lines and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from agent.common.errors import EdgeError
from demo import fleet as demo_fleet

from . import gateway
from .device import seconds_arg
from .fleet import DASHBOARD, DEVICE, GATEWAY, NODE, OPERATOR, DemoFleet
from .monitor import PresenceMonitor
from .processes import RUN_MARKER, Child, Interrupted, port_open, record, spawn, stop_leftovers, wait_until
from .terminal import own_foreground
from .view import start_view, watch_command

DEFAULT_DIR = ".demo"
START_TIMEOUT_S = 60.0
#: The agent's settings for the demo; an EDGE_* variable set by the user wins.
AGENT_ENV = {
    "EDGE_WORKERS_COUNT": "2",
    "EDGE_EVENTS_ENABLED": "true",
    "EDGE_HEARTBEAT_INTERVAL_S": "5",
    "EDGE_WORKERS_GRACE_S": "3",
}
WATCH_STATUSES_OK = (0, 130, -signal.SIGINT, -signal.SIGTERM)
#: A device or broker stopped by our SIGTERM before it installed its handler (a stop during start-up).
STOPPED = (0, -signal.SIGTERM)


def say(text: str) -> None:
    """A progress line. Once nobody reads our stdout (`make run | head`) lines go nowhere and the
    demo stops, as when its terminal goes away (SIGHUP)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        signal.raise_signal(signal.SIGHUP)


def _short(path: Path) -> str:
    """`path` relative to the working directory when it is below it (shorter to copy)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class Demo:
    """The children of one run, started and stopped in order."""

    def __init__(self, demo: DemoFleet, args: argparse.Namespace, stop: threading.Event) -> None:
        self.demo = demo
        self.args = args
        self.stop_event = stop
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", RUN_MARKER: str(demo.root)}
        self.children: dict[str, Child] = {}
        self.monitor: PresenceMonitor | None = None

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        child = spawn(name, argv, self.demo.logs / f"{name}.log", env or self.env)
        self.children[name] = child
        record(self.demo.pid_file, self.children.values())
        return child

    def start(self) -> None:
        py, d = sys.executable, self.demo
        say(f"  broker: embedded, mutual TLS on 127.0.0.1:{d.tls_port} (plain TCP on {d.tcp_port}) ...")
        broker = self._spawn("broker", [py, "-m", "broker", "--fleet-files", str(d.broker_files)])
        wait_until(
            "the broker listened",
            lambda: port_open("127.0.0.1", d.tls_port),
            self.stop_event,
            START_TIMEOUT_S,
            broker,
        )
        self.monitor = PresenceMonitor(d.config(DASHBOARD), NODE)
        # A free port for /metrics and /health: the default 9464 may belong to an agent already here.
        agent_env = {**AGENT_ENV, "EDGE_METRICS_PORT": str(demo_fleet.free_port()), **self.env}
        say(f"  agent {NODE}: {agent_env['EDGE_WORKERS_COUNT']} workers ...")
        agent = self._spawn(
            "agent", [py, "-m", "agent", "run", "--config", str(d.config(NODE))], env=agent_env
        )
        wait_until(f"agent {NODE} came online", self.monitor.online, self.stop_event, START_TIMEOUT_S, agent)
        say(f"  agent {NODE} online")
        if agent_env.get("EDGE_METRICS_ENABLED", "true").lower() not in ("false", "0", "no", "off"):
            port = agent_env["EDGE_METRICS_PORT"]
            say(f"  metrics: http://127.0.0.1:{port}/metrics   health: http://127.0.0.1:{port}/health")
        say(
            f"  device {DEVICE} submitting: every kernel (priorities 2-9), a recurring task, an invalid "
            f"one, two forged ones, then one task every {self.args.interval:g} s"
        )
        self._start_gateway()
        say(f"  logs: {_short(d.logs)}/{{broker,agent,gateway,device,provision}}.log")
        submit = f"{_short(Path(py).parent / 'edge-submit')} -c {_short(d.config(OPERATOR))}"
        say(f"  try, in another terminal: {submit} -n {NODE} --kernel stats --param 'signal=[1,2,3]'")
        say(f"                            {submit} control -n {NODE} sys.list")
        watch = watch_command(d.config(DASHBOARD), self.args.watch_format)
        shown = " ".join([Path(watch[0]).name, *(_short(Path(a)) if "/" in a else a for a in watch[1:])])
        say(f"  live view: {shown}   (Ctrl-C stops everything)")
        view, ready = start_view(watch, self.env, NODE, lambda: signal.raise_signal(signal.SIGHUP))
        self.children["watch"] = view
        record(d.pid_file, self.children.values())
        wait_until("the live view subscribed", ready.is_set, self.stop_event, START_TIMEOUT_S, view)
        device = [py, "-m", "demo.device", "--config", str(d.config(DEVICE))]
        self._spawn("device", [*device, "--interval", str(self.args.interval)])

    def _start_gateway(self) -> None:
        d = self.demo
        port = demo_fleet.free_port()
        env = {**gateway.gateway_env(d, port, NODE), **self.env}
        child = self._spawn(
            "gateway", [sys.executable, "-m", "gateway", "--config", str(d.config(GATEWAY))], env
        )
        wait_until(
            "the gateway answered /health",
            lambda: gateway.healthy(port),
            self.stop_event,
            START_TIMEOUT_S,
            child,
        )
        token = gateway.fetch_token(d, port)
        say(
            f"  HTTP API: http://127.0.0.1:{port}/api/v1 (OpenAPI: /api/v1/openapi.json), a token for "
            f"{demo_fleet.API_CLIENT} in {_short(token)}; try:"
        )
        say(f"    {gateway.curl_line(port, token)}")
        say(f"  {gateway.dashboard_line(d, port)}")

    def supervise(self) -> int:
        """Until a stop signal or a child ends: 0 for a stop, 1 when something died."""
        watch = self.children["watch"]
        while not self.stop_event.wait(0.2):
            if not watch.running():
                code = watch.proc.returncode
                if code in WATCH_STATUSES_OK:
                    return 0
                say(f"make run: the live view exited with status {code}; stopping")
                return 1
            for name in ("broker", "agent", "gateway", "device"):
                child = self.children[name]
                if not child.running():
                    say(f"make run: the {name} exited with status {child.proc.returncode}{child.where()}")
                    return 1
        return 0

    def shutdown(self, signum: int | None) -> int:
        """Stop whatever started, in order; 0 if everything stopped cleanly."""
        say("\nmake run: stopping ...")
        self._stop_watch(signum)
        status = 0
        device = self.children.get("device")
        if device is not None:
            code = device.stop(signal.SIGTERM, 10.0)
            status |= code not in STOPPED
            say(f"  device {DEVICE}: exit {code}")
        gateway_child = self.children.get("gateway")
        if gateway_child is not None:
            code = gateway_child.stop(signal.SIGTERM, 20.0)
            status |= code not in STOPPED
            say(f"  gateway: exit {code}")
        agent = self.children.get("agent")
        if agent is not None:
            came_online = self.monitor is not None and self.monitor.online_session is not None
            code = agent.stop(signal.SIGTERM, 30.0)
            if came_online:
                clean = code == 0 and self.monitor is not None and self.monitor.wait_offline(5.0)
                outcome = "offline (clean stop)" if clean else f"exit {code}, no offline presence seen"
            else:  # stopped while starting
                clean = code in STOPPED
                outcome = f"exit {code} (stopped before it came online)"
            status |= not clean
            say(f"  agent {NODE}: {outcome}")
        if self.monitor is not None:
            self.monitor.close()
        broker = self.children.get("broker")
        if broker is not None:
            code = broker.stop(signal.SIGTERM, 20.0)
            status |= code not in STOPPED
            say(f"  broker: exit {code}")
        self.demo.pid_file.unlink(missing_ok=True)
        return int(status)

    def _stop_watch(self, signum: int | None) -> None:
        watch = self.children.get("watch")
        if watch is None or not watch.running():
            return
        if signum == signal.SIGINT:  # it shares our process group: it has had the SIGINT already
            with contextlib.suppress(subprocess.TimeoutExpired):
                watch.proc.wait(1.0)
        watch.stop(signal.SIGINT, 10.0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Through make: make run DEMO_ARGS='--interval 0.5'; directly: python -m demo "
        "[options]. The demo directory is removed and made again on every run, but only if it holds "
        "the marker file .edge-demo. Logs: DIR/logs/{broker,agent,device,provision}.log. The agent "
        "runs with EDGE_WORKERS_COUNT=2 and events on; EDGE_* variables you set win. "
        "See demo/README.md.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("EDGE_DEMO_DIR") or DEFAULT_DIR),
        help="demo directory (default: $EDGE_DEMO_DIR, else .demo)",
    )
    parser.add_argument(
        "--interval",
        type=seconds_arg,
        default=2.0,
        metavar="S",
        help="seconds between the device's tasks after the opening burst; 0: the burst only (default 2)",
    )
    parser.add_argument(
        "--watch-format",
        default="auto",
        choices=["auto", "table", "lines"],
        help="edge-watch's view (auto: a table on a terminal, lines otherwise)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    with own_foreground():
        return _run(args, stop, received)


def _run(args: argparse.Namespace, stop: threading.Event, received: list[int]) -> int:
    root = args.dir.resolve()
    say(f"make run: the mqtt-edge-agent demo in {root}")
    demo: Demo | None = None
    status = 0
    try:
        leftovers = stop_leftovers(root / "pids", root)
        if leftovers:
            say(f"  stopped what a previous run left running: {', '.join(leftovers)}")
        say(f"  provisioning demo fleet: agent {NODE}, device {DEVICE}, operator, dashboard ...")
        fleet = demo_fleet.make_fleet(root)
        demo = Demo(fleet, args, stop)
        demo.start()
        status = demo.supervise()
    except Interrupted:
        pass
    except EdgeError as exc:  # DemoError, the tools' ToolError and ConfigError
        say(f"make run: error: {exc}")
        status = 1
    finally:  # also on a bug of ours: never leave the children running
        if demo is not None:
            status |= demo.shutdown(received[0] if received else None)
    say("make run: stopped" + (" cleanly" if status == 0 else " (see the messages above)"))
    return status
