"""`make dist`: the wheels a board installs, one per platform with its own kernels inside, an sdist,
and SHA256SUMS, all reproducible (the same commit gives the same bytes).

    python3 deploy/dist.py [--out dist] [--targets x86_64,aarch64,armv7l] [--version-suffix b2]
                           [--no-selftest] [--work build/dist] [--tools WORK/tools]

Steps, each printed with its time:
1. the build tools, pinned (BUILD_TOOLS), in a venv of their own (made once, under the work dir);
2. the source tree copied (only what the sdist needs); --version-suffix makes `X.Y.Z+SUFFIX`, a
   newer version of the same code (upgrade tests);
3. the sdist, from that tree, re-packed deterministically (sorted, owner 0, mtime SOURCE_DATE_EPOCH);
4. per target: the kernels compiled from the sdist's own sources with native/Makefile (the cross
   compiler for ARM), their C++ self-test (under qemu-user for ARM) unless --no-selftest, then a
   wheel built from the sdist with that one library in native/lib/<lib dir>/ and tagged
   `py3-none-manylinux_2_36_<arch>` (see PLATFORM_TAG);
5. SHA256SUMS of every wheel and sdist in the output directory (`sha256sum -c SHA256SUMS`).

SOURCE_DATE_EPOCH (default: the commit time of HEAD) dates every archive member. Exit status 0,
or 1 with the step that failed and its output.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "mqtt_edge_agent"
# Build tools pinned: the wheel's metadata files are written by setuptools, so the same versions
# are part of "the same bytes".
BUILD_TOOLS = ("setuptools==84.2.1", "cffi==2.1.1")
# The glibc of Debian 12 (bookworm) and Raspberry Pi OS bookworm, where these wheels are built for
# and tested. The library itself needs older symbols only (GLIBC_2.17 on aarch64, GLIBC_2.4 on
# armhf, GLIBCXX_3.4 / CXXABI_1.3.9), but a tag is a promise that pip keeps for the user: the
# project promises what it tests. pip accepts manylinux_2_36 on any glibc >= 2.36.
GLIBC = "2_36"
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "agent", "broker", "gateway", "native",
           "provisioning")  # fmt: skip
IGNORED = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.so", "*.o", "*.egg-info", "lib", ".*")
VERSION_LINE = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)
LOCAL_LABEL = re.compile(r"[A-Za-z0-9]+(\.[A-Za-z0-9]+)*")


@dataclass(frozen=True)
class Target:
    arch: str  # the wheel's tag and platform.machine() of the board
    make_target: str  # native/Makefile TARGET
    lib_dir: str  # native/lib/<lib_dir>/, where native/loader.py looks (target_name)
    elf_machine: int  # e_machine of the ELF header

    @property
    def platform_tag(self) -> str:
        return f"manylinux_{GLIBC}_{self.arch}"


TARGETS = {
    "x86_64": Target("x86_64", "host", "x86_64", 62),
    "aarch64": Target("aarch64", "aarch64", "aarch64", 183),
    "armv7l": Target("armv7l", "armhf", "armhf", 40),
}


class DistError(Exception):
    """A step failed: the message says which and what it printed."""


class Progress:
    """`[i/n] step ... done (s)` lines on stdout, flushed: the long build shows where it is."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.step = 0
        self.started = time.monotonic()

    def begin(self, text: str) -> float:
        self.step += 1
        print(f"[{self.step}/{self.total}] {text} ...", flush=True)
        return time.monotonic()

    def end(self, began: float, text: str = "done") -> None:
        print(f"      {text} ({time.monotonic() - began:.1f} s)", flush=True)


