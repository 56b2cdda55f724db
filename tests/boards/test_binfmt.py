"""tests/boards/binfmt.py against the kernel's real binfmt_misc: the registration path that a machine
where qemu-user-static already registered itself never takes, tried with a made-up ELF header that
no program has (the entry is removed again)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.boards.binfmt import BINFMT, ElfMatch, Entry, ensure_registered, mounted
from tests.boards.roots import BOARDS
from tests.support.services import require_tool

pytestmark = pytest.mark.boards
# e_machine 0xbeef: no architecture has it
NOBODY = bytes.fromhex("7f454c460201010000000000000000000200efbe")


def test_an_entry_is_read_as_the_kernel_prints_it(tmp_path: Path) -> None:
    printed = tmp_path / "qemu-arm"
    printed.write_text(
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\nflags: PF\noffset 0\n"
        "magic 7f454c4601010100000000000000000002002800\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
    )
    entry = Entry.read(printed)
    assert entry == Entry("qemu-arm", True, "PF", BOARDS["armhf"].elf.magic.hex())


def test_a_missing_entry_is_registered_with_the_fix_binary_flag() -> None:
    if os.geteuid() != 0 or not mounted():
        pytest.skip("needs root and binfmt_misc mounted (the board fixture mounts it)")
    interpreter = require_tool("qemu-aarch64-static")
    elf = ElfMatch(
        f"edge-test-{uuid.uuid4().hex[:8]}", NOBODY, BOARDS["arm64"].elf.mask, "qemu-aarch64-static"
    )
    try:
        entry = ensure_registered(elf, interpreter)
        assert (entry.name, entry.enabled, entry.flags, entry.magic) == (elf.name, True, "F", NOBODY.hex())
        assert f"interpreter {interpreter}" in (BINFMT / elf.name).read_text()
        assert ensure_registered(elf, interpreter) == entry  # a second call finds it, registers nothing
    finally:
        if (BINFMT / elf.name).exists():
            (BINFMT / elf.name).write_text("-1")
    assert not (BINFMT / elf.name).exists()
