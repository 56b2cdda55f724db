"""`make dist` (deploy/dist.py): platform wheels with their own kernels, an sdist, SHA256SUMS, and the
same bytes from the same sources wherever and whenever they are built.

The x86_64 wheel is built (the ARM ones need the cross compilers: their kernels are checked by
building them twice, which is most of what could differ). A missing tool fails in CI, skips locally.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.services import require_tool

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "deploy" / "dist.py"
EPOCH = "1767225600"  # 2026-01-01
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv of build tools for the module's builds (it does not go into what is built)."""
    return tmp_path_factory.mktemp("dist-tools") / "venv"


def dist(*args: str | Path, epoch: str = EPOCH) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "SOURCE_DATE_EPOCH": epoch}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("PIP_", "SSL_", "REQUESTS_"))})
    return subprocess.run(
        [sys.executable, DIST, *map(str, args)], capture_output=True, text=True, env=env, timeout=280
    )


def sums(out: Path) -> dict[str, str]:
    return {
        name: digest
        for digest, name in (line.split() for line in (out / "SHA256SUMS").read_text().splitlines())
    }


def test_same_sources_give_the_same_wheel_and_sdist_bytes_in_another_place(
    tmp_path: Path, tools: Path
) -> None:
    require_tool("g++")
    first = dist(
        "--targets", "x86_64", "--work", tmp_path / "w1", "--out", tmp_path / "out1", "--tools", tools
    )
    assert first.returncode == 0, first.stderr
    for step in ("[1/6] build tools", "[3/6] sdist", "[4/6] kernels x86_64", "self-test: ", "[6/6] publish"):
        assert step in first.stdout, first.stdout  # the long build says where it is
    elsewhere = tmp_path / "elsewhere" / "w2"
    second = dist("--targets", "x86_64", "--work", elsewhere, "--out", tmp_path / "out2", "--tools", tools)
    assert second.returncode == 0, second.stderr

    one, two = sums(tmp_path / "out1"), sums(tmp_path / "out2")
    assert sorted(one) == [
        "mqtt_edge_agent-0.1.0-py3-none-manylinux_2_36_x86_64.whl",
        "mqtt_edge_agent-0.1.0.tar.gz",
    ]
    assert one == two
    for name, digest in one.items():  # SHA256SUMS is true
        assert hashlib.sha256((tmp_path / "out1" / name).read_bytes()).hexdigest() == digest
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path / "out1", capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    with zipfile.ZipFile(
        tmp_path / "out1" / "mqtt_edge_agent-0.1.0-py3-none-manylinux_2_36_x86_64.whl"
    ) as wheel:
        names = wheel.namelist()
        assert [n for n in names if n.endswith(".so")] == ["native/lib/x86_64/libedge_kernels.so"]
        assert "native/include/edge_kernels.h" in names  # ABI mode reads the header at run time
        info = wheel.read("mqtt_edge_agent-0.1.0.dist-info/WHEEL").decode()
        assert "Root-Is-Purelib: false" in info and "Tag: py3-none-manylinux_2_36_x86_64" in info
        # an agent board pulls neither the broker's nor the gateway's dependencies
        requires = [
            line for line in wheel.read("mqtt_edge_agent-0.1.0.dist-info/METADATA").decode().splitlines()
            if line.startswith("Requires-Dist") and "extra ==" not in line
        ]  # fmt: skip
        assert not [r for r in requires if "amqtt" in r or "aiohttp" in r]
        assert {info.date_time for info in wheel.infolist()} == {(2026, 1, 1, 0, 0, 0)}


def test_a_version_suffix_makes_a_newer_local_version(tmp_path: Path, tools: Path) -> None:
    require_tool("g++")
    built = dist("--targets", "x86_64", "--no-selftest", "--version-suffix", "b2", "--work", tmp_path / "w",
                 "--out", tmp_path / "out", "--tools", tools)  # fmt: skip
    assert built.returncode == 0, built.stderr
    wheel = tmp_path / "out" / "mqtt_edge_agent-0.1.0+b2-py3-none-manylinux_2_36_x86_64.whl"
    with zipfile.ZipFile(wheel) as z:
        assert b'__version__ = "0.1.0+b2"' in z.read("agent/__init__.py")
    assert (tmp_path / "out" / "mqtt_edge_agent-0.1.0+b2.tar.gz").is_file()


def test_bad_targets_and_suffixes_are_refused_by_name(tmp_path: Path) -> None:
    bad = dist("--targets", "x86_64,mips", "--work", tmp_path)
    assert bad.returncode == 2 and "unknown target ['mips']" in bad.stderr
    assert not (tmp_path / "tools").exists()  # refused before anything was built
    bad = dist("--version-suffix", "b 2/../x", "--work", tmp_path)
    assert bad.returncode == 2 and "letters, digits and dots only" in bad.stderr


@pytest.mark.parametrize(
    ("target", "compiler"), [("aarch64", "aarch64-linux-gnu-g++"), ("armhf", "arm-linux-gnueabihf-g++")]
)
def test_arm_kernels_are_the_same_bytes_from_two_checkouts(
    tmp_path: Path, target: str, compiler: str
) -> None:
    """The library does not depend on where the checkout lies (-ffile-prefix-map, build id of the
    contents, no timestamps). This held on the Makefile before issue 20 too (it has no -g): a guard."""
    require_tool(compiler)
    libraries = []
    for checkout in (tmp_path / "a", tmp_path / "a-much-longer-path" / "checkout"):
        native = checkout / "native"
        shutil.copytree(ROOT / "native", native, ignore=shutil.ignore_patterns("lib", "__pycache__", "*.so"))
        subprocess.run(
            ["make", "-s", "-C", native, f"TARGET={target}", "all"], check=True, capture_output=True
        )
        libraries.append((checkout / "build" / "native" / target / "libedge_kernels.so").read_bytes())
        assert str(checkout).encode() not in libraries[-1]
    assert libraries[0] == libraries[1]
