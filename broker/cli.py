"""`edge-broker`: the embedded MQTT broker as a program (also `python -m broker`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.common import journal
from agent.common.errors import EdgeError
from agent.common.sdnotify import ServiceNotifier
from agent.protocol.topics import Topics

from .config import BrokerSettings, load_settings
from .embedded import EmbeddedBroker
from .errors import BrokerError, ConfigError
from .logs import configure
from .store import LAYOUT

log = logging.getLogger("broker.cli")

DESCRIPTION = """\
The fleet's embedded MQTT 3.1.1 broker (amqtt, hardened): provisioning's passwords, client
certificates and ACL; persistent sessions and retained messages that survive a restart;
QoS 1/2 redelivery; TCP, TLS (mutual TLS against the fleet CA) and WebSocket listeners.
"""

EPILOG = """\
configuration, later layers win:
  defaults < FLEET_FILES/broker.toml < --config FILE < EDGE_BROKER_* variables < flags
  every key has a variable named after its path: listeners.tcp.port is
  EDGE_BROKER_LISTENERS_TCP_PORT, persistence.data_dir is EDGE_BROKER_PERSISTENCE_DATA_DIR.
  broker/README.md lists every key.

typical use:
  edge-provision --fleet ./fleet broker-files --format amqtt --out ./broker-files
  edge-broker --fleet-files ./broker-files --data-dir ./broker-data

signals:
  SIGTERM, SIGINT  stop cleanly (the store is flushed and snapshotted), exit 0
  SIGHUP           re-read the password and ACL files; clients whose identity is gone are
                   disconnected; on an error the old files stay in force

damaged state:
  The broker refuses to start when its journal is damaged in a way a crash cannot leave (a bad
  frame with data after it), rather than drop what follows unseen. --check-store lists the
  files of the data directory and where the damage is (exit 0: none, 1: damage); with --cut
  (the broker stopped) each damaged file is saved as <name>.damaged-<time> and cut at its
  last good frame, giving up the records after it. A torn tail (a frame cut short at the very
  end) is a crash's: the next start cuts it by itself.
  edge-broker --check-store --data-dir ./broker-data [--cut]

exit status: 0 stopped cleanly, 1 could not run (port in use, data directory), 2 bad configuration
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="edge-broker",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--fleet-files", metavar="DIR", help="directory from `edge-provision broker-files --format amqtt`"
    )
    parser.add_argument("--bind", metavar="HOST:PORT", help="plain MQTT listener (default 127.0.0.1:1883)")
    parser.add_argument("--tls-bind", metavar="HOST:PORT", help="enable the TLS listener here")
    parser.add_argument("--ws-bind", metavar="HOST:PORT", help="enable the WebSocket listener here")
    parser.add_argument("--no-tcp", action="store_true", help="turn the plain MQTT listener off")
    parser.add_argument("--data-dir", metavar="DIR", help="keep sessions, queues and retained messages here")
    parser.add_argument("--allow-anonymous", action="store_true", help="let clients without a username in")
    parser.add_argument("--log-format", choices=("text", "json"), help="log lines as text (default) or JSON")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default: info")
    parser.add_argument("--check", action="store_true", help="validate the configuration, print it, exit")
    parser.add_argument(
        "--check-store", action="store_true", help="report damage in the data directory's files, then exit"
    )
    parser.add_argument(
        "--cut", action="store_true", help="with --check-store: cut damaged files (see below)"
    )
    return parser.parse_args(argv)


