"""Debian bookworm roots for the emulated boards: built once with mmdebstrap, cached as tarballs.

    board = BOARDS["armhf"]
    tarball = cached_root(board.recipe)  # builds it the first time (minutes under qemu), then reuses it
    unpack(tarball, tmp / "root")     # a fresh board for a test session (seconds)

`unpack` also gives the board the host's DNS resolver and, when the host's pip is given a CA
bundle (PIP_CERT; else the host's system CA bundle), that bundle for pip on the board: pip there
reaches the registries as the host does, through whatever TLS proxy the host's bundle trusts.

A root is what a freshly flashed board has plus the Debian packages the documented install route
uses (PACKAGES): Python with venv and pip, numpy, cryptography, cffi, ... from Debian's registry.
The cache is `EDGE_BOARDS_CACHE`, else `.ci-cache/boards/` in the checkout; a tarball's name carries
a hash of everything that went into it (suite, architecture, variant, package list, RECIPE), so
changing the list builds a new root and the old one is removed. Builds take a lock per board, so two
test processes never build the same root at once. `python -m tests.boards.roots [arm64|armhf]`
fills the cache outside pytest.

Needs, as root: mmdebstrap, qemu-user-static and binfmt_misc (tests/boards/binfmt.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.boards.binfmt import ElfMatch

CHECKOUT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
VARIANT = "minbase"
# What a board has for the documented route (deploy/README.md): Debian's Python and, for armhf where
# PyPI has no wheels, Debian's builds of the compiled dependencies (a venv with system site packages).
PACKAGES = (
    "ca-certificates",
    "libstdc++6",
    "python3",
    "python3-cffi",
    "python3-cryptography",
    "python3-msgpack",
    "python3-numpy",
    "python3-pip",
    "python3-psutil",
    "python3-venv",
    "python3-yaml",
)
# mmdebstrap adds the -security suite to a stable release; its armhf index on the registry this
# project reaches was inconsistent (size mismatch, every retry), and no test needs its fixes.
DROP_SECURITY = 'sed -i "/-security/d" "$1/etc/apt/sources.list"'
# Bump when the way a root is made changes in a way the fields above do not show.
RECIPE = "2: no docs/man/locales; no -security suite"
BUILD_TIMEOUT_S = 3600.0
BUILD_ATTEMPTS = 2
FETCH_RETRY_PAUSE_S = 30.0
# Where `unpack` puts the host's CA bundle for pip on the board (PIP_CERT if set, else the system's).
PIP_CERT_INSIDE = "/etc/ssl/host-pip-ca.crt"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class RootRecipe:
    """What a cached root is made of: `name` names its tarball and lock (arm64, amd64-systemd)."""

    name: str
    debian_arch: str
    packages: tuple[str, ...] = PACKAGES

    def key(self) -> str:
        """A hash of everything the root is built from: a change builds a new one."""
        recipe = {
            "suite": SUITE,
            "arch": self.debian_arch,
            "variant": VARIANT,
            "packages": sorted(self.packages),
            "recipe": RECIPE,
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Board:
    debian_arch: str  # arm64 | armhf
    machine: str  # what platform.machine() says on the board
    target: str  # native/lib/<target>/ (deploy/arm)
    elf: ElfMatch
    # the documented route: armhf uses Debian's numpy, cryptography, ... (PyPI has no armv7l wheels)
    system_site_packages: bool

    @property
    def qemu(self) -> str:
        return self.elf.interpreter

    @property
    def recipe(self) -> RootRecipe:
        return RootRecipe(self.debian_arch, self.debian_arch)


_ELF_MASK = bytes.fromhex("ffffffffffffff00fffffffffffffffffeffffff")
BOARDS = {
    "arm64": Board(
        "arm64",
        "aarch64",
        "aarch64",
        ElfMatch(
            "qemu-aarch64",
            bytes.fromhex("7f454c460201010000000000000000000200b700"),
            _ELF_MASK,
            "qemu-aarch64-static",
        ),
        system_site_packages=False,
    ),
    "armhf": Board(
        "armhf",
        "armv7l",
        "armhf",
        ElfMatch(
            "qemu-arm",
            bytes.fromhex("7f454c4601010100000000000000000002002800"),
            _ELF_MASK,
            "qemu-arm-static",
        ),
        system_site_packages=True,
    ),
}


# The service tests' system (tests/service): a board's packages and what makes it boot with systemd.
SYSTEMD_ROOT = RootRecipe("amd64-systemd", "amd64", (*PACKAGES, "dbus", "systemd", "systemd-sysv"))


class RootBuildError(RuntimeError):
    """mmdebstrap failed: its output is in the message."""


def cache_dir() -> Path:
    configured = os.environ.get("EDGE_BOARDS_CACHE")
    return Path(configured) if configured else CHECKOUT / ".ci-cache" / "boards"


def tarball_path(recipe: RootRecipe) -> Path:
    return cache_dir() / f"{SUITE}-{recipe.name}-{recipe.key()}.tar"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def mmdebstrap_command(recipe: RootRecipe, out: Path) -> list[str]:
    excludes = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*"]
    keep = "/usr/share/doc/*/copyright"
    dpkg_options = [f"--dpkgopt=path-exclude={p}" for p in excludes] + [f"--dpkgopt=path-include={keep}"]
    return [
        "mmdebstrap",
        "--mode=root",
        f"--variant={VARIANT}",
        f"--architectures={recipe.debian_arch}",
        f"--include={','.join(recipe.packages)}",
        *dpkg_options,
        f"--setup-hook={DROP_SECURITY}",
        "--format=tar",
        SUITE,
        str(out),
    ]


def build(recipe: RootRecipe, out: Path) -> float:
    """mmdebstrap the root into `out` (a tar); returns the seconds it took.

    A failure to fetch (a mirror half-way through a sync) is tried once more after a pause."""
    partial = out.with_suffix(".partial.tar")
    started = time.monotonic()
    for attempt in range(1, BUILD_ATTEMPTS + 1):
        done = subprocess.run(
            mmdebstrap_command(recipe, partial),
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode == 0:
            partial.rename(out)
            return time.monotonic() - started
        partial.unlink(missing_ok=True)
        output = done.stdout + done.stderr
        if "Failed to fetch" not in output or attempt == BUILD_ATTEMPTS:
            tail = output[-4000:]
            raise RootBuildError(f"mmdebstrap {recipe.name} exited with {done.returncode}:\n{tail}")
        time.sleep(FETCH_RETRY_PAUSE_S)
    raise AssertionError("unreachable")


def cached_root(recipe: RootRecipe) -> Path:
    """The root's tarball, built first if the cache has none for the recipe's current key.

    Tarballs of the same name with another key (an older package list) are removed."""
    out = tarball_path(recipe)
    with _locked(cache_dir() / f"{recipe.name}.lock"):
        if not out.exists():
            seconds = build(recipe, out)
            print(f"built {out.name} in {seconds:.0f} s", file=sys.stderr)
            for stale in cache_dir().glob(f"{SUITE}-{recipe.name}-[0-9a-f]*.tar"):
                if stale != out:
                    stale.unlink()
    return out


def unpack(tarball: Path, dest: Path) -> Path:
    """A fresh copy of the root at `dest` (device nodes and owners as built: needs root)."""
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(dest), "--numeric-owner"], check=True, timeout=300)
    _copy_in("/etc/resolv.conf", dest / "etc" / "resolv.conf")
    # The registries' CA as this machine trusts it: the board's own bundle is Debian's alone, and a
    # TLS proxy between this machine and the registries failed pip there with CERTIFICATE_VERIFY_FAILED.
    host_ca = os.environ.get("PIP_CERT") or HOST_CA_BUNDLE
    if Path(host_ca).is_file():
        _copy_in(host_ca, dest / PIP_CERT_INSIDE.lstrip("/"))
    return dest


def _copy_in(host_file: str, inside: Path) -> None:
    inside.unlink(missing_ok=True)  # never write through a link: it would point into the host
    shutil.copyfile(host_file, inside)


def main(argv: list[str]) -> int:
    """Fill the cache: `python -m tests.boards.roots [arm64|armhf|amd64-systemd ...]` (default all)."""
    from tests.boards.binfmt import ensure_registered

    for name in argv or [*BOARDS, SYSTEMD_ROOT.name]:
        if name == SYSTEMD_ROOT.name:
            print(cached_root(SYSTEMD_ROOT))
            continue
        board = BOARDS[name]
        interpreter = shutil.which(board.qemu) or f"/usr/bin/{board.qemu}"
        ensure_registered(board.elf, interpreter)
        print(cached_root(board.recipe))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
