"""Where an installation lives: every path, under a root ("/" on a board, a directory in tests).

    /etc/edge-agent/                 0750 root:edge-agent  the bundle: agent.toml, keys (0600, the user's)
    /var/lib/edge-agent/             0700 edge-agent       the state (data_dir), agent.log without systemd
    /opt/edge-agent/<version>/       a venv with that version of the wheel; .wheel: its sha256
    /opt/edge-agent/current          -> <version>, what the unit runs
    /etc/systemd/system/edge-agent.service
    /etc/edge-broker/, /var/lib/edge-broker/, edge-broker.service   a gateway box's broker (by hand)

Pure values: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

USER = "edge-agent"
UNIT = "edge-agent.service"
BROKER_USER = "edge-broker"
BROKER_UNIT = "edge-broker.service"


@dataclass(frozen=True)
class Layout:
    root: Path = Path("/")
    user: str = USER

    def under(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def etc(self) -> Path:
        return self.under("/etc/edge-agent")

    @property
    def config(self) -> Path:
        return self.etc / "agent.toml"

    @property
    def state(self) -> Path:
        return self.under("/var/lib/edge-agent")

    @property
    def opt(self) -> Path:
        return self.under("/opt/edge-agent")

    @property
    def current(self) -> Path:
        return self.opt / "current"

    def venv(self, version: str) -> Path:
        return self.opt / version

    @property
    def unit_dir(self) -> Path:
        return self.under("/etc/systemd/system")

    @property
    def unit(self) -> Path:
        return self.unit_dir / UNIT

    @property
    def broker_etc(self) -> Path:
        """A gateway box's embedded broker: `edge-provision broker-files --format amqtt` output."""
        return self.under("/etc/edge-broker")

    @property
    def broker_state(self) -> Path:
        return self.under("/var/lib/edge-broker")

    @property
    def log(self) -> Path:
        """The agent's output when no systemd journal takes it (--no-systemd)."""
        return self.state / "agent.log"

    @property
    def passwd(self) -> Path:
        return self.under("/etc/passwd")

    def command(self) -> list[str]:
        """The agent's command line, as the unit's ExecStart runs it."""
        return [str(self.current / "bin" / "edge-agent"), "run", "--config", str(self.config)]

    def installed_version(self) -> str | None:
        """The version `current` points at, None when nothing is installed."""
        try:
            return self.current.readlink().name
        except OSError:
            return None
