"""What an install would change, checked before anything is: the inputs read and validated, the
configuration the agent will run with, and the steps, each either to do or already so.

    prepared = prepare(request)          # InputError / NotPermitted: nothing was changed
    for step in prepared.steps: ...      # Step.action None: already so (a second run does nothing)

The agent.toml installed is the bundle's with `[agent] data_dir` set to the state directory and
the `--set KEY=VALUE` changes applied (a value is read as TOML when it parses, else as a string:
`mqtt.port=8883`, `mqtt.host=10.0.0.5`); it is loaded with the agent's own loader beside the
bundle's files before anything is written, so a wrong key or value is refused by name.
Pure planning on the installer's one thread; the actions run later, in order (installer.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...common import tomlio
from ...common.errors import ConfigError
from ..config import Config, load_config
from ..keys import load_agent_signer, load_trust
from .bundle import PRIVATE_FILES, AgentBundle, BundleFile
from .errors import InputError, NotPermitted
from .layout import Layout
from .system import Users
from .wheel import AgentWheel, machine_arch

CONFIG_MODE = 0o640  # root:<group>: the agent reads its configuration and cannot change it
KEY_MODE = 0o600  # the service user's: only the agent reads its keys
#: Keys the installation decides: the unit lets the agent write its state directory only.
FIXED = {
    ("agent", "data_dir"): "the state directory, the one place the service may write",
    ("agent", "node"): "the bundle's, whose keys are installed",
}
HEADER = "# Installed by `edge-agent install` from the bundle of {node}; data_dir is the state directory.\n"


@dataclass(frozen=True)
class Request:
    layout: Layout
    bundle: Path | None
    wheel: Path | None
    systemd: bool
    python: Path
    system_site: bool
    settings: tuple[str, ...] = ()
    health_timeout_s: float = 120.0
    dry_run: bool = False


@dataclass
class Step:
    title: str
    action: Callable[[], None] | None  # None: already so
    remedy: str = ""


@dataclass
class Prepared:
    request: Request
    as_root: bool
    node: str
    version: str
    installed: str | None  # the version `current` points at before this run
    wheel: AgentWheel | None
    files: list[BundleFile]  # what /etc/edge-agent must hold (agent.toml as installed)
    config: Config  # as the agent will load it (paths in a scratch directory)
    steps: list[Step] = field(default_factory=list)

    @property
    def upgrade(self) -> bool:
        return self.installed is not None and self.installed != self.version

    def health_url(self) -> str | None:
        metrics = self.config.metrics
        if not metrics.enabled or metrics.port == 0:
            return None
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(metrics.host, metrics.host)
        return (
            f"http://[{host}]:{metrics.port}/health"
            if ":" in host
            else f"http://{host}:{metrics.port}/health"
        )


def parse_setting(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value as TOML, else the string)."""
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or len(path) != 2 or not all(path):
        raise InputError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. mqtt.host=10.0.0.5")
    try:
        value = tomlio.loads(f"v = {raw}")["v"]
    except ValueError:
        value = raw
    return path, value


def agent_document(bundle: AgentBundle, layout: Layout, settings: tuple[str, ...]) -> str:
    doc = {
        name: dict(section) if isinstance(section, dict) else section
        for name, section in bundle.config.items()
    }
    doc.setdefault("agent", {})["data_dir"] = str(layout.state)
    for text in settings:
        (section, key), value = parse_setting(text)
        if (section, key) in FIXED:
            raise InputError(f"--set {text!r}: {section}.{key} is the installer's ({FIXED[section, key]})")
        table = doc.setdefault(section, {})
        if not isinstance(table, dict):
            raise InputError(f"--set {text!r}: {section} is not a section of agent.toml")
        table[key] = value
    return HEADER.format(node=bundle.node) + tomlio.dumps(doc)


def installed_files(bundle: AgentBundle, agent_toml: str) -> list[BundleFile]:
    files = [BundleFile("agent.toml", agent_toml.encode(), CONFIG_MODE)]
    for name, f in sorted(bundle.files.items()):
        if name != "agent.toml":
            files.append(BundleFile(name, f.data, KEY_MODE if name in PRIVATE_FILES else CONFIG_MODE))
    return files


def validate(files: list[BundleFile]) -> Config:
    """Load agent.toml beside its files as the agent would; InputError names the key."""
    with tempfile.TemporaryDirectory(prefix="edge-install-") as scratch:
        for f in files:
            (Path(scratch) / f.name).write_bytes(f.data)
        try:
            config = load_config(Path(scratch) / "agent.toml", environ={})
            load_agent_signer(config)
            load_trust(config)
        except ConfigError as exc:
            raise InputError(
                f"the agent's configuration would be wrong: {exc} (fix the bundle or --set)"
            ) from None
    return config


def _inputs(request: Request, installed: str | None) -> tuple[AgentWheel | None, AgentBundle]:
    layout = request.layout
    wheel = AgentWheel.inspect(request.wheel, machine_arch()) if request.wheel is not None else None
    if wheel is None and installed is None:
        raise InputError(
            f"--wheel is needed for a first install: mqtt_edge_agent-*-{machine_arch()}.whl of `make dist`"
        )
    if request.bundle is not None:
        bundle = AgentBundle.read(request.bundle)
        _same_node(layout, bundle)
        return wheel, bundle
    if not layout.config.is_file():
        raise InputError(
            "--bundle is needed for a first install: `edge-provision bundle NODE --archive NODE.tar.gz`"
        )
    return wheel, AgentBundle.read(layout.etc)  # what is installed, changed by --set only


def _same_node(layout: Layout, bundle: AgentBundle) -> None:
    """A board keeps one node's state: another node's bundle would run on top of it."""
    if not layout.config.is_file():
        return
    try:
        node = tomlio.loads(layout.config.read_text()).get("agent", {}).get("node")
    except (OSError, ValueError):
        return  # unreadable: the bundle replaces it
    if node is not None and node != bundle.node:
        raise InputError(
            f"this machine runs node {node!r}, the bundle is {bundle.node!r}'s: its state would be taken "
            "over; `edge-agent uninstall --purge` first if this board is to become another node"
        )


def check_permission(request: Request, as_root: bool) -> None:
    layout = request.layout
    if not as_root and layout.root == Path("/") and not request.dry_run:
        raise NotPermitted(
            "edge-agent install must run as root (sudo edge-agent install ...), or with --root DIR"
        )
    if request.systemd and layout.root == Path("/") and not Path("/run/systemd/system").is_dir():
        raise InputError(
            "systemd is not running here (no /run/systemd/system): use --no-systemd, and the installer "
            "runs the agent itself as the unit would"
        )


def prepare(request: Request) -> Prepared:
    as_root = os.geteuid() == 0
    check_permission(request, as_root)
    Users(request.layout, as_root=as_root).check()
    installed = request.layout.installed_version()
    wheel, bundle = _inputs(request, installed)
    files = installed_files(bundle, agent_document(bundle, request.layout, request.settings))
    config = validate(files)
    version = wheel.version if wheel is not None else installed
    assert version is not None
    return Prepared(request, as_root, bundle.node, version, installed, wheel, files, config)
