"""The systemd units (deploy/systemd/, rendered by agent/node/install/units.py): they are what the
templates give, `systemd-analyze verify` accepts them without a word, and `systemd-analyze security
--offline=yes` rates each at an exposure of 2.0 or lower (printed: `pytest -s` shows the figures).

systemd-analyze needs no running systemd for either; verify checks that ExecStart= is an
executable, so the units are rendered for a layout under tmp_path where it is one.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from agent.node.config import STOP_OVERHEAD_S, WorkersSection
from agent.node.install.layout import BROKER_UNIT, UNIT, Layout
from agent.node.install.units import agent_unit, broker_unit, default_units
from tests.support.services import require_tool

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "deploy" / "systemd"
MAX_EXPOSURE = 2.0


def exposure(unit: Path) -> float:
    analyze = require_tool("systemd-analyze", hint="apt-get install systemd")
    done = subprocess.run([analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def rendered_under(root: Path) -> dict[str, Path]:
    layout = Layout(root)
    for program in ("edge-agent", "edge-broker"):
        exe = layout.current / "bin" / program
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    units = {UNIT: agent_unit(layout, 10.0, 40.0), BROKER_UNIT: broker_unit(layout)}
    layout.unit_dir.mkdir(parents=True)
    for name, text in units.items():
        (layout.unit_dir / name).write_text(text)
    return {name: layout.unit_dir / name for name in units}


def test_the_checked_in_units_are_the_templates_rendered() -> None:
    for name, text in default_units().items():
        assert (CHECKED_IN / name).read_text() == text, (
            f"deploy/systemd/{name} differs from its template: edit agent/node/install/templates/{name}.in, "
            "then `python -m agent.node.install.units deploy/systemd`"
        )


@pytest.mark.parametrize("name", [UNIT, BROKER_UNIT])
def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path, name: str) -> None:
    analyze = require_tool("systemd-analyze", hint="apt-get install systemd")
    unit = rendered_under(tmp_path)[name]
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(unit) not in done.stdout + done.stderr, done.stdout + done.stderr  # no "Unknown key" etc.


@pytest.mark.parametrize("name", [UNIT, BROKER_UNIT])
def test_security_exposure_is_at_most_two(name: str) -> None:
    level = exposure(CHECKED_IN / name)
    print(f"\nsystemd-analyze security --offline=yes {name}: exposure {level}")
    assert level <= MAX_EXPOSURE


def test_the_stop_timeout_is_the_agents_drain_and_back_off_needs_systemd_254() -> None:
    text = (CHECKED_IN / UNIT).read_text()
    assert f"TimeoutStopSec={WorkersSection().grace_s + STOP_OVERHEAD_S:g}\n" in text
    for line in ("Type=notify", "WatchdogSec=30", "KillMode=mixed", "RestartPreventExitStatus=2",
                 "ReadWritePaths=/var/lib/edge-agent", "CapabilityBoundingSet=\n",
                 "SystemCallFilter=@system-service", "ProtectSystem=strict", "MemoryMax=75%"):  # fmt: skip
        assert line in text
    assert "\nRestartSteps=" not in text  # systemd 252 would ignore it with a warning
    newer = agent_unit(Layout(), 20.0, 50.0, systemd=255)
    assert "RestartSteps=10\nRestartMaxDelaySec=5min" in newer and "TimeoutStopSec=50\n" in newer
