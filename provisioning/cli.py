"""`edge-provision`: the command line. Argument parsing and printing only; the work is in operations.py."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from agent.common.errors import EdgeError
from agent.common.fileio import PRIVATE, write_atomic
from agent.common.timespec import format_time, parse_duration, parse_time
from agent.protocol.keys import ALGORITHMS
from provisioning import nats, output
from provisioning import operations as ops

from .brokerfiles import FORMATS, BrokerOptions
from .errors import InputError
from .fleet import CA_ALGORITHMS, DEFAULT_CERT_DAYS, DEFAULT_HOST, Fleet, FleetConfig, open_fleet
from .identities import KINDS, bulk_names, check_kind

PROG = "edge-provision"
FLEET_ENV = "EDGE_FLEET"
DEFAULT_FLEET = "fleet"
DEFAULT_OVERLAP = "24h"

DESCRIPTION = """\
Provision an edge fleet: a CA, identities (agents, devices, operators, dashboards) with
signing keys, TLS client certificates and broker passwords, per-machine bundles, and the
broker's logins, ACL and listener files.

Every command works on a fleet directory: --fleet DIR, else $EDGE_FLEET, else ./fleet.
Private keys are written 0600 and never printed."""

EPILOG = """\
examples:
  edge-provision init fleet --name plant-3
  edge-provision add agent node-1 --pool cameras
  edge-provision add device sensor-7 --targets node-1,pool:cameras
  edge-provision add device --count 1000 --prefix sensor-    # sensor-0001 .. sensor-1000
  edge-provision add operator alice
  edge-provision bundle node-1 --archive node-1.tar.gz
  edge-provision broker-files --format mosquitto --out /etc/mosquitto/edge
  edge-provision rotate sensor-7 --overlap 24h
  edge-provision revoke sensor-7 && edge-provision broker-files --out /etc/mosquitto/edge \
    && systemctl restart mosquitto                          # Mosquitto reads its logins at start
  edge-provision list
