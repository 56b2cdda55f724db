"""`edge-gateway`: run the fleet's HTTP API, or check its configuration.

edge-gateway --config gw-1/gateway.toml          # until SIGTERM/SIGINT; SIGHUP reloads clients and keys
edge-gateway --config gw-1/gateway.toml --check  # validate and exit
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.common.errors import EdgeError

from .app import Gateway
from .config import load_config

PROG = "edge-gateway"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="The fleet's HTTP API: POST /api/v1/compute turns a request into a signed task for the "
        "agents, GET /api/v1/task/{id} answers with its verified result; JWT (EdDSA) for API clients made "
        "with `edge-provision add api-client`, roles, rate limits, OpenAPI at /api/v1/openapi.json.",
        epilog="Settings: gateway.toml (`edge-provision add gateway NAME && edge-provision bundle NAME`) and "
        "EDGE_GATEWAY_<SECTION>_<KEY> variables, e.g. EDGE_GATEWAY_HTTP_PORT=8443 (gateway/README.md lists "
        "them). SIGHUP re-reads api-clients.json and trust.toml. Exit status: 0 stopped, 1 failed, 2 bad "
        "configuration.",
    )
    p.add_argument("--config", "-c", type=Path, default=os.environ.get("EDGE_GATEWAY_CONFIG"),
                   help="gateway.toml of the gateway's bundle (default $EDGE_GATEWAY_CONFIG)")  # fmt: skip
    p.add_argument(
        "--check", action="store_true", help="validate the configuration and the files it names, then exit"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


async def _serve(gateway: Gateway) -> None:
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.reload)
    print(f"{PROG}: {gateway.config.name} listening on port {gateway.port}", flush=True)
    await stop.wait()
    await gateway.stop()
    print(f"{PROG}: stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.config is None:
        print(f"{PROG}: error: give --config gateway.toml (or set EDGE_GATEWAY_CONFIG)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        gateway = Gateway(config)
        if args.check:
            gateway.records.close()
            clients = len(gateway.auth.clients.by_name)
            print(f"{PROG}: {args.config}: ok (gateway {config.name}, {clients} API clients)")
            return 0
        asyncio.run(_serve(gateway))
    except EdgeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