def _bind(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(flag, f"{value!r} is not HOST:PORT")
    return host, int(port)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags as dotted settings keys."""
    out: dict[str, Any] = {}
    if args.fleet_files:
        out["fleet_files"] = args.fleet_files
    for flag, name in (("bind", "tcp"), ("tls_bind", "tls"), ("ws_bind", "ws")):
        value = getattr(args, flag)
        if value:
            host, port = _bind(value, "--" + flag.replace("_", "-"))
            out.update({f"listeners.{name}.host": host, f"listeners.{name}.port": port})
            out[f"listeners.{name}.enabled"] = True
    if args.no_tcp:
        out["listeners.tcp.enabled"] = False
    if args.data_dir:
        out["persistence.data_dir"] = args.data_dir
    if args.allow_anonymous:
        out["auth.allow_anonymous"] = True
    if args.log_format:
        out["log.format"] = args.log_format
    if args.log_level:
        out["log.level"] = args.log_level
    return out


def describe(settings: BrokerSettings) -> str:
    """A human summary of the effective configuration (for --check and the start-up log)."""
    lines = []
    for name in ("tcp", "tls", "ws"):
        listener = getattr(settings.listeners, name)
        if listener.enabled:
            extra = " TLS" if listener.tls else ""
            extra += " client-certificate-required" if listener.tls and listener.require_certificate else ""
            lines.append(f"listener {name}: {listener.host}:{listener.port}{extra}")
    auth = settings.auth
    lines.append(f"passwords: {auth.password_file or '-'}; acl: {auth.acl_file or '- (everything allowed)'}")
    lines.append(f"anonymous: {'allowed' if auth.allow_anonymous else 'refused'}")
    data_dir = settings.persistence.data_dir
    lines.append(f"persistence: {data_dir if data_dir else 'off (in memory only)'}")
    limits = settings.limits
    lines.append(
        f"limits: queue {limits.max_queued_messages} messages / {limits.max_queued_bytes} bytes, "
        f"in flight {limits.max_inflight_messages}, packet {limits.max_packet_size} bytes, "
        f"retained {limits.max_retained_messages} / {limits.max_retained_bytes} bytes, "
        f"connections {limits.max_connections}, sessions expire after {limits.session_expiry_s} s "
        f"(agents' {limits.agent_session_expiry_s} s; 0: never)"
    )
    prefix = settings.protocol.prefix
    lines.append(f"never retained: {', '.join(Topics(prefix).never_retained()) if prefix else '-'}")
    return "\n".join(lines)


async def serve(settings: BrokerSettings, service: ServiceNotifier | None = None) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP reloads credentials. The handlers are installed
    before the listeners open, so an early signal is never fatal. `service` tells systemd
    (agent/common/sdnotify.py): READY=1 once listening, the watchdog, STOPPING=1."""
    service = ServiceNotifier.from_environ() if service is None else service
    broker = EmbeddedBroker(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, broker)
    try:
        await broker.start()
        log.info("ready: %s", "; ".join(describe(settings).splitlines()))
        reporter = asyncio.create_task(_report(broker, settings.log.stats_interval_s))
        watchdog = asyncio.create_task(_notify(service))
        await stop.wait()
        reporter.cancel()
        watchdog.cancel()
        log.info("stopping")
        service.stopping()
        await broker.stop()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    log.info("stopped")
    return 0


async def _notify(service: ServiceNotifier) -> None:
    """READY=1 now (the listeners are open), then the watchdog from the event loop: a loop that
    stops turning is a broker that no longer serves anyone."""
    while True:
        service.tick(online=True, status="listening")
        await asyncio.sleep(service.tick_s)


async def _report(broker: EmbeddedBroker, interval: float) -> None:
    """Every `log.stats_interval_s`: one line of counters (JSON logs carry them as fields)."""
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        stats = broker.stats()
        log.info("stats: %s", ", ".join(f"{k} {v}" for k, v in stats.items()), extra=stats)


def _reload(broker: EmbeddedBroker) -> None:
    if not broker.running:
        log.warning("SIGHUP before the broker was ready: nothing to reload yet")
        return
    try:
        dropped = broker.reload()
    except BrokerError as exc:
        log.error("reload failed, the previous credentials stay in force: %s", exc.message)
        return
    log.info("credentials reloaded; %d client(s) disconnected", dropped)


def check_store(args: argparse.Namespace) -> int:
    """--check-store [--cut]: the journal engine's report on the data directory."""
    data_dir = args.data_dir or load_settings(args.config, overrides=overrides(args)).persistence.data_dir
    if not data_dir or not Path(data_dir).is_dir():
        print(
            f"edge-broker: no data directory to check ({data_dir or 'persistence.data_dir unset'})",
            file=sys.stderr,
        )
        return 2
    directory = Path(data_dir)
    reports = journal.check(directory, LAYOUT)
    print(journal.describe(reports))
    if not journal.damaged(reports):
        print("no damage: the broker can start")
        return 0
    if not args.cut:
        print(
            f"damage found: `edge-broker --check-store --data-dir {directory} --cut` keeps what precedes it"
        )
        return 1
    for line in journal.cut_damage(directory, LAYOUT, reports):
        print(line)
    return 1 if journal.damaged(journal.check(directory, LAYOUT)) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check_store:
        try:
            return check_store(args)
        except EdgeError as exc:
            print(f"edge-broker: error: {exc}", file=sys.stderr)
            return exc.exit_code
    try:
        settings = load_settings(args.config, overrides=overrides(args))
    except EdgeError as exc:
        print(f"edge-broker: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    if args.check:
        print(describe(settings))
        return 0
    configure(settings.log)
    if settings.persistence.data_dir is None:
        log.warning("persistence is off: queued and retained messages are lost at exit (set --data-dir)")
    try:
        return asyncio.run(serve(settings))
    except EdgeError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