def run(command: Sequence[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a command; its output is returned, or shown in the DistError when it fails."""
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-4000:]
        raise DistError(f"{' '.join(map(str, command))} exited with {done.returncode}:\n{output}")
    return done.stdout


def unpack(archive: Path, into: Path) -> Path:
    """The one top directory of a .tar.gz, extracted under `into` (the "data" filter where this
    Python has it: an sdist holds plain files only)."""
    shutil.rmtree(into, ignore_errors=True)
    with tarfile.open(archive, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)  # our own sdist, just built
    [tree] = list(into.iterdir())
    return tree


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH if set, else the commit time of HEAD, else 1980-01-01 (zip's first day)."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        return int(run(["git", "-C", ROOT, "log", "-1", "--format=%ct"]).strip())
    except (DistError, OSError, ValueError):
        return 315532800


def tools_python(venv: Path) -> Path:
    """The build tools' venv (made once; remade when BUILD_TOOLS change)."""
    stamp = venv / "tools.txt"
    if stamp.is_file() and stamp.read_text() == "\n".join(BUILD_TOOLS):
        return venv / "bin" / "python"
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", venv])
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", *BUILD_TOOLS])
    stamp.write_text("\n".join(BUILD_TOOLS))
    return venv / "bin" / "python"


def stage_sources(tree: Path, suffix: str | None) -> str:
    """Copy what the sdist is made of into `tree`; returns the version (with `+suffix`)."""
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=IGNORED)
        else:
            shutil.copy2(source, tree / name)
    init = tree / "agent" / "__init__.py"
    text = init.read_text()
    found = VERSION_LINE.search(text)
    if found is None:
        raise DistError(f'{init}: no `__version__ = "..."` line')
    version = found.group(1)
    if suffix:
        version = f"{version}+{suffix}"
        init.write_text(VERSION_LINE.sub(f'__version__ = "{version}"', text))
    return version


def build_hook(python: Path, hook: str, tree: Path, out: Path, env: dict[str, str]) -> Path:
    """One PEP 517 hook of setuptools (`build_sdist`, `build_wheel`) run in `tree`."""
    out.mkdir(parents=True, exist_ok=True)
    code = f"import sys; from setuptools import build_meta as b; print(b.{hook}(sys.argv[1]))"
    printed = run([python, "-c", code, out.resolve()], cwd=tree, env=env)
    return out / printed.strip().splitlines()[-1]


def repack_sdist(path: Path, epoch: int) -> None:
    """The sdist again, byte for byte the same for the same sources: sorted members, no owners,
    normalised modes, every mtime `epoch`, and a gzip header without a time or a name."""
    with tarfile.open(path, "r:gz") as tar:
        members = sorted(tar.getmembers(), key=lambda m: m.name)
        contents = {m.name: tar.extractfile(m).read() if m.isfile() else None for m in members}  # type: ignore[union-attr]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as out:
        for member in members:
            member.mtime, member.uid, member.gid, member.uname, member.gname = epoch, 0, 0, "", ""
            member.mode = 0o755 if member.isdir() or member.mode & 0o111 else 0o644
            member.pax_headers = {}
            data = contents[member.name]
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    with path.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(raw.getvalue())


def build_kernels(tree: Path, target: Target, build: Path, selftest: bool) -> Path:
    """native/Makefile of the staged tree for one target; the self-test too unless told not to."""
    shutil.rmtree(
        build, ignore_errors=True
    )  # never objects of other sources: their mtimes are SOURCE_DATE_EPOCH
    make = ["make", "-s", "-C", tree / "native", "-j2", f"TARGET={target.make_target}", f"BUILD={build}"]
    run([*make, "all"])
    if selftest:
        printed = run([*make, "selftest"]).strip().splitlines()
        print(f"      self-test: {printed[-1] if printed else '(no output)'}", flush=True)
    return build / "libedge_kernels.so"


def elf_machine(data: bytes) -> int:
    if data[:4] != b"\x7fELF":
        raise DistError("the kernel library is not an ELF file")
    return int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")


def build_wheel(
    python: Path, sdist: Path, target: Target, library: Path, work: Path, env: dict[str, str]
) -> Path:
    """A wheel from the sdist with `library` as native/lib/<lib_dir>/libedge_kernels.so."""
    tree = unpack(sdist, work / f"wheel-{target.arch}")
    staged = tree / "native" / "lib" / target.lib_dir / "libedge_kernels.so"
    staged.parent.mkdir(parents=True)
    shutil.copyfile(library, staged)
    staged.chmod(0o755)
    wheel_env = {**env, "EDGE_WHEEL_PLATFORM": target.platform_tag}
    wheel = build_hook(python, "build_wheel", tree, work / "wheels", wheel_env)
    check_wheel(wheel, target, library.read_bytes())
    return wheel


def check_wheel(wheel: Path, target: Target, library: bytes) -> None:
    """The wheel holds exactly this target's library, for this machine, and says so in its tag."""
    if not wheel.name.endswith(f"-py3-none-{target.platform_tag}.whl"):
        raise DistError(f"{wheel.name}: expected the tag py3-none-{target.platform_tag}")
    with zipfile.ZipFile(wheel) as z:
        libs = [n for n in z.namelist() if n.endswith("libedge_kernels.so")]
        if libs != [f"native/lib/{target.lib_dir}/libedge_kernels.so"] or z.read(libs[0]) != library:
            raise DistError(
                f"{wheel.name}: holds {libs}, expected this build's {target.lib_dir} library only"
            )
    if elf_machine(library) != target.elf_machine:
        raise DistError(f"the {target.arch} library has ELF machine {elf_machine(library)}")


def write_sums(out: Path) -> Path:
    """SHA256SUMS of every wheel and sdist in `out`, in `sha256sum -c` format, sorted by name."""
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
        for p in sorted(out.iterdir())
        if p.name.endswith((".whl", ".tar.gz"))
    ]
    sums = out / "SHA256SUMS"
    sums.write_text("".join(lines))
    return sums


