"""The `$7$` hash: byte-identical to what `mosquitto_passwd` writes (a real login is in test_mosquitto.py)."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest

from provisioning.errors import FleetCorrupt
from provisioning.passwords import hash_password, new_password, passwd_line, verify_password
from tests.support.services import require_tool

LINE = re.compile(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==")


def test_same_bytes_as_mosquitto_passwd(tmp_path: Path) -> None:
    tool = require_tool("mosquitto_passwd")
    password = new_password()
    path = tmp_path / "passwd"
    path.touch()
    subprocess.run([tool, "-b", str(path), "user", password], check=True, capture_output=True)
    user, theirs = path.read_text().strip().split(":", 1)
    assert user == "user" and LINE.fullmatch(theirs)
    salt = base64.b64decode(theirs.split("$")[3])
    assert hash_password(password, salt=salt) == theirs
    assert verify_password(password, theirs)
    assert not verify_password(password + "x", theirs)


def test_format_and_randomness() -> None:
    password = new_password()
    assert len(password) == 32 and ":" not in password
    first, second = hash_password(password), hash_password(password)
    assert LINE.fullmatch(first) and first != second, "a fresh salt each time"
    assert verify_password(password, first) and verify_password(password, second)
    assert passwd_line("node-1", first) == f"node-1:{first}\n"
    assert new_password() != password


@pytest.mark.parametrize("bad", ["$6$abc$def", "$7$x$AAAA$AAAA", "$7$101$!!!$AAAA", "$7$101$AAAA"])
def test_malformed_hashes_are_refused(bad: str) -> None:
    with pytest.raises(FleetCorrupt):
        passwd_line("u", bad)
