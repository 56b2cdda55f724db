"""The systemd units of the agent and of the embedded broker, rendered from the templates in templates/.

    text = agent_unit(Layout(), grace_s=10.0, systemd=252)
    text = broker_unit(Layout(), systemd=252)
    python -m agent.node.install.units deploy/systemd      # the checked-in defaults (tests compare)

The templates name paths and numbers as `@NAME@`. What depends on the machine: the paths (a
`--root` prefix in tests), TimeoutStopSec= (the agent's drain, `Config.stop_timeout_s`), and the
restart back-off, which needs systemd 254 (RestartSteps=, RestartMaxDelaySec=); Debian 12 has 252,
where RestartSec= alone spaces the restarts. deploy/systemd/ holds the rendering for the default
layout and systemd 252: read it there, change it here. Pure functions.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .layout import BROKER_UNIT, UNIT, Layout

TEMPLATES = Path(__file__).resolve().parent / "templates"
BACKOFF_SYSTEMD = 254
MEMORY_MAX = "75%"  # of the board's RAM, the agent and its workers together
DEFAULT_SYSTEMD = 252  # Debian 12 (bookworm), Raspberry Pi OS bookworm
_TOKEN = re.compile(r"@[A-Z_]+@")


def _backoff(systemd: int) -> str:
    if systemd >= BACKOFF_SYSTEMD:
        return "\n".join(
            (
                "# Back-off: 5 s, growing to 5 min over 10 restarts in a row.",
                "RestartSteps=10",
                "RestartMaxDelaySec=5min",
            )
        )
    return (
        f"# systemd {systemd}: RestartSec= alone (RestartSteps=, RestartMaxDelaySec= need {BACKOFF_SYSTEMD})."
    )


def _render(template: str, values: dict[str, str]) -> str:
    text = (TEMPLATES / template).read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    left = _TOKEN.findall(text)
    if left:
        raise ValueError(f"{template}: no value for {', '.join(sorted(set(left)))}")
    return text


def _seconds(value: float) -> str:
    return f"{value:g}"


def agent_unit(layout: Layout, grace_s: float, stop_timeout_s: float, systemd: int = DEFAULT_SYSTEMD) -> str:
    return _render(
        f"{UNIT}.in",
        {
            "OPT": str(layout.opt),
            "ETC": str(layout.etc),
            "STATE": str(layout.state),
            "USER": layout.user,
            "BACKOFF": _backoff(systemd),
            "GRACE": _seconds(grace_s),
            "STOP_TIMEOUT": _seconds(stop_timeout_s),
            "MEMORY_MAX": MEMORY_MAX,
        },
    )


def broker_unit(layout: Layout, systemd: int = DEFAULT_SYSTEMD, user: str = "edge-broker") -> str:
    return _render(
        f"{BROKER_UNIT}.in",
        {
            "OPT": str(layout.opt),
            "BROKER_ETC": str(layout.broker_etc),
            "BROKER_STATE": str(layout.broker_state),
            "BROKER_USER": user,
            "BACKOFF": _backoff(systemd),
            "MEMORY_MAX": MEMORY_MAX,
        },
    )


def systemd_version(systemctl: str = "systemctl") -> int | None:
    """The local systemd's version (`systemctl --version`), None when there is none."""
    try:
        first = subprocess.run([systemctl, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    found = re.match(r"systemd (\d+)", first)
    return int(found.group(1)) if found else None


def default_units() -> dict[str, str]:
    """The units for the default layout, the default drain and Debian 12's systemd."""
    from ..config import STOP_OVERHEAD_S, WorkersSection

    grace = WorkersSection().grace_s
    return {UNIT: agent_unit(Layout(), grace, grace + STOP_OVERHEAD_S), BROKER_UNIT: broker_unit(Layout())}


if __name__ == "__main__":  # python -m agent.node.install.units DIR
    out = Path(sys.argv[1])
    for name, text in default_units().items():
        (out / name).write_text(text)
        print(out / name)
