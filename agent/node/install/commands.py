"""The `install` and `uninstall` commands of `edge-agent` (their parsers, and running them).

    edge-agent install --bundle node-1.tar.gz --wheel mqtt_edge_agent-0.1.0-py3-none-manylinux_2_36_x86_64.whl
    edge-agent install --wheel NEWER.whl                 # upgrade, rolled back if not online in time
    edge-agent install ... --dry-run                     # the plan; nothing changed
    edge-agent uninstall [--purge]

Exit status: 0 done, 1 a step failed (named, with what to do), 2 bad input or not root (nothing
changed), 3 an upgrade was rolled back (the previous version runs), 4 installed but the agent did
not come online in time.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TypeAlias

from .errors import InstallError, NotPermitted
from .installer import install, uninstall
from .layout import Layout
from .plan import Request
from .wheel import machine_arch

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

INSTALL_EPILOG = """\
As root on the board: a system user edge-agent; the bundle in /etc/edge-agent (keys 0600, the
user's); the state in /var/lib/edge-agent; the wheel in a venv /opt/edge-agent/<version> with a
link /opt/edge-agent/current; the systemd unit edge-agent.service installed, enabled and started;
then it waits until the agent is online (its /health: healthy, this version, its online presence
acknowledged by the broker). Run again, it changes nothing. With another version's wheel it
upgrades: the new version starts, and if it is not online within --health-timeout the previous
one is restored and started again (exit 3). --no-systemd: the installer starts and stops the
agent itself, as the unit would (deploy/README.md).

exit status: 0 done, 1 a step failed, 2 bad input or not root (nothing changed), 3 upgrade rolled
back, 4 installed but not online in time."""


def add_parsers(sub: Subparsers) -> None:
    text = "install (or upgrade) the agent as a service: user, keys, state, venv, systemd unit"
    cmd = sub.add_parser(
        "install",
        help=text,
        description=text,
        epilog=INSTALL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("--bundle", type=Path, help="the node's bundle: NODE.tar.gz or its directory")
    cmd.add_argument(
        "--wheel", type=Path, help=f"mqtt_edge_agent-VERSION-py3-none-manylinux_2_36_{machine_arch()}.whl"
    )
    cmd.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    cmd.add_argument("--no-systemd", action="store_true", help="no systemd here: run the agent directly")
    cmd.add_argument("--root", type=Path, default=Path("/"), help="install under DIR (tests, chroots)")
    cmd.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="change agent.toml (repeatable): mqtt.host=10.0.0.5",
    )
    cmd.add_argument(
        "--health-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="how long a started version may take to be online (default 120; 0: no wait)",
    )
    cmd.add_argument(
        "--python",
        type=Path,
        default=Path(sys.base_prefix) / "bin" / "python3",
        help="the venv's interpreter (default: this one's base, e.g. /usr/bin/python3)",
    )
    site = cmd.add_mutually_exclusive_group()
    site.add_argument(
        "--system-site-packages",
        dest="system_site",
        action="store_true",
        default=None,
        help="the venv sees apt's python3-numpy etc. (the default on armv7l)",
    )
    site.add_argument("--no-system-site-packages", dest="system_site", action="store_false")
    text = "stop and remove the service and the program (keys and state stay unless --purge)"
    cmd = sub.add_parser("uninstall", help=text, description=text)
    cmd.add_argument("--purge", action="store_true", help="also remove /etc/edge-agent, the state, the user")
    cmd.add_argument("--no-systemd", action="store_true", help="the agent runs without systemd")
    cmd.add_argument("--root", type=Path, default=Path("/"), help="uninstall under DIR")


def run(args: argparse.Namespace) -> int:
    layout = Layout(args.root.resolve())
    try:
        if args.command == "uninstall":
            if os.geteuid() != 0 and layout.root == Path("/"):
                raise NotPermitted("edge-agent uninstall must run as root (sudo edge-agent uninstall)")
            return uninstall(layout, systemd=not args.no_systemd, purge=args.purge, out=sys.stdout)
        system_site = machine_arch() == "armv7l" if args.system_site is None else args.system_site
        request = Request(
            layout=layout,
            bundle=args.bundle,
            wheel=args.wheel,
            systemd=not args.no_systemd,
            python=args.python,
            system_site=system_site,
            settings=tuple(args.set),
            health_timeout_s=args.health_timeout,
            dry_run=args.dry_run,
        )
        return install(request, sys.stdout)
    except InstallError as exc:
        print(f"edge-agent {args.command}: {exc.message}", file=sys.stderr)
        return exc.exit_code
