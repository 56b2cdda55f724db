"""The system side of an installation: the service user, directories and files with their owners.

    users = Users(layout, as_root=os.geteuid() == 0)
    users.exists(); users.create(); uid, gid = users.ids()
    changed = place_file(path, data, mode, owner)      # atomic; False when already so

Users live in the layout's etc/passwd: the machine's own under "/", the root's under `--root DIR`
(`useradd --prefix DIR`, so a test never touches this machine's users). Not root (only allowed
with --root): files stay the invoking user's and nothing is chowned; the summary says so.
Runs on the installer's one thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ...common.fileio import write_atomic
from .errors import InputError, StepFailed
from .layout import Layout

NOLOGIN = "/usr/sbin/nologin"


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int

    @classmethod
    def me(cls) -> Owner:
        return cls(os.geteuid(), os.getegid())


def _passwd_entry(passwd: Path, name: str) -> tuple[int, int] | None:
    try:
        lines = passwd.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name:
            return int(fields[2]), int(fields[3])
    return None


class Users:
    def __init__(self, layout: Layout, *, as_root: bool) -> None:
        self.layout = layout
        self.as_root = as_root

    def _prefix(self) -> list[str]:
        return [] if self.layout.root == Path("/") else ["--prefix", str(self.layout.root)]

    def check(self) -> None:
        """Before any change: can the user be made where it must live?"""
        if self.as_root and not self.layout.passwd.is_file():
            raise InputError(
                f"--root {self.layout.root} has no etc/passwd, so the user {self.layout.user} cannot be made "
                "there: give a system's root (a chroot, an image) or copy etc/passwd, group, shadow, gshadow"
            )

    def exists(self) -> bool:
        return not self.as_root or _passwd_entry(self.layout.passwd, self.layout.user) is not None

    def create(self) -> None:
        home = "/var/lib/edge-agent"  # as the system will see it (inside the root)
        command = ["useradd", *self._prefix(), "--system", "--user-group", "--home-dir", home]
        command += ["--no-create-home", "--shell", NOLOGIN, "--comment", "mqtt-edge-agent", self.layout.user]
        run(command, f"create the system user {self.layout.user}")

    def remove(self) -> None:
        if self.as_root and _passwd_entry(self.layout.passwd, self.layout.user) is not None:
            run(["userdel", *self._prefix(), self.layout.user], f"remove the user {self.layout.user}")

    def owner(self) -> Owner:
        """The service user's ids (the invoking user's when not root)."""
        if not self.as_root:
            return Owner.me()
        entry = _passwd_entry(self.layout.passwd, self.layout.user)
        if entry is None:
            raise StepFailed(f"the user {self.layout.user} is not in {self.layout.passwd}")
        return Owner(*entry)

    def root_group(self) -> Owner:
        """root:<the service's group>: files the service reads and must not change."""
        owner = self.owner()
        return Owner(0, owner.gid) if self.as_root else owner


def run(command: list[str], doing: str) -> str:
    """A system command; StepFailed says what failed, with its output."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise StepFailed(f"cannot {doing}: {command[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise StepFailed(f"cannot {doing}: `{' '.join(command)}` exited with {done.returncode}: {output}")
    return done.stdout


def _same(path: Path, data: bytes | None, mode: int, owner: Owner, *, chown: bool) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if (st.st_mode & 0o7777) != mode or (chown and (st.st_uid, st.st_gid) != (owner.uid, owner.gid)):
        return False
    return data is None or (path.is_file() and path.read_bytes() == data)


def file_is(path: Path, data: bytes, mode: int, owner: Owner, *, chown: bool) -> bool:
    return _same(path, data, mode, owner, chown=chown)


def dir_is(path: Path, mode: int, owner: Owner, *, chown: bool) -> bool:
    return path.is_dir() and _same(path, None, mode, owner, chown=chown)


def place_file(path: Path, data: bytes, mode: int, owner: Owner, *, chown: bool) -> None:
    """Write atomically with this mode, then give it to `owner`: a key is root's and 0600 until
    then, never readable by another."""
    write_atomic(path, data, mode)
    if chown:
        os.chown(path, owner.uid, owner.gid)


def place_dir(path: Path, mode: int, owner: Owner, *, chown: bool) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if chown:
        os.chown(path, owner.uid, owner.gid)


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
