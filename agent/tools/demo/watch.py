"""Stand-in live view, used by `make run` only when `edge-watch` is not installed.

    python -m agent.tools.demo.watch --config .demo/demo-dashboard/dashboard.toml

Follows edge-watch's line format: one line per message an agent publishes, verified with the
dashboard's trust store, e.g. `12:00:01 result  node-1 t-17 stats completed 1.2 ms`, and the word
`FORGED` on any message whose signature does not verify. Task submissions are not shown.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as paho

from agent.protocol import (
    Event,
    Heartbeat,
    Presence,
    ProtocolError,
    RejectReport,
    Result,
    TrustStore,
    open_agent_message,
)

from .bundle import connect, load_login
from .errors import DemoError

AGENT_KINDS = ("results", "events", "heartbeat", "presence", "rejects")


def describe(msg: Result | Event | Heartbeat | Presence | RejectReport) -> str:
    """The line's text after the time, per message type."""
    if isinstance(msg, Result):
        if msg.status == "completed":
            tail = f"{msg.duration_ms:.1f} ms" if msg.duration_ms is not None else ""
        else:
            error = msg.error or {}
            tail = f"{error.get('code', '?')}: {error.get('message', '')}"
        run = f" run {msg.run}" if msg.run > 1 else ""
        return f"result  {msg.node} {msg.id} {msg.kernel} {msg.status}{run} {tail}".rstrip()
    if isinstance(msg, Event):
        code = f" {msg.code}" if msg.code else ""
        return f"event   {msg.node} {msg.id} {msg.status} attempt {msg.attempt}{code}"
    if isinstance(msg, Heartbeat):
        return (
            f"heartbeat {msg.node} {msg.state} queued {msg.queued} running {msg.running} "
            f"completed {msg.completed_total} rejected {msg.rejected_total} rss {msg.rss_bytes >> 20} MiB"
        )
    if isinstance(msg, Presence):
        return f"presence {msg.node} {msg.state} session {msg.session}"
    return f"reject  {msg.node} {msg.code} kid {msg.kid or '-'} id {msg.id or '-'} on {msg.topic}"


class LineWatcher:
    def __init__(self, trust: TrustStore, prefix_topics: Any) -> None:
        self.trust = trust
        self.topics = prefix_topics
        self.lock = threading.Lock()

    def on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if len(parts) < 2 or parts[1] not in AGENT_KINDS:
            return
        try:
            text = describe(
                open_agent_message(bytes(message.payload), message.topic, self.trust, topics=self.topics)
            )
        except ProtocolError as exc:
            text = f"FORGED  {message.topic} {exc.code}: {exc}"
        with self.lock:
            print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.tools.demo.watch",
        description="Print what agents publish, one verified line per message (stand-in for edge-watch).",
    )
    parser.add_argument(
        "--config", required=True, type=Path, help="dashboard.toml from `edge-provision bundle`"
    )
    parser.add_argument("--format", choices=["lines"], default="lines", help="only lines in the stand-in")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        login = load_login(args.config)
        watcher = LineWatcher(login.trust(), login.topics)
        client = connect(login, f"{login.name}-watch")
    except DemoError as exc:
        print(f"watch: error: {exc}", file=sys.stderr)
        return 1
    client.on_message = watcher.on_message
    client.subscribe(f"{login.prefix}/#", qos=1)
    stop.wait()
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
