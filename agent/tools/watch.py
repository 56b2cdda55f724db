"""`edge-watch`: a live, signature-verified view of the agents under a prefix.

    edge-watch -c dash-1/dashboard.toml                    # table on a terminal, lines otherwise
    edge-watch -c dash-1/dashboard.toml --format lines --node node-1
    edge-watch -c dash-1/dashboard.toml --format json --duration 30 > fleet.jsonl

Subscribes to presence, heartbeats, results, events and rejects; every message is verified
(observe.py) and one that does not verify is shown FLAGGED, never dropped and never as valid.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from types import FrameType

from .board import Board, render
from .cli import add_config_options, load_config, run_tool
from .connection import SUBSCRIBE_REFUSED, ToolClient
from .errors import EXIT_OK, EXIT_TIMEOUT, ConnectFailed
from .observe import Observation, document, line, observe
from .render import dumps
from .settings import ClientConfig

PROG = "edge-watch"
KINDS = ("presence", "heartbeat", "results", "events", "rejects")
_ENTER, _LEAVE = "\x1b[?1049h\x1b[?25l", "\x1b[?25h\x1b[?1049l"  # alternate screen, cursor hidden


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="A live view of edge agents: presence, heartbeats, results, events and rejects under"
        " the prefix, each verified against the trust store (agent keys; the signer must be the node of"
        " the topic). Messages that do not verify are flagged FORGED with the reason.",
        epilog="Formats: `table` refreshes in place (nodes, rates, last results, rejects, forgeries);"
        " `lines` prints one line per message, e.g. `12:00:01 result    node-1 t-17 stats completed"
        " 1.2 ms` or `12:00:02 FORGED result node-1 t-18 (bad_signature: ...)`; `json` prints one object"
        " per message with kind, topic, node, verified, problem and body. Exit status: 0 stopped (Ctrl-C,"
        " --duration, --count reached); 2 bad usage or configuration; 3 --count not reached within"
        " --duration; 4 broker unreachable or login refused.",
    )
    add_config_options(p)
    w = p.add_argument_group("view")
    w.add_argument(
        "--format",
        "-f",
        choices=["auto", "table", "lines", "json"],
        help="auto (watch.format): table on a terminal, lines otherwise",
    )
    w.add_argument("--node", "-n", help="only this node")
    w.add_argument(
        "--once", action="store_true", help="lines/json: stop after one message; table: one snapshot"
    )
    w.add_argument("--count", type=int, metavar="N", help="stop after N messages (lines/json)")
    w.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (table --once: collect S s)"
    )
    w.add_argument("--last", type=int, help="results shown in the table (watch.last, 10)")
    w.add_argument("--no-color", action="store_true", help="table without ANSI colours")
    return p


def subscribe(client: ToolClient, config: ClientConfig, node: str | None) -> None:
    """Every kind of agent topic; a refused subscription is reported, all refused is an error."""
    p, n = config.topics.prefix, node or "+"
    filters = [f"{p}/{kind}/{n}" + ("/+" if kind in ("results", "events") else "") for kind in KINDS]
    granted = client.subscribe(filters)
    refused = [f for f, code in zip(filters, granted, strict=True) if code == SUBSCRIBE_REFUSED]
    if len(refused) == len(filters):
        raise ConnectFailed(
            f"the broker refused every subscription of {config.mqtt.username or 'this client'} under"
            f" {p}/: a dashboard bundle may read what agents publish, an operator results and rejects"
        )
    for topic_filter in refused:
        print(f"{PROG}: warning: the broker refused {topic_filter} (ACL); not shown", file=sys.stderr)


@contextlib.contextmanager
def _terminal(enabled: bool) -> Iterator[None]:
    if enabled:
        sys.stdout.write(_ENTER)
    try:
        yield
    finally:
        if enabled:
            sys.stdout.write(_LEAVE)
            sys.stdout.flush()


def _observations(client: ToolClient, config: ClientConfig, deadline: float | None, tick: float) -> Iterator[
    Observation | None
]:  # fmt: skip
    """Verified or flagged observations as they come; None every `tick` seconds without one."""
    trust, topics = config.trust(), config.topics
    online = True
    while deadline is None or time.monotonic() < deadline:
        wait = tick if deadline is None else max(0.0, min(tick, deadline - time.monotonic()))
        try:
            incoming = client.messages.get(timeout=wait)
        except queue.Empty:
            if online != client.connected.is_set():  # said once per change, on stderr
                online = not online
                state = "reconnected (subscriptions renewed)" if online else "connection lost; reconnecting"
                print(f"{PROG}: {state}", file=sys.stderr, flush=True)
            yield None
            continue
        yield observe(incoming, trust, topics)


def watch_stream(client: ToolClient, config: ClientConfig, args: argparse.Namespace, fmt: str) -> int:
    """lines / json: print each observation; the exit status."""
    limit = 1 if args.once else args.count
    deadline = time.monotonic() + args.duration if args.duration is not None else None
    board, shown = Board(last=config.watch.last), 0
    for obs in _observations(client, config, deadline, 1.0):
        if obs is None:
            continue
        board.update(obs)
        print(dumps(document(obs)) if fmt == "json" else line(obs), flush=True)
        shown += 1
        if limit is not None and shown >= limit:
            return EXIT_OK
    return EXIT_TIMEOUT if limit is not None else EXIT_OK


def watch_table(client: ToolClient, config: ClientConfig, args: argparse.Namespace, color: bool) -> int:
    board = Board(last=args.last or config.watch.last)
    title = f"{config.topics.prefix}/  {client.address}" + (f"  node {args.node}" if args.node else "")
    if args.once:  # one snapshot: what the broker holds (retained presence) and what comes meanwhile
        for obs in _observations(client, config, time.monotonic() + (args.duration or 2.0), 0.2):
            if obs is not None:
                board.update(obs)
        print(render(board, time.time(), color=color, stale_s=config.watch.stale_s, title=title))
        return EXIT_OK
    deadline = time.monotonic() + args.duration if args.duration is not None else None
    refresh, drawn = config.watch.refresh_s, 0.0
    with _terminal(sys.stdout.isatty()):
        for obs in _observations(client, config, deadline, refresh):
            if obs is not None:
                board.update(obs)
            if time.monotonic() - drawn >= refresh:
                drawn = time.monotonic()
                text = render(board, time.time(), color=color, stale_s=config.watch.stale_s, title=title)
                sys.stdout.write("\x1b[H" + text.replace("\n", "\x1b[K\n") + "\x1b[K\x1b[J")
                sys.stdout.flush()
    return EXIT_OK


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (tests calling main())
        signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        config = load_config(args)
        fmt = args.format or config.watch.format
        if fmt == "auto":
            fmt = "table" if sys.stdout.isatty() else "lines"
        client = ToolClient.from_config(config, "watch")
        config.trust()  # fail on a missing trust store before connecting
        client.connect()
        _stop_on_sigterm()
        try:
            subscribe(client, config, args.node)
            if fmt == "table":
                return watch_table(client, config, args, color=sys.stdout.isatty() and not args.no_color)
            return watch_stream(client, config, args, fmt)
        except KeyboardInterrupt:
            return EXIT_OK
        finally:
            with contextlib.suppress(OSError):
                client.close()

    return run_tool(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
