"""What the agent benchmarks share: the agent as a process, paho clients, a presence watch, progress;
and edge-gateway as a process, for `gateway.py` and `dashboard.py`.

    env = agent_env(port, workdir / "data", mqtt_protocol="5")   # EDGE_* variables of one agent
    with agent_process(bundle, env, workdir / "agent.log") as proc: ...
    watch = PresenceWatch(port, "dash-1", password, trust, node="node-1")
    watch.wait_online(since)                                      # its next live, verified birth
    gateway = gateway_process(bundle, port, http_port, log); wait_healthy(http_port, gateway, log)

Not a benchmark (no figures): `agent.py`, `footprint.py` and `soak.py` import it after `_bootstrap`.
Thread rules: `PresenceWatch._on_message` runs on paho's network thread and only appends under
its condition; everything else is called from the benchmark's own threads.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.protocol import ProtocolError, Topics, TrustStore, open_agent_message
from agent.protocol.messages import Presence

HOST = "127.0.0.1"
TOPICS = Topics()


def progress(step: str) -> None:
    """What the run is doing now, on stderr (the report is on stdout): a full run takes minutes."""
    print(f"[{time.strftime('%H:%M:%S')}] {step}", file=sys.stderr, flush=True)


def nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho never sets TCP_NODELAY (NOTES.md): QoS 1 round trips of ~1 ms instead of 44 ms."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def paho_client(
    name: str,
    password: str,
    port: int,
    client_id: str,
    *,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    callbacks: dict[str, Any] | None = None,
    **options: Any,
) -> mqtt.Client:
    """A connected paho client with its network thread running, reconnecting within 1-2 s.
    `callbacks` (e.g. `{"on_connect": f}`) are set before it connects, so none is missed;
    `options` go to `mqtt.Client` (e.g. `clean_session=False`: a persistent MQTT 3.1.1 session)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **options)
    client.username_pw_set(name, password)
    client.on_socket_open = nodelay
    client.max_inflight_messages_set(100)
    client.reconnect_delay_set(1, 2)
    for attribute, callback in (callbacks or {}).items():
        setattr(client, attribute, callback)
    client.connect(HOST, port)
    client.loop_start()
    return client


def agent_env(port: int, data: Path, **settings: object) -> dict[str, str]:
    """The environment of `python -m agent run` against a plain listener on 127.0.0.1:`port`;
    `settings` are further keys as `section_key=value` (`workers_count=2` is EDGE_WORKERS_COUNT)."""
    env = {
        **os.environ,
        "EDGE_MQTT_TLS": "false",
        "EDGE_MQTT_HOST": HOST,
        "EDGE_MQTT_PORT": str(port),
        "EDGE_AGENT_DATA_DIR": str(data),
        "EDGE_LOG_LEVEL": "warning",
        "EDGE_METRICS_PORT": "0",  # any free port: never collides with an agent already running here
    }
    env.update({f"EDGE_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def start_agent(bundle: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m agent run --config bundle`, output appended to `log`, in a session of its own
    (its workers share its process group, so that what a kill -9 leaves can be found and ended)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(bundle)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def agent_process(bundle: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`start_agent` until the block ends, then a clean stop (SIGTERM)."""
    proc = start_agent(bundle, env, log)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(60)


def gateway_process(
    bundle: Path, port: int, http_port: int, log: Path, **settings: object
) -> subprocess.Popen[bytes]:
    """`python -m gateway --config bundle` against a plain listener on 127.0.0.1:`port`, HTTP on
    `http_port`; `settings` are further keys as `section_key=value` (`limits_burst=10` is
    EDGE_GATEWAY_LIMITS_BURST)."""
    env = {
        **os.environ,
        "EDGE_GATEWAY_MQTT_TLS": "false",
        "EDGE_GATEWAY_MQTT_PORT": str(port),
        "EDGE_GATEWAY_MQTT_PROTOCOL": "5",
        "EDGE_GATEWAY_HTTP_PORT": str(http_port),
    }
    env.update({f"EDGE_GATEWAY_{key.upper()}": str(value) for key, value in settings.items()})
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(bundle), "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_healthy(http_port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the gateway's /health answers 200 (it exits the benchmark if the gateway exits)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{http_port}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the gateway did not become healthy")


class PresenceWatch:
    """A dashboard subscribed to one node's presence: when verified live `online` records arrived."""

    def __init__(
        self, port: int, user: str, password: str, trust: TrustStore, node: str, client_id: str
    ) -> None:
        self.trust = trust
        self.onlines: list[float] = []  # arrival times (perf_counter) of verified online records
        self.changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.username_pw_set(user, password)
        self.client.reconnect_delay_set(1, 2)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(TOPICS.presence(node), 1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(HOST, port)
        self.client.loop_start()
        if not subscribed.wait(15):
            raise RuntimeError("the presence subscriber could not subscribe")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        arrived = time.perf_counter()
        try:
            msg = open_agent_message(bytes(message.payload), message.topic, self.trust)
        except ProtocolError as exc:
            print(f"presence that does not verify: {exc}", file=sys.stderr)
            return
        if isinstance(msg, Presence) and msg.state == "online" and not message.retain:
            with self.changed:
                self.onlines.append(arrived)
                self.changed.notify_all()

    def online_since(self, since: float) -> bool:
        """A live online record arrived after `since` (perf_counter)."""
        with self.changed:
            return any(t > since for t in self.onlines)

    def wait_online(self, since: float, timeout_s: float = 60.0) -> float:
        """The arrival of the first live (not retained) online record after `since`."""
        with self.changed:
            if not self.changed.wait_for(lambda: any(t > since for t in self.onlines), timeout_s):
                raise RuntimeError(f"the agent did not come online within {timeout_s:.0f} s")
            return min(t for t in self.onlines if t > since)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
