"""`edge-agent`: run the agent of one edge node.

    edge-agent run --config node-1/agent.toml      # also: python -m agent run --config ...
    edge-agent check --config node-1/agent.toml    # validate configuration, keys and state, then exit

Exit status: 0 clean stop, 1 could not run (state directory locked or damaged, broker files
unreadable), 2 bad configuration (the message names the key).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence

from .config import Config, load_config
from .errors import AgentError, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.log.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log.level.upper())
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="The edge agent of one node.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the agent until SIGTERM/SIGINT (SIGHUP reloads trust store and configuration)"),
        ("check", "validate and exit"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--config", "-c", required=True, help="agent.toml (from edge-provision bundle)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "check":
            return _check(config)
        setup_logging(config)
        from .runner import run_agent

        return run_agent(config)
    except ConfigError as exc:
        print(f"edge-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AgentError as exc:
        print(f"edge-agent: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _check(config: Config) -> int:
    from .identity import link_settings, load_agent_signer, load_trust
    from .store import Store

    load_agent_signer(config)
    trust = load_trust(config)
    link_settings(config)
    Store.open(config.agent.data_dir).close()
    print(f"edge-agent: {config.source}: node {config.node}, {len(trust)} trusted keys, state readable")
    return EXIT_OK
