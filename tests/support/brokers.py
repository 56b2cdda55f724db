"""Real brokers for tests: the embedded broker and Mosquitto, behind one handle.

`broker_under_test(kind, workdir, users, acl)` starts either broker with the same users and
ACL on free ports and yields a `RunningBroker` whose `restart()` stops it and starts it again on
the same ports over the same data directory. The agent's tests reuse it. Mosquitto gets them as
provisioning writes them for users (provisioning/dynsec.py): `dynamic-security.json` for its
dynamic security plugin, no password_file or acl_file, so it refuses a subscription outside the
ACL (SUBACK 0x80) as the embedded broker does.

`embedded(settings)` is the short form for tests that only need the embedded broker.
"""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker import BrokerThread, EmbeddedBroker, hash_password, settings_from
from provisioning import dynsec
from provisioning.acl import Grant
from tests.support.services import free_port, run_mosquitto

KINDS = ("embedded", "mosquitto")


@dataclass
class RunningBroker:
    kind: str
    port: int
    data_dir: Path
    _restart: Callable[[], None] = field(repr=False)
    tls_port: int | None = None
    embedded: BrokerThread | None = None

    def restart(self) -> None:
        self._restart()


@contextlib.contextmanager
def embedded(settings: Mapping[str, Any]) -> Iterator[BrokerThread]:
    """The embedded broker in a thread, from TOML-shaped settings (dotted keys allowed)."""
    thread = EmbeddedBroker(settings_from(settings)).start_in_thread()
    try:
        yield thread
    finally:
        thread.stop()


def write_credentials(workdir: Path, users: Mapping[str, str], acl: Mapping[str, Any]) -> tuple[Path, Path]:
    """`passwd` ($7$ hashes) and `acl.toml` for the embedded broker, as provisioning writes them."""
    from agent.common import tomlio

    passwd = workdir / "passwd"
    passwd.write_text("".join(f"{user}:{hash_password(pw)}\n" for user, pw in users.items()))
    acl_path = workdir / "acl.toml"
    acl_path.write_text(tomlio.dumps(dict(acl)))
    return passwd, acl_path


def mosquitto_logins(users: Mapping[str, str], acl: Mapping[str, Any]) -> list[dynsec.Login]:
    """The same users and ACL as logins of `dynamic-security.json`: `publish` filters are write
    grants, `subscribe` filters read grants (a `$share/G/...` one is the group's grant)."""
    if acl.get("anonymous"):
        raise ValueError("dynamic-security.json as provisioning writes it admits no anonymous client")
    rules = acl.get("users", {})
    made = []
    for user, password in users.items():
        mine = rules.get(user, {})
        grants = [Grant("read", t) for t in mine.get("subscribe", [])]
        grants += [Grant("write", t) for t in mine.get("publish", [])]
        made.append(dynsec.Login(user, hash_password(password), tuple(grants)))
    return made


def mosquitto_conf(workdir: Path, port: int, *, max_queued: int = 1000, extra: str = "") -> str:
    """Logins and ACL from workdir/dynamic-security.json (`mosquitto_logins`), through the plugin
    as provisioning's mosquitto.conf loads it."""
    plugin = dynsec.find_plugin() or dynsec.DEBIAN_PLUGIN
    return f"""\
user {getpass.getuser()}
per_listener_settings false
allow_anonymous false
{dynsec.conf_lines(plugin, workdir / dynsec.CONFIG_FILE)}
set_tcp_nodelay true
persistence true
persistence_location {workdir}/data/
max_queued_messages {max_queued}
max_inflight_messages 20
{extra}
listener {port} 127.0.0.1
"""


@contextlib.contextmanager
def broker_under_test(
    kind: str,
    workdir: Path,
    users: Mapping[str, str],
    acl: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
) -> Iterator[RunningBroker]:
    """Either broker, same users and ACL, persistence on, restartable; see the module docstring."""
    passwd, acl_path = write_credentials(workdir, users, acl)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    port = free_port()
    with contextlib.ExitStack() as stack:
        if kind == "embedded":
            doc = {
                "listeners.tcp.port": port,
                "auth.password_file": str(passwd),
                "auth.acl_file": str(acl_path),
                "persistence.data_dir": str(data_dir),
                **(settings or {}),
            }
            state: dict[str, Any] = {}

            def start() -> BrokerThread:
                state["thread"] = stack.enter_context(embedded(doc))
                return state["thread"]

            def restart_embedded() -> None:
                state["thread"].stop()
                running.embedded = start()

            running = RunningBroker(kind, port, data_dir, restart_embedded, embedded=start())
        elif kind == "mosquitto":
            (workdir / dynsec.CONFIG_FILE).write_text(dynsec.document_text(mosquitto_logins(users, acl)))
            conf = mosquitto_conf(workdir, port)
            procs: list[contextlib.AbstractContextManager[Any]] = []

            def start_mosquitto() -> None:
                manager = run_mosquitto(conf, workdir, [port])
                manager.__enter__()
                procs.append(manager)

            def restart_mosquitto() -> None:
                procs.pop().__exit__(None, None, None)
                start_mosquitto()

            stack.callback(lambda: [p.__exit__(None, None, None) for p in procs])
            start_mosquitto()
            running = RunningBroker(kind, port, data_dir, restart_mosquitto)
        else:
            raise ValueError(f"unknown broker kind {kind!r}")
        yield running
