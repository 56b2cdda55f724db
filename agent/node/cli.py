"""`edge-agent`: run the agent of one edge node.

    edge-agent run --config node-1/agent.toml      # also: python -m agent run --config ...
    edge-agent check --config node-1/agent.toml    # validate configuration, keys and state, then exit
    edge-agent subscribe --config node-1/agent.toml  # make the agent's session on its broker, leave
    edge-agent store check DATA_DIR [--cut]        # report damage in the state (agent stopped for --cut)
    edge-agent state DATA_DIR [--status S] [--id ID] [--kid KID] [--limit N] [--json]
                                                   # task records, read without writing (stateview.py)
    edge-agent install --bundle NODE.tar.gz --wheel W.whl [--dry-run] [--no-systemd] [--root DIR]
    edge-agent uninstall [--purge]                 # the agent as a service (install/, deploy/README.md)

Exit status: 0 clean stop, 1 could not run (state directory locked or damaged, broker files
unreadable), 2 bad configuration (the message names the key). `store check`: 0 nothing damaged
(a torn tail is a crash's, cut at the next start), 1 damage found (or, with --cut, cut).
`state`: 0 shown, 1 unreadable state or no such task, 2 no state in DATA_DIR or a wrong option.
`subscribe`: 0 the session and every subscription made, 1 no endpoint took it or one was refused.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

from agent.protocol import is_valid_id

from ..common import journal
from .config import Config, load_config
from .errors import ConfigError, EdgeError
from .observe.logs import setup_logging

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
_EPILOG = {
    "run": "While running it serves GET /metrics (Prometheus) and GET /health (200 or 503, JSON) on "
    "127.0.0.1:9464 ([metrics] host, port, enabled; EDGE_METRICS_PORT=0 takes any free port and logs it). "
    "Logs go to stderr: JSON lines when stderr is not a terminal, else text ([log] format, level).",
    "subscribe": "Tasks sent to the broker from then on wait there for the agent (a broker keeps QoS 1 "
    "messages only for subscriptions that exist). Run it against a new broker before the fleet's "
    "devices move there: deploy/cluster/README.md.",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="The edge agent of one node.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the agent until SIGTERM/SIGINT (SIGHUP reloads trust store and configuration)"),
        ("check", "validate and exit"),
        ("subscribe", "make the agent's persistent session on its broker (its subscriptions) and leave"),
    ):
        cmd = sub.add_parser(name, help=text, description=text, epilog=_EPILOG.get(name))
        cmd.add_argument("--config", "-c", required=True, help="agent.toml (from edge-provision bundle)")
    _store_parser(sub)
    _state_parser(sub)
    from .install.commands import add_parsers

    add_parsers(sub)
    return parser


_STORE_EPILOG = """\
The agent refuses to start when a state file is damaged in a way a crash cannot leave (a bad
frame with data after it): it will not drop what follows unseen. This command lists every file
of the state (snapshot, journal, history partitions), its frames, and where the damage is.
With --cut (the agent stopped), each damaged file is copied to <name>.damaged-<time> and cut at
its last good frame: the records after the damage are given up, knowingly. A torn tail (a frame
cut short at the very end) is a crash's, not damage: the next start cuts it by itself."""


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _on_data_dir(sub: Subparsers, name: str, text: str, epilog: str) -> argparse.ArgumentParser:
    """A command on DATA_DIR whose --help explains it at length."""
    command = sub.add_parser(
        name, help=text, description=text, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="the agent's [agent] data_dir")
    return command


def _store_parser(sub: Subparsers) -> None:
    store = sub.add_parser("store", help="inspect and repair the state directory")
    actions = store.add_subparsers(dest="action", required=True)
    text = "report damage in the state directory (snapshot, journal, history); --cut repairs"
    check = _on_data_dir(actions, "check", text, _STORE_EPILOG)
    check.add_argument("--cut", action="store_true", help="cut each damaged file at its last good frame")


_STATE_EPILOG = """\
Reads the state as the agent would at its start (state/snapshot, then the journal applied in
memory) and the history partitions (history/YYYY-MM-DD.log), and writes nothing: no lock is
taken, no torn tail cut, no old format rewritten, no compaction; the files keep their bytes and
times. Run it with the agent stopped; while the agent runs (state/LOCK held) it works all the
same and says so: the view may be behind by the batch the agent is writing.

The records are those sys.status and sys.list answer (PROTOCOL 8), through the same queries:
live tasks (queued, scheduled, running) and the finished ones of the history, newest received
first; with --status only those; with --id the task of that id (one record per issuer that
used it; --kid picks one). A list reads whole history days, newest first, until more than
--limit finished tasks were found, as sys.list does.

Output: a table; with --json one JSON document per line, each a record as sys.status answers
it. Damaged state: the message names the file; `edge-agent store check DATA_DIR` reports every
file of the state and what is wrong with it. A damaged history day is reported and left out."""


def _state_parser(sub: Subparsers) -> None:
    from .intake.queries import DEFAULT_LIST_LIMIT, STATUSES

    text = "show task records of a data directory, read without writing (the agent stopped or running)"
    state = _on_data_dir(sub, "state", text, _STATE_EPILOG)
    state.add_argument("--status", choices=STATUSES, help="only tasks of this status")
    state.add_argument("--id", dest="task_id", metavar="ID", help="the task of this id (as sys.status)")
    state.add_argument("--kid", metavar="KID", help="only tasks of this issuer (key id)")
    state.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help=f"at most N records, newest received first (default {DEFAULT_LIST_LIMIT})",
    )
    state.add_argument("--json", action="store_true", help="one JSON document per record and line")


def _state(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .intake.queries import DEFAULT_LIST_LIMIT
    from .stateview import show

    if args.task_id is not None:
        if args.status is not None or args.limit is not None:
            parser.error("state: --id shows one task; --status and --limit are for lists")
        if not is_valid_id(args.task_id):
            parser.error(f"state: --id {args.task_id!r} is not a task id ([A-Za-z0-9_.:-]{{1,64}})")
    limit = DEFAULT_LIST_LIMIT if args.limit is None else args.limit
    if limit < 1:
        parser.error(f"state: --limit must be at least 1, got {limit}")
    return show(
        args.data_dir, status=args.status, task_id=args.task_id, kid=args.kid, limit=limit, as_json=args.json
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "store":
            return _store_check(args.data_dir, cut=args.cut)
        if args.command == "state":
            return _state(parser, args)
        if args.command in ("install", "uninstall"):
            from .install.commands import run

            return run(args)
        config = load_config(args.config)
        if args.command == "check":
            return _check(config)
        if args.command == "subscribe":
            return _subscribe(config)
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


def _subscribe(config: Config) -> int:
    from .link.session import make_session
    from .link.settings import link_settings

    settings = link_settings(config)
    endpoint, refused = make_session(settings)
    if refused:
        print(f"edge-agent: {endpoint} refused {', '.join(refused)}: check the broker's ACL", file=sys.stderr)
        return EXIT_FAILED
    print(f"edge-agent: session of {settings.client_id} on {endpoint}: {', '.join(settings.subscriptions)}")
    return EXIT_OK