"""


def _formatter(prog: str) -> argparse.RawDescriptionHelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _fleet_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--fleet", metavar="DIR", help=f"the fleet directory (default: ${FLEET_ENV}, else ./{DEFAULT_FLEET})"
    )
    return parent


def _sub(
    subs: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    epilog: str,
    **kw: object,
) -> argparse.ArgumentParser:
    return subs.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=epilog,
        formatter_class=_formatter,
        **kw,  # type: ignore[arg-type]
    )


def _add_init(
    subs: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = _sub(
        subs,
        "init",
        "create a fleet directory: fleet.toml, the CA, the broker certificate, an empty registry",
        "examples:\n  edge-provision init fleet\n"
        "  edge-provision init /srv/plant-3 --name plant-3 --broker-host broker.lan --ca-alg ed25519\n",
        parents=[parent],
    )
    p.add_argument("dir", nargs="?", help="the directory to create (new or empty; default: --fleet)")
    p.add_argument("--name", help="the fleet's name (default: the directory's name)")
    p.add_argument("--prefix", default="edge", help="topic prefix of PROTOCOL 1 (default: edge)")
    p.add_argument("--ca-alg", choices=CA_ALGORITHMS, default="ecdsa-p256", help="CA and TLS key algorithm")
    p.add_argument("--broker-host", default=DEFAULT_HOST, help="host name or IP clients connect to")
    p.add_argument("--tcp-port", type=int, default=1883, help="plain MQTT port (default: 1883)")
    p.add_argument("--tls-port", type=int, default=8883, help="MQTT over TLS port (default: 8883)")
    p.add_argument("--cert-days", type=int, default=DEFAULT_CERT_DAYS, help="validity of issued certificates")
    p.set_defaults(handler=_cmd_init)


def _add_add(
    subs: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    examples = {
        "agent": "  edge-provision add agent node-1\n"
        "  edge-provision add agent node-2 --pool cameras --pool gpu\n"
        "  edge-provision add agent --count 20 --prefix node-\n",
        "device": "  edge-provision add device sensor-7\n"
        "  edge-provision add device mcu-1 --alg hmac-sha256 --targets node-1,pool:cameras\n"
        "  edge-provision add device --count 1000 --prefix sensor-\n",
        "operator": "  edge-provision add operator alice\n",
        "dashboard": "  edge-provision add dashboard grafana\n",
        "gateway": "  edge-provision add gateway gw-1\n",
    }
    p = _sub(
        subs,
        "add",
        "add identities: a signing key, a TLS client certificate and a broker password each",
        "kinds: agent (signs results), device (signs tasks), operator (tasks and control),\n"
        "dashboard (reads what agents publish, signs nothing), gateway (edge-gateway, the fleet's HTTP\n"
        "API: reads like a dashboard, signs tasks and control like an operator).\n"
        "See `edge-provision add KIND --help`.\n\n"
        "examples:\n" + "".join(examples.values()),
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind in KINDS:
        k = _sub(kinds, kind, f"add {kind} identities", "examples:\n" + examples[kind], parents=[parent])
        k.add_argument(
            "name", nargs="?", help="the identity's name: [A-Za-z0-9_.:-]{1,64}, unique in the fleet"
        )
        k.add_argument("--count", type=int, help="add N identities called PREFIX0001 .. PREFIXN")
        k.add_argument("--prefix", help=f"name prefix for --count (default: {kind}-)")
        k.add_argument("--start", type=int, default=1, help="first number for --count (default: 1)")
        k.add_argument("--force", action="store_true", help="replace identities that already exist")
        if kind == "agent":
            k.add_argument(
                "--pool", action="append", default=[], help="a pool this agent serves (repeatable)"
            )
        if kind == "device":
            k.add_argument("--alg", choices=ALGORITHMS, default="ed25519", help="signing algorithm")
            k.add_argument(
                "--targets",
                action="append",
                help="node ids, 'all' or 'pool:P' it may task, comma separated (default: every agent)",
            )
        k.set_defaults(handler=_cmd_add)
    k = _sub(
        kinds,
        "api-client",
        "add an API client of edge-gateway: a name, roles and a secret (shown once, stored hashed)",
        "roles: read (tasks, nodes, metrics), submit (read + submit and cancel its own tasks),\n"
        "admin (everything). Bundle the gateways again afterwards: their api-clients.json lists them.\n\n"
        "examples:\n  edge-provision add api-client webapp --roles read,submit\n"
        "  edge-provision add api-client ops-console --roles admin --secret-file ops.secret\n",
        parents=[parent],
    )
    k.add_argument("name", help="the client's name: [A-Za-z0-9_.:-]{1,64}, unique in the fleet")
    k.add_argument("--roles", action="append", required=True, help="read, submit, admin (comma separated)")
    k.add_argument(
        "--secret-file", type=Path, help="write the secret to this new 0600 file instead of printing it"
    )
    k.add_argument("--force", action="store_true", help="replace an existing client: a new secret")
    k.set_defaults(handler=_cmd_add_api_client)


def _add_bundle(
    subs: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = _sub(
        subs,
        "bundle",
        "write everything one machine needs (config, keys, certificates, trust store)",
        "examples:\n  edge-provision bundle node-1 --out /media/usb/node-1\n"
        "  edge-provision bundle sensor-7 --archive sensor-7.tar.gz\n",
        parents=[parent],
    )
    p.add_argument("name")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="a new or empty directory (default: ./NAME-bundle)")
    where.add_argument("--archive", type=Path, help="a .tar.gz file instead of a directory")
    p.add_argument("--force", action="store_true", help="overwrite an existing bundle")
    p.set_defaults(handler=_cmd_bundle)


def _add_revoke_rotate(
    subs: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = _sub(
        subs,
        "revoke",
        "revoke an identity: every key revoked in trust stores, its broker login removed",
        "Bundles and broker files written afterwards carry the revocation: redistribute them, then\n"
        "restart Mosquitto (it reads its logins at start-up only) or `kill -HUP` edge-broker.\n\n"
        "example:\n  edge-provision revoke sensor-7 && edge-provision broker-files --out broker\n",
        parents=[parent],
    )
    p.add_argument("name")
    p.set_defaults(handler=_cmd_revoke)
    p = _sub(
        subs,
        "rotate",
        "new signing key, TLS certificate and broker password; the old key stays valid for a while",
        "examples:\n  edge-provision rotate node-1                      # old key valid 24 h more\n"
        "  edge-provision rotate sensor-7 --until 2027-01-31T00:00:00Z\n"
        "  edge-provision rotate mcu-1 --overlap 0 --alg ed25519\n",
        parents=[parent],
    )
    p.add_argument("name")
    until = p.add_mutually_exclusive_group()
    until.add_argument(
        "--overlap", help=f"how long the old key stays valid: 0, 30m, 24h, 7d (default {DEFAULT_OVERLAP})"
    )
    until.add_argument("--until", help="when the old key stops being valid: ISO 8601 with Z/offset, or epoch")
    p.add_argument("--alg", choices=ALGORITHMS, help="devices: switch the signing algorithm")
    p.set_defaults(handler=_cmd_rotate)


def _add_reading(
    subs: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = _sub(
        subs,
        "list",
        "list identities",
        "examples:\n  edge-provision list\n  edge-provision list --kind device --json\n",
        parents=[parent],
    )
    p.add_argument("--kind", choices=[*KINDS, "api-client"], help="only identities of this kind")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_list)
    p = _sub(
        subs,
        "show",
        "show one identity: keys, certificate, broker grants (no secrets)",
        "example:\n  edge-provision show node-1 --json\n",
        parents=[parent],
    )
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_show)


def _add_broker_files(
    subs: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = _sub(
        subs,
        "broker-files",
        "write the broker's logins, ACL, listener configuration and TLS files",
        "examples:\n  edge-provision broker-files --out broker && mosquitto -c broker/mosquitto.conf\n"
        "  edge-provision broker-files --format amqtt --out edge-broker\n"
        "  edge-provision broker-files --out build --install-dir /etc/mosquitto/edge --bind 0.0.0.0\n",
        parents=[parent],
    )
    p.add_argument(
        "--format", choices=(*FORMATS, "nats"), default="mosquitto", help="broker (default: mosquitto)"
    )
    p.add_argument("--out", type=Path, help="output directory (default: ./broker-FORMAT)")
    p.add_argument(
        "--bind", help="address of the TLS listeners (default: 127.0.0.1; nats: 0.0.0.0, every listener)"
    )
    p.add_argument(
        "--tcp-port", type=int, help="plain listener port, bound to 127.0.0.1 (default: fleet.toml)"
    )
    p.add_argument(
        "--tls-port", help="TLS listener port (default: fleet.toml); nats: one, or one per node (P1,P2,...)"
    )
    nats_group = p.add_argument_group("nats (a cluster: one directory per node, nats-1/ ...)")
    nats_group.add_argument("--cluster", type=int, default=3, metavar="N", help="nodes (default: 3)")
    nats_group.add_argument("--hosts", help="each node's host name or address, comma separated")
    for kind, what in (
        ("cluster", "routes between the nodes"),
        ("ws", "MQTT over WebSocket, dashboards"),
        ("client", "NATS protocol, loopback"),
        ("http", "monitoring, loopback"),
    ):
        nats_group.add_argument(
            f"--{kind}-port",
            default=str(nats.DEFAULT_PORTS[kind]),
            help=f"{what} (default: {nats.DEFAULT_PORTS[kind]}; one, or one per node)",
        )
    p.add_argument(
        "--install-dir", type=Path, help="where the files will live on the broker (default: --out)"
    )
    p.add_argument("--max-queued", type=int, default=10_000, help="queued QoS 1 messages per client")
    p.add_argument("--run-as", help="mosquitto: the user the broker runs as (default: you)")
    p.add_argument(
        "--plugin-path",
        type=Path,
        help="mosquitto: its dynamic security plugin on the broker (default: found here, else Debian's)",
    )
    p.set_defaults(handler=_cmd_broker_files)


class _Version(argparse.Action):
    """`--version`, looked up only when asked for (importlib.metadata costs ~70 ms at start)."""

    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        import importlib.metadata

        try:
            version = importlib.metadata.version("mqtt-edge-agent")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        parser.exit(message=f"{PROG} {version}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=_formatter
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument(
        "--fleet", dest="global_fleet", metavar="DIR", help="the fleet directory (or after COMMAND)"
    )
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = _fleet_parent()
    for add in (
        _add_init,
        _add_add,
        _add_bundle,
        _add_revoke_rotate,
        _add_reading,
        _add_broker_files,
        _add_server_cert,
    ):
        add(subs, parent)
    return parser


def _add_server_cert(
    subs: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = _sub(
        subs,
        "server-cert",
        "a TLS server certificate from the fleet CA (edge-gateway's HTTPS), with its key",
        "Clients verify it with the fleet's ca.crt (in every bundle). Valid for HOST, 127.0.0.1 and\n"
        "localhost, as long as the fleet's certificates (init --cert-days).\n\n"
        "example:\n  edge-provision server-cert --host gw.plant-3.example --out gw-1/https\n"
        "  EDGE_GATEWAY_HTTP_TLS_CERT=gw-1/https/server.crt \\\n"
        "    EDGE_GATEWAY_HTTP_TLS_KEY=gw-1/https/server.key edge-gateway --config gw-1/gateway.toml\n",
        parents=[parent],
    )
    p.add_argument("--host", required=True, help="the name or address clients use to reach the server")
    p.add_argument("--out", type=Path, required=True, help="directory for server.crt and server.key (0600)")
    p.add_argument("--force", action="store_true", help="replace the files there")
    p.set_defaults(handler=_cmd_server_cert)


# --- handlers -------------------------------------------------------------------------------


def _fleet_dir(args: argparse.Namespace) -> Path:
    return Path(args.fleet or args.global_fleet or os.environ.get(FLEET_ENV) or DEFAULT_FLEET)


def _fleet(args: argparse.Namespace) -> Fleet:
    return open_fleet(_fleet_dir(args))


def _cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.dir) if args.dir else _fleet_dir(args)
    name = args.name or root.absolute().name
    config = FleetConfig(
        name=name,
        prefix=args.prefix,
        broker_host=args.broker_host,
        tcp_port=args.tcp_port,
        tls_port=args.tls_port,
        ca_alg=args.ca_alg,
        cert_days=args.cert_days,
    )
    fleet = ops.init_fleet(root, config)
    print(
        f"created fleet {config.name!r} in {fleet.root} ({config.ca_alg} CA, topic prefix {config.prefix!r})"
    )
    print(f"broker: {config.broker_host} tls {config.tls_port}, tcp {config.tcp_port}")
    return 0


def _progress(out: TextIO) -> Callable[[int, int], None]:
    """An in-place `adding N/TOTAL` counter on a terminal; only the final count otherwise."""
    last = [0.0]
    live = out.isatty()

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if total > 1 and (done == total or (live and now - last[0] >= 0.2)):
            last[0] = now
            end = "\n" if done == total else ""
            print(f"\radding {done}/{total}", end=end, file=out, flush=True)

    return report


def _names(args: argparse.Namespace) -> list[str]:
    if args.count is None:
        if args.name is None:
            raise InputError("give a NAME, or --count N (with --prefix P) for many")
        if args.prefix is not None:
            raise InputError("--prefix goes with --count")
        return [args.name]
    if args.name is not None:
        raise InputError("give either a NAME or --count, not both")
    return bulk_names(args.prefix if args.prefix is not None else f"{args.kind}-", args.count, args.start)


def _cmd_add(args: argparse.Namespace) -> int:
    kind = check_kind(args.kind)
    request = ops.AddRequest(
        kind=kind,
        names=_names(args),
        alg=getattr(args, "alg", None),
        targets=getattr(args, "targets", None),
        pools=getattr(args, "pool", ()),
        force=args.force,
    )
    fleet = _fleet(args)
    result = ops.add_identities(fleet, request, time.time(), _progress(sys.stderr))
    for warning in result.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    made = result.identities
    verb = "replaced" if result.replaced else "added"
    if len(made) == 1:
        key = made[0].current_key
        roles = ",".join(key.roles) or "-"
        print(f"{verb} {kind} {made[0].name} ({key.alg} signing key {key.fingerprint}, roles {roles})")
    else:
        extra = f" ({len(result.replaced)} replaced)" if result.replaced else ""
        print(f"added {len(made)} {kind}s{extra}: {made[0].name} .. {made[-1].name}")
    return 0


def _cmd_add_api_client(args: argparse.Namespace) -> int:
    if args.secret_file is not None and args.secret_file.exists():
        raise InputError(f"{args.secret_file} exists: the secret goes to a new file")
    client, secret = ops.add_api_client(_fleet(args), args.name, args.roles, time.time(), force=args.force)
    print(f"added api-client {client.name} (roles {','.join(client.roles)})")
    if args.secret_file is not None:
        write_atomic(args.secret_file, secret + "\n", PRIVATE)
        print(f"its secret is in {args.secret_file} (0600); it is not stored anywhere else")
    else:
        print(f"secret (shown once, stored only hashed): {secret}")
    print("bundle the gateways again: their api-clients.json lists the clients")
    return 0


def _cmd_server_cert(args: argparse.Namespace) -> int:
    cert, key = ops.server_cert(_fleet(args), args.host, args.out, time.time(), force=args.force)
    print(f"wrote {cert} (for {args.host}, 127.0.0.1, localhost; signed by the fleet CA) and {key} (0600)")
    return 0


def _cmd_bundle(args: argparse.Namespace) -> int:
    path = ops.make_bundle(_fleet(args), args.name, out=args.out, archive=args.archive, force=args.force)
    print(f"wrote the bundle of {args.name} to {path}")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    fleet = _fleet(args)
    if args.name not in {i.name for i in ops.list_identities(fleet)}:
        client, done = ops.revoke_api_client(fleet, args.name, time.time())
        if not done:
            print(f"API client {client.name} was already revoked at {format_time(client.revoked_at)}")
        else:
            print(f"revoked API client {client.name}; bundle the gateways again (or HUP them after copying)")
        return 0
    identity, changed = ops.revoke(fleet, args.name, time.time())
    if not changed:
        print(f"{identity.name} was already revoked at {format_time(identity.revoked_at)}")
        return 0
    print(
        f"revoked {identity.kind} {identity.name}: {len(identity.keys)} key(s) revoked, broker login removed"
    )
    print(
        "now redistribute: `edge-provision broker-files` for the broker (then restart Mosquitto, or"
        " `kill -HUP` edge-broker), `bundle` for the agents and clients"
    )
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    now = time.time()
    until = parse_time(args.until) if args.until else now + parse_duration(args.overlap or DEFAULT_OVERLAP)
    identity = ops.rotate(_fleet(args), args.name, until, now, args.alg)
    key = identity.current_key
    print(f"rotated {identity.name} to generation {identity.gen} ({key.alg} {key.fingerprint})")
    print(f"the previous key stays valid until {format_time(until)}; bundle {identity.name} again")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    fleet = _fleet(args)
    identities = [i for i in ops.list_identities(fleet) if args.kind in (None, i.kind)]
    clients = ops.list_api_clients(fleet) if args.kind in (None, "api-client") else []
    if args.json:
        sys.stdout.write(output.to_json([i.summary() for i in identities] + [c.summary() for c in clients]))
    else:
        sys.stdout.write(output.table(identities) if identities or not clients else "")
        if clients:
            sys.stdout.write(output.api_client_table(clients))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    fleet = _fleet(args)
    data = output.details(ops.show(fleet, args.name), fleet.topics)
    sys.stdout.write(output.to_json(data) if args.json else output.details_text(data))
    return 0


def _cmd_nats_files(args: argparse.Namespace, fleet: Fleet) -> int:
    for option in ("tcp_port", "run_as", "plugin_path"):
        if getattr(args, option) is not None:
            raise InputError(f"--{option.replace('_', '-')} is not an option of --format nats")
    ports = {kind: getattr(args, f"{kind}_port") for kind in nats.PORT_KINDS}
    ports["tls"] = ports["tls"] or str(fleet.config.tls_port)
    nodes = nats.plan_nodes(args.cluster, args.hosts, fleet.config.broker_host, ports)
    options = nats.ClusterOptions(nodes, bind=args.bind or "0.0.0.0", install_dir=args.install_dir)
    out = args.out or Path("broker-nats")
    ops.nats_broker_files(fleet, options, out)
    print(f"wrote a {len(nodes)}-node NATS cluster to {out}: {', '.join(n.name + '/' for n in nodes)}")
    print(f"fleet.toml now lists {', '.join(n.endpoint for n in nodes)}: bundle every identity again")
    return 0


def _tls_port(text: str | None, fleet: Fleet) -> int:
    if text is None:
        return fleet.config.tls_port
    if not text.isdigit():
        raise InputError(f"--tls-port {text!r} is not a port number")
    return int(text)


def _cmd_broker_files(args: argparse.Namespace) -> int:
    fleet = _fleet(args)
    if args.install_dir is not None and not args.install_dir.is_absolute():
        raise InputError(f"--install-dir {args.install_dir} must be an absolute path on the broker")
    if args.format == "nats":
        return _cmd_nats_files(args, fleet)
    options = BrokerOptions(
        out=args.out or Path(f"broker-{args.format}"),
        tls_port=_tls_port(args.tls_port, fleet),
        tcp_port=args.tcp_port if args.tcp_port is not None else fleet.config.tcp_port,
        bind=args.bind or "127.0.0.1",
        install_dir=args.install_dir,
        max_queued=args.max_queued,
        run_as=args.run_as or getpass.getuser(),
        plugin_path=args.plugin_path,
    )
    written, notes = ops.broker_files(fleet, args.format, options)
    print(f"wrote {args.format} files to {options.out}: {', '.join(p.name for p in written)}")
    for note in notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except EdgeError as exc:  # ProvisioningError, and InvalidTime from agent.common.timespec
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"{PROG}: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
