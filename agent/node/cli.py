"""`edge-agent`: run the agent of one edge node.

    edge-agent run --config node-1/agent.toml      # also: python -m agent run --config ...
    edge-agent check --config node-1/agent.toml    # validate configuration, keys and state, then exit
    edge-agent store check DATA_DIR [--cut]        # report damage in the state (agent stopped for --cut)

Exit status: 0 clean stop, 1 could not run (state directory locked or damaged, broker files
unreadable), 2 bad configuration (the message names the key). `store check`: 0 nothing damaged
(a torn tail is a crash's, cut at the next start), 1 damage found (or, with --cut, cut).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..common import journal
from .config import Config, load_config
from .errors import ConfigError, EdgeError
from .observe.logs import setup_logging

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
_EPILOG = {
    "run": "While running it serves GET /metrics (Prometheus) and GET /health (200 or 503, JSON) on "
    "127.0.0.1:9464 ([metrics] host, port, enabled; EDGE_METRICS_PORT=0 takes any free port and logs it). "
    "Logs go to stderr: JSON lines when stderr is not a terminal, else text ([log] format, level).",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="The edge agent of one node.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the agent until SIGTERM/SIGINT (SIGHUP reloads trust store and configuration)"),
        ("check", "validate and exit"),
    ):
        cmd = sub.add_parser(name, help=text, description=text, epilog=_EPILOG.get(name))
        cmd.add_argument("--config", "-c", required=True, help="agent.toml (from edge-provision bundle)")
    _store_parser(sub)
    return parser


_STORE_EPILOG = """\
The agent refuses to start when a state file is damaged in a way a crash cannot leave (a bad
frame with data after it): it will not drop what follows unseen. This command lists every file
of the state (snapshot, journal, history partitions), its frames, and where the damage is.
With --cut (the agent stopped), each damaged file is copied to <name>.damaged-<time> and cut at
its last good frame: the records after the damage are given up, knowingly. A torn tail (a frame
cut short at the very end) is a crash's, not damage: the next start cuts it by itself."""


def _store_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = sub.add_parser("store", help="inspect and repair the state directory")
    actions = store.add_subparsers(dest="action", required=True)
    text = "report damage in the state directory (snapshot, journal, history); --cut repairs"
    check = actions.add_parser(
        "check",
        help=text,
        description=text,
        epilog=_STORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="the agent's [agent] data_dir")
    check.add_argument("--cut", action="store_true", help="cut each damaged file at its last good frame")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "store":
            return _store_check(args.data_dir, cut=args.cut)
        config = load_config(args.config)
        if args.command == "check":
            return _check(config)
        setup_logging(config)
        from .app import run_agent

        return run_agent(config)
    except ConfigError as exc:
        print(f"edge-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except EdgeError as exc:
        print(f"edge-agent: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _store_check(data_dir: Path, *, cut: bool) -> int:
    from .store.store import LAYOUT

    state = data_dir / "state"
    if not state.is_dir():
        print(f"edge-agent: {data_dir} holds no agent state (no state/ directory)", file=sys.stderr)
        return EXIT_CONFIG
    history = sorted((data_dir / "history").glob("*.log"))
    reports = journal.check(state, LAYOUT, also=history)
    print(journal.describe(reports))
    if not journal.damaged(reports):
        print("no damage: the agent can start")
        return EXIT_OK
    if not cut:
        print(f"damage found: `edge-agent store check {data_dir} --cut` keeps what precedes it (see --help)")
        return EXIT_FAILED
    for line in journal.cut_damage(state, LAYOUT, reports):
        print(line)
    return EXIT_FAILED if journal.damaged(journal.check(state, LAYOUT, also=history)) else EXIT_OK


def _check(config: Config) -> int:
    from .keys import load_agent_signer, load_trust
    from .link.settings import link_settings
    from .store import Store

    load_agent_signer(config)
    trust = load_trust(config)
    link_settings(config)
    Store.open(config.agent.data_dir).close()
    print(f"edge-agent: {config.source}: node {config.node}, {len(trust)} trusted keys, state readable")
    return EXIT_OK
