"""What edge-submit and edge-watch share on the command line: the configuration flags, errors.

Every configuration key comes from the bundle file (`--config`, else `$EDGE_CONFIG`), then
`EDGE_<SECTION>_<KEY>`, then the flags below, later winning.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable

from .errors import EdgeError
from .settings import ClientConfig, load_client_config

#: flag dest -> configuration key
FLAG_KEYS = {
    "host": "mqtt.host",
    "port": "mqtt.port",
    "servers": "mqtt.servers",
    "prefix": "mqtt.prefix",
    "tls": "mqtt.tls",
    "ca_file": "mqtt.ca_file",
    "cert_file": "mqtt.cert_file",
    "key_file": "mqtt.key_file",
    "username": "mqtt.username",
    "password_file": "mqtt.password_file",
    "mqtt_protocol": "mqtt.protocol",
    "kid": "security.kid",
    "signing_key": "security.signing_key",
    "trust_store": "security.trust_store",
}


def add_config_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """The connection and identity flags; `suppress` for a subcommand's copy (no default of its own,
    so a flag given before the subcommand is not reset by the subcommand's parser)."""
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("configuration (bundle file, then EDGE_* variables, then these flags)")
    group.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=default,
        help="operator.toml, dashboard.toml or device.toml of `edge-provision bundle` (default $EDGE_CONFIG)",
    )
    group.add_argument("--host", default=default, help="broker host (mqtt.host)")
    group.add_argument("--port", default=default, help="broker port (mqtt.port)")
    group.add_argument(
        "--servers",
        default=default,
        metavar="H:P,...",
        help="every endpoint of a broker cluster, tried in turn (mqtt.servers; --host/--port clear it)",
    )
    group.add_argument("--prefix", default=default, help="topic prefix (mqtt.prefix, default edge)")
    tls = group.add_mutually_exclusive_group()
    tls.add_argument("--tls", dest="tls", action="store_const", const="true", default=default, help="use TLS")
    tls.add_argument(
        "--no-tls", dest="tls", action="store_const", const="false", default=default, help="plain TCP"
    )
    group.add_argument(
        "--ca-file", default=default, metavar="FILE", help="fleet CA certificate (mqtt.ca_file)"
    )
    group.add_argument(
        "--cert-file", default=default, metavar="FILE", help="client certificate (mqtt.cert_file)"
    )
    group.add_argument("--key-file", default=default, metavar="FILE", help="its private key (mqtt.key_file)")
    group.add_argument("--username", default=default, help="broker login (mqtt.username)")
    group.add_argument(
        "--password-file", default=default, metavar="FILE", help="broker password file (mqtt.password_file)"
    )
    group.add_argument(
        "--mqtt-protocol",
        default=default,
        choices=["auto", "5", "3.1.1"],
        help="MQTT version (mqtt.protocol)",
    )
    group.add_argument("--kid", default=default, help="key id of the signing key (security.kid)")
    group.add_argument("--signing-key", default=default, metavar="FILE", help="security.signing_key")
    group.add_argument("--trust-store", default=default, metavar="FILE", help="security.trust_store")


def load_config(args: argparse.Namespace) -> ClientConfig:
    flags = {
        key: value for dest, key in FLAG_KEYS.items() if (value := getattr(args, dest, None)) is not None
    }
    if ("mqtt.host" in flags or "mqtt.port" in flags) and "mqtt.servers" not in flags:
        flags["mqtt.servers"] = ""  # one broker named on the command line: not the bundle's cluster
    path = getattr(args, "config", None) or os.environ.get("EDGE_CONFIG") or None
    return load_client_config(path, flags=flags)


def run_tool(prog: str, body: Callable[[], int]) -> int:
    """`body()`, with an `EdgeError` (`ToolError`, `ConfigError`, ...) printed as `prog: error: ...`
    and its exit status, and Ctrl-C as exit 130."""
    try:
        return body()
    except EdgeError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edge-watch | head`: the reader left
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python flushes stdout at exit)
        return 0
