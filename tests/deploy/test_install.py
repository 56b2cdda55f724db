"""`edge-agent install` / `uninstall` on this host, under `--root` in a scratch directory and with
`--no-systemd`: real wheels from deploy/dist.py, real venvs (pip, the index as configured), a
real broker, and the installed agent run as its own user from its own venv.

The board tests (tests/boards, helper 20b) do the same inside emulated aarch64/armhf Debian roots.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.node.install.errors import NotPermitted
from agent.node.install.health import read_health
from agent.node.install.layout import Layout
from agent.node.install.plan import Request, check_permission
from agent.node.install.service import lock_holder
from agent.protocol import Heartbeat, Presence, Result
from tests.agent.conftest import Site
from tests.support.fleet import edge_provision
from tests.support.mqtt import TestClient
from tests.support.services import free_port, require_tool

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
pytestmark = pytest.mark.timeout(900)


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """x86_64 wheels of 0.1.0, 0.1.0+b2, and 0.1.0+b3 whose agent exits at start (cannot come up)."""
    require_tool("g++")
    work = tmp_path_factory.mktemp("wheels")
    out = work / "dist"
    for suffix in (None, "b2", "b3"):
        args = [sys.executable, ROOT / "deploy" / "dist.py", "--targets", "x86_64", "--no-selftest"]
        args += ["--out", out, "--work", work / "build", *(["--version-suffix", suffix] if suffix else [])]
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    found = {w.name.split("-")[1]: w for w in out.glob("*.whl")}
    broken = found["0.1.0+b3"]
    patch_wheel(
        broken, "agent/node/app.py", "\n\ndef run_agent(config, service=None):\n    raise SystemExit(7)\n"
    )
    return found


def patch_wheel(wheel: Path, member: str, appended: str) -> None:
    """Append code to one module of a wheel (pip does not check RECORD's hashes)."""
    with zipfile.ZipFile(wheel) as z:
        items = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in items:
            z.writestr(info, data + appended.encode() if info.filename == member else data)


@pytest.fixture
def root() -> Iterator[Path]:
    """A system root the service user can traverse (pytest's tmp_path is 0700), with the files
    useradd needs; removed afterwards."""
    require_tool("useradd", hint="apt-get install passwd")
    path = Path(tempfile.mkdtemp(prefix="edge-root-", dir="/tmp"))
    path.chmod(0o755)
    (path / "etc").mkdir(mode=0o755)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (path / "etc" / name).write_text(
            "root:x:0:0:root:/root:/bin/sh\n" if name == "passwd" else "root:x:0:\n"
        )
    try:
        yield path
    finally:
        holder = lock_holder(Layout(path).state / "state" / "LOCK")
        if holder is not None:
            os.kill(holder, 9)
        shutil.rmtree(path, ignore_errors=True)


def edge_agent(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`edge-agent ...` as a separate process (an installer does not outlive its agent)."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def archive(site: Site, node: str = "node-1") -> Path:
    out = site.tmp / f"{node}.tar.gz"
    if not out.exists():
        edge_provision("--fleet", site.fleet.root, "bundle", node, "--archive", out)
    return out


def settings(site: Site, metrics_port: int, **extra: Any) -> list[str]:
    values = {
        "mqtt.port": site.broker.tls_port,
        "mqtt.protocol": '"3.1.1"',
        "mqtt.reconnect_min_s": 0.2,
        "mqtt.reconnect_max_s": 1,
        "workers.count": 1,
        "metrics.port": metrics_port,
        **extra,
    }
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def install(root: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return edge_agent("install", "--root", root, "--no-systemd", "--python", PYTHON, *args)


# --- bad input: refused by name, nothing changed ------------------------------------------------------------


def snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"") for p in sorted(path.rglob("*"))
    }


def test_bad_inputs_are_refused_by_name_and_nothing_changes(
    site: Site, root: Path, wheels: dict[str, Path]
) -> None:
    good = archive(site)
    wheel = wheels["0.1.0"]
    junk = site.tmp / "junk.tar.gz"
    junk.write_bytes(os.urandom(500))
    cut = site.tmp / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[:100])
    edge_provision(
        "--fleet", site.fleet.root, "bundle", "sensor-1", "--archive", site.tmp / "sensor-1.tar.gz"
    )
    incomplete = site.tmp / "incomplete.tar.gz"
    with tarfile.open(good) as src, tarfile.open(incomplete, "w:gz") as dst:
        for member in src:
            if not member.name.endswith("signing.key"):
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    evil = site.tmp / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as dst:
        info = tarfile.TarInfo("../../etc/cron.d/x")
        info.size = 3
        dst.addfile(info, io.BytesIO(b"bad"))
    arm = site.tmp / "mqtt_edge_agent-0.1.0-py3-none-manylinux_2_36_aarch64.whl"
    arm.write_bytes(b"not checked: the name says aarch64")
    damaged = site.tmp / wheel.name
    damaged.write_bytes(wheel.read_bytes()[: len(wheel.read_bytes()) // 2])
    before = snapshot(root)
    cases = [
        (["--bundle", site.tmp / "nope.tar.gz", "--wheel", wheel], "no such file or directory"),
        (["--bundle", junk, "--wheel", wheel], "is not a readable .tar.gz"),
        (["--bundle", cut, "--wheel", wheel], "is not a readable .tar.gz"),
        (
            ["--bundle", site.tmp / "sensor-1.tar.gz", "--wheel", wheel],
            "is a device's bundle, not an agent's",
        ),
        (["--bundle", incomplete, "--wheel", wheel], "lacks signing.key"),
        (["--bundle", evil, "--wheel", wheel], "lies outside the bundle: refused"),
        (["--bundle", good, "--wheel", arm], "is built for manylinux_2_36_aarch64, this machine is x86_64"),
        (["--bundle", good, "--wheel", damaged], "is damaged or not a wheel"),
        (["--bundle", good, "--wheel", site.tmp / "agent.whl"], "not a wheel of mqtt_edge_agent"),
        (["--bundle", good], "--wheel is needed for a first install"),
        (["--wheel", wheel], "--bundle is needed for a first install"),
        (["--bundle", good, "--wheel", wheel, "--set", "mqtt.prot=3"], "mqtt.prot"),
        (["--bundle", good, "--wheel", wheel, "--set", "mqtt.port=99999"], "mqtt.port"),
        (["--bundle", good, "--wheel", wheel, "--set", "nonsense"], "expected SECTION.KEY=VALUE"),
        (
            ["--bundle", good, "--wheel", wheel, "--set", "agent.data_dir=/srv"],
            "agent.data_dir is the installer's",
        ),
    ]
    for args, message in cases:
        done = install(root, *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("edge-agent install: ") and "Traceback" not in done.stderr
    bare = Path(tempfile.mkdtemp(dir=site.tmp))
    done = install(bare, "--bundle", good, "--wheel", wheel)
    assert done.returncode == 2 and "has no etc/passwd" in done.stderr
    done = edge_agent("install", "--root", "/", "--dry-run", "--bundle", good, "--wheel", wheel)  # systemd
    assert (
        done.returncode == 2
        and "systemd is not running here" in done.stderr
        and "--no-systemd" in done.stderr
    )
    assert snapshot(root) == before and not any(bare.iterdir())


def test_not_root_without_root_is_refused() -> None:
    request = Request(Layout(), None, None, systemd=False, python=Path(PYTHON), system_site=False)
    with pytest.raises(NotPermitted, match="must run as root"):
        check_permission(request, as_root=False)
    check_permission(Request(Layout(Path("/tmp/x")), None, None, False, Path(PYTHON), False), as_root=False)


# --- the whole life: install, again, not online, upgrade, rollback, uninstall ------------------------------


def online(site: Site, url: str, version: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = read_health(url)
        if status == 200 and body.get("version") == version and body.get("presence", {}).get("online"):
            return body
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.2)


def presence_and_heartbeat(site: Site) -> tuple[Presence, Heartbeat]:
    """What a dashboard sees of node-1: its retained presence, its next heartbeat, verified."""
    watcher = site.watch("edge/presence/node-1", "edge/heartbeat/node-1")
    try:
        presence = heartbeat = None
        while presence is None or heartbeat is None:
            message = site.open(watcher.expect(1, 30)[0])
            if isinstance(message, Presence):
                presence = message
            elif isinstance(message, Heartbeat):
                heartbeat = message
        return presence, heartbeat
    finally:
        watcher.close()


def run_task(site: Site, **options: Any) -> Result:
    device, watcher = site.client("sensor-1"), site.watch("edge/results/node-1/+")
    try:
        task = site.submit(device, "sensor-1", "stats", {"signal": [1.0, 2.0, 3.0, 4.0]}, **options)
        [result] = site.results(watcher, 1, timeout=60)
        assert result.id == task.id
        return result
    finally:
        device.close()
        watcher.close()


def test_install_again_upgrade_rollback_uninstall(site: Site, root: Path, wheels: dict[str, Path]) -> None:
    layout = Layout(root)
    port = free_port()
    url = f"http://127.0.0.1:{port}/health"
    bundle = archive(site)
    args = ["--bundle", bundle, *settings(site, port)]

    dry = install(root, *args, "--wheel", wheels["0.1.0"], "--dry-run")
    assert (
        dry.returncode == 0
        and "+ system user edge-agent" in dry.stdout
        and "nothing was changed" in dry.stdout
    )
    assert not (root / "opt").exists()

    first = install(root, *args, "--wheel", wheels["0.1.0"])
    assert first.returncode == 0, first.stdout + first.stderr
    assert "done: version 0.1.0 started and online" in first.stdout, first.stdout
    online(site, url, "0.1.0")
    uid = next(
        int(line.split(":")[2])
        for line in (root / "etc/passwd").read_text().splitlines()
        if line.startswith("edge-agent:")
    )
    expected = [("signing.key", 0o600, uid), ("tls.key", 0o600, uid), ("broker.password", 0o600, uid)]
    for name, mode, owner in [*expected, ("agent.toml", 0o640, 0), ("trust.toml", 0o640, 0)]:
        st = (layout.etc / name).stat()
        assert (st.st_mode & 0o777, st.st_uid) == (mode, owner), name
    assert (layout.etc.stat().st_mode & 0o777, layout.state.stat().st_mode & 0o777) == (0o750, 0o700)
    assert layout.state.stat().st_uid == uid and layout.current.readlink() == Path("0.1.0")
    pid = lock_holder(layout.state / "state" / "LOCK")
    assert pid is not None and os.stat(f"/proc/{pid}").st_uid == uid  # runs as the service user
    presence, heartbeat = presence_and_heartbeat(site)
    assert (presence.state, presence.version, heartbeat.backend) == ("online", "0.1.0", "native")
    assert run_task(site).status == "completed"
    assert '"level": "info"' in layout.log.read_text()  # JSON lines, as the journal would get them

    other = install(root, "--bundle", archive(site, "node-2"), *settings(site, port))
    assert other.returncode == 2 and "this machine runs node 'node-1', the bundle is 'node-2'" in other.stderr

    again = install(root, *args, "--wheel", wheels["0.1.0"])
    assert again.returncode == 0 and "+ " not in again.stdout.replace("  + then", ""), again.stdout
    assert "nothing restarted" in again.stdout and lock_holder(layout.state / "state" / "LOCK") == pid

    # a change the agent cannot live with: installed, restarted, not online in time (exit 4) ...
    away = install(root, *settings(site, port, **{"mqtt.port": free_port()}), "--health-timeout", "4")
    assert away.returncode == 4 and "installed but not online after 4 s" in away.stderr, (
        away.stdout + away.stderr
    )
    # ... and put right by the next run
    back = install(root, *args)
    assert back.returncode == 0 and "started and online" in back.stdout, back.stdout + back.stderr

    later = run_task_later(site)
    upgrade = install(root, *args, "--wheel", wheels["0.1.0+b2"])
    assert upgrade.returncode == 0 and "upgraded 0.1.0 -> 0.1.0+b2: online" in upgrade.stdout, upgrade.stdout
    assert presence_and_heartbeat(site)[0].version == "0.1.0+b2"

    rollback = install(root, *args, "--wheel", wheels["0.1.0+b3"], "--health-timeout", "60")
    assert rollback.returncode == 3, rollback.stdout + rollback.stderr
    assert (
        "version 0.1.0+b3 did not come online" in rollback.stderr
        and "exited with status 7" in rollback.stderr
    )
    assert "rolled back to 0.1.0+b2" in rollback.stderr and "online again" in rollback.stderr
    assert layout.current.readlink() == Path("0.1.0+b2")
    online(site, url, "0.1.0+b2")
    assert later_result(site, later).status == "completed"  # the state came through both
    assert sorted(p.name for p in layout.opt.iterdir()) == ["0.1.0", "0.1.0+b2", "0.1.0+b3", "current"]

    gone = edge_agent("uninstall", "--root", root, "--no-systemd", "--purge")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert lock_holder(layout.state / "state" / "LOCK") is None
    assert not layout.opt.exists() and not layout.etc.exists() and not layout.state.exists()
    assert "edge-agent:" not in (root / "etc/passwd").read_text()


def run_task_later(site: Site) -> tuple[Any, TestClient]:
    """A task accepted now that runs 40 s later, across the upgrade and the rollback, and a
    dashboard that listens for its result from now on (results are not retained)."""
    device = site.client("sensor-1")
    watcher = site.watch("edge/results/node-1/+")
    try:
        return site.submit(
            device, "sensor-1", "stats", {"signal": [2.0, 4.0]}, run_at=time.time() + 40
        ), watcher
    finally:
        device.close()


def later_result(site: Site, later: tuple[Any, TestClient]) -> Result:
    task, watcher = later
    try:
        results = site.results(watcher, 1, timeout=90)
        assert results[0].id == task.id, results
        return results[0]
    finally:
        watcher.close()


def test_under_root_with_systemd_the_unit_is_written_and_enabled_for_that_system(
    site: Site, root: Path, wheels: dict[str, Path]
) -> None:
    """`--root` without --no-systemd: nothing can start there, so the unit is written (its paths
    under the root) and enabled with `systemctl --root`, for that system's next boot."""
    require_tool("systemctl", hint="apt-get install systemd")
    layout = Layout(root)
    args = ["--root", root, "--python", PYTHON, "--bundle", archive(site), "--wheel", wheels["0.1.0"]]
    done = edge_agent("install", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "starts at that system's next boot" in done.stdout and "systemctl status" not in done.stdout
    unit = layout.unit.read_text()
    command = f"{root}/opt/edge-agent/current/bin/edge-agent run --config {root}/etc/edge-agent/agent.toml"
    assert f"ExecStart={command}\n" in unit
    assert f"ReadWritePaths={root}/var/lib/edge-agent\n" in unit and "TimeoutStopSec=40\n" in unit
    wants = layout.unit_dir / "multi-user.target.wants" / "edge-agent.service"
    assert wants.is_symlink() and lock_holder(layout.state / "state" / "LOCK") is None  # not started
    again = edge_agent("install", *args)
    assert again.returncode == 0 and f"= {layout.unit} (enabled): already so" in again.stdout, again.stdout
