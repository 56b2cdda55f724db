"""An agent's bundle (`edge-provision bundle NODE --archive node-1.tar.gz`, or its directory), read
and checked before anything is written: every refusal says what is wrong and how to get a good one.

    bundle = AgentBundle.read(Path("node-1.tar.gz"))   # InputError
    bundle.node, bundle.files["agent.toml"].data

The archive is read in memory (a bundle is a few KB): members must be plain files under one top
directory (or none), without absolute paths, `..`, links or devices; the files the agent needs
must all be there. Modes come from the bundle (keys 0600); `agent.toml` must name a node.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ...common import tomlio
from ...common.errors import ConfigError
from .errors import InputError

AGENT_FILES = ("agent.toml", "signing.key", "tls.key", "tls.crt", "ca.crt", "broker.password", "trust.toml")
PRIVATE_FILES = ("signing.key", "tls.key", "broker.password")  # 0600 whatever the bundle says
OTHER_KINDS = ("device.toml", "operator.toml", "dashboard.toml", "gateway.toml")
MAX_FILE = 1 << 20
MAX_FILES = 32
REMAKE = "make one with `edge-provision bundle NODE --archive NODE.tar.gz` on the fleet's machine"


@dataclass(frozen=True)
class BundleFile:
    name: str
    data: bytes
    mode: int


@dataclass(frozen=True)
class AgentBundle:
    source: Path
    files: dict[str, BundleFile]
    node: str
    config: dict[str, Any]  # agent.toml as read

    @classmethod
    def read(cls, path: Path) -> AgentBundle:
        if not path.exists():
            raise InputError(f"--bundle {path}: no such file or directory ({REMAKE})")
        files = _read_directory(path) if path.is_dir() else _read_archive(path)
        return cls.check(path, files)

    @classmethod
    def check(cls, path: Path, files: dict[str, BundleFile]) -> AgentBundle:
        kinds = [name for name in OTHER_KINDS if name in files]
        if "agent.toml" not in files and kinds:
            raise InputError(
                f"--bundle {path} is a {kinds[0].removesuffix('.toml')}'s bundle, not an agent's: "
                f"a board needs the bundle of its agent identity ({REMAKE})"
            )
        missing = [name for name in AGENT_FILES if name not in files]
        if missing:
            raise InputError(f"--bundle {path} lacks {', '.join(missing)}: it is incomplete ({REMAKE})")
        try:
            config = tomlio.loads(files["agent.toml"].data.decode("utf-8"))
        except (UnicodeDecodeError, ConfigError, ValueError) as exc:
            raise InputError(f"--bundle {path}: agent.toml cannot be read: {exc} ({REMAKE})") from None
        node = config.get("agent", {}).get("node") if isinstance(config.get("agent"), dict) else None
        if not isinstance(node, str) or not node:
            raise InputError(f"--bundle {path}: agent.toml names no [agent] node ({REMAKE})")
        return cls(path, files, node, config)


def _read_directory(path: Path) -> dict[str, BundleFile]:
    files = {}
    for entry in sorted(path.iterdir()):
        if entry.is_file() and not entry.is_symlink() and entry.stat().st_size <= MAX_FILE:
            files[entry.name] = BundleFile(entry.name, entry.read_bytes(), entry.stat().st_mode & 0o777)
    return files


def _member_name(member: tarfile.TarInfo, archive: Path) -> str | None:
    """The file name of a member (None for the top directory); unsafe members are refused."""
    parts = PurePosixPath(member.name).parts
    if member.name.startswith("/") or ".." in parts or len(parts) > 2:
        raise InputError(f"--bundle {archive}: member {member.name!r} lies outside the bundle: refused")
    if member.isdir():
        return None
    if not member.isfile():
        raise InputError(f"--bundle {archive}: member {member.name!r} is not a plain file (a link?): refused")
    if member.size > MAX_FILE:
        raise InputError(f"--bundle {archive}: member {member.name!r} is {member.size} bytes: not a bundle")
    return parts[-1]


def _read_archive(archive: Path) -> dict[str, BundleFile]:
    files: dict[str, BundleFile] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = _member_name(member, archive)
                if name is None:
                    continue
                if len(files) >= MAX_FILES:
                    raise InputError(f"--bundle {archive}: more than {MAX_FILES} files: not a bundle")
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                files[name] = BundleFile(name, data, member.mode & 0o777)
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        raise InputError(
            f"--bundle {archive} is not a readable .tar.gz (corrupt, cut short or another format: {exc}); "
            + REMAKE
        ) from None
    return files