def publish(built: Path, out: Path) -> Path:
    """Move a built file into `out`, replacing one of the same name."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / built.name
    target.unlink(missing_ok=True)
    shutil.move(str(built), target)
    return target


def build_all(
    targets: list[Target], out: Path, work: Path, suffix: str | None, selftest: bool, tools: Path
) -> list[Path]:
    progress = Progress(3 + 2 * len(targets) + 1)
    epoch = source_date_epoch()
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "PYTHONHASHSEED": "0", "LC_ALL": "C"}
    began = progress.begin(f"build tools {', '.join(BUILD_TOOLS)}")
    python = tools_python(tools)
    progress.end(began)
    began = progress.begin("source tree")
    version = stage_sources(work / "src" / f"{DIST_NAME}-src", suffix)
    progress.end(began, f"version {version}, SOURCE_DATE_EPOCH {epoch}")
    began = progress.begin("sdist")
    shutil.rmtree(work / "sdist", ignore_errors=True)
    sdist = build_hook(python, "build_sdist", work / "src" / f"{DIST_NAME}-src", work / "sdist", env)
    repack_sdist(sdist, epoch)
    progress.end(began, sdist.name)
    made = [sdist]
    shutil.rmtree(work / "wheels", ignore_errors=True)
    for target in targets:
        began = progress.begin(f"kernels {target.arch} ({target.make_target})")
        tree = unpack(sdist, work / "kernel-src" / target.arch)
        library = build_kernels(tree, target, work / "native" / target.arch, selftest)
        progress.end(
            began,
            f"{library.stat().st_size} bytes, sha256 {hashlib.sha256(library.read_bytes()).hexdigest()[:16]}",
        )
        began = progress.begin(f"wheel {target.platform_tag}")
        made.append(build_wheel(python, sdist, target, library, work, env))
        progress.end(began, made[-1].name)
    began = progress.begin(f"publish to {out}")
    published = [publish(path, out) for path in made]
    sums = write_sums(out)
    progress.end(began, f"{sums} ({len(sums.read_text().splitlines())} files)")
    return published


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deploy/dist.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "dist", help="scratch (build/dist)")
    parser.add_argument("--tools", type=Path, help="the build tools' venv (default: WORK/tools)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: x86_64,aarch64,armv7l")
    parser.add_argument(
        "--version-suffix", help="build X.Y.Z+SUFFIX (a PEP 440 local label: letters, digits, dots)"
    )
    parser.add_argument("--no-selftest", action="store_true", help="skip the kernels' C++ self-test")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    names = [t for t in args.targets.split(",") if t]
    unknown = [t for t in names if t not in TARGETS]
    if unknown or not names:
        print(f"dist: unknown target {unknown}: choose from {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    if args.version_suffix is not None and not LOCAL_LABEL.fullmatch(args.version_suffix):
        print(
            f"dist: --version-suffix {args.version_suffix!r}: letters, digits and dots only", file=sys.stderr
        )
        return 2
    try:
        tools = (args.tools or args.work / "tools").resolve()
        targets = [TARGETS[t] for t in names]
        made = build_all(
            targets, args.out.resolve(), args.work.resolve(), args.version_suffix, not args.no_selftest, tools
        )
    except DistError as exc:
        print(f"dist: {exc}", file=sys.stderr)
        return 1
    for path in made:
        print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
