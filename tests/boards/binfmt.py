"""qemu-user registered with the kernel's binfmt_misc, so that ARM programs run in a chroot.

`ensure_registered(board)` mounts binfmt_misc if it is not mounted, and makes sure an enabled
entry for the board's ELF header exists with the F (fix binary) flag: with F the kernel opens the
interpreter when it is registered, so it is found from inside a chroot that has no qemu of its own.
An entry that `binfmt-support` already made (Debian's qemu-user-static registers its own, with F)
is used as it is; a missing one is registered with `qemu-<cpu>-static`; an entry without F is
refused with the command that fixes it, because it belongs to someone else on a shared machine.

Not thread-safe: call it from the test session's setup (the kernel's table is machine-wide).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

BINFMT = Path("/proc/sys/fs/binfmt_misc")


class BinfmtError(RuntimeError):
    """binfmt_misc cannot run this board's programs (not mountable, or an entry without F)."""


@dataclass(frozen=True)
class ElfMatch:
    """What binfmt_misc matches on: the first 20 bytes of the ELF header, under a mask."""

    name: str  # the entry's name, e.g. qemu-aarch64
    magic: bytes
    mask: bytes
    interpreter: str  # a static qemu-user, e.g. qemu-aarch64-static

    def register_line(self, interpreter_path: str) -> str:
        hexed = "".join(f"\\x{b:02x}" for b in self.magic)
        masked = "".join(f"\\x{b:02x}" for b in self.mask)
        return f":{self.name}:M::{hexed}:{masked}:{interpreter_path}:F"


@dataclass(frozen=True)
class Entry:
    name: str
    enabled: bool
    flags: str
    magic: str  # hex, as the kernel prints it

    @classmethod
    def read(cls, path: Path) -> Entry:
        lines = path.read_text().splitlines()
        fields = {name: value.strip() for name, _, value in (line.partition(" ") for line in lines[1:])}
        return cls(
            path.name, lines[0].strip() == "enabled", fields.get("flags:", ""), fields.get("magic", "")
        )


def mounted() -> bool:
    return (BINFMT / "status").exists()


def mount() -> None:
    """Mount binfmt_misc where the kernel expects it (root only)."""
    if mounted():
        return
    done = subprocess.run(
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not mounted():
        raise BinfmtError(f"cannot mount binfmt_misc on {BINFMT}: {done.stderr.strip() or 'not mounted'}")


def entries() -> list[Entry]:
    return [Entry.read(p) for p in sorted(BINFMT.iterdir()) if p.name not in ("register", "status")]


def matching(elf: ElfMatch) -> Entry | None:
    """The enabled entry for this ELF header, if any (the one with F first)."""
    want = elf.magic.hex()
    found = [e for e in entries() if e.enabled and e.magic == want]
    found.sort(key=lambda e: "F" not in e.flags)
    return found[0] if found else None


def ensure_registered(elf: ElfMatch, interpreter_path: str) -> Entry:
    """An enabled entry with F for `elf`, registering one with `interpreter_path` if none exists."""
    mount()
    if (BINFMT / "status").read_text().strip() != "enabled":
        raise BinfmtError(f"binfmt_misc is disabled on this machine (echo 1 > {BINFMT}/status)")
    entry = matching(elf)
    if entry is None:
        try:
            (BINFMT / "register").write_text(elf.register_line(interpreter_path))
        except OSError as exc:
            raise BinfmtError(f"cannot register {elf.name} with binfmt_misc: {exc}") from exc
        entry = matching(elf)
        if entry is None:
            raise BinfmtError(f"{elf.name} was registered but the kernel does not list it")
    if "F" not in entry.flags:
        raise BinfmtError(
            f"binfmt_misc entry {entry.name} has no F flag (flags '{entry.flags}'): a chroot cannot find its"
            f" interpreter; re-register it with F (update-binfmts --disable {entry.name}, then"
            " apt-get install --reinstall qemu-user-static)"
        )
    return entry
