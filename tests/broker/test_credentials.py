"""Provisioning's password and ACL files as the broker reads them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from broker.credentials import AclTable, PasswordFile, hash_password
from broker.errors import CredentialsError
from tests.support.services import in_ci


def test_hashes_round_trip_and_fail_on_a_wrong_password() -> None:
    passwords = PasswordFile.parse(f"# comment\n\nalice:{hash_password('secret')}\n")
    assert passwords.verify("alice", "secret")
    assert not passwords.verify("alice", "Secret")
    assert not passwords.verify("mallory", "secret")


def test_reads_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        if in_ci():
            pytest.fail("mosquitto_passwd is missing (mosquitto package)")
        pytest.skip("mosquitto_passwd is not installed")
    path = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(path), "node-1", "pw"], check=True, capture_output=True)
    assert PasswordFile.load(path).verify("node-1", "pw")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice", "expected `user:$7$...`"),
        ("alice:$6$abc$def", "not a $7$"),
        ("alice:$7$x$AAAA$AAAA", "malformed"),
        (f"a:{hash_password('x')}\na:{hash_password('y')}", "appears twice"),
    ],
)
def test_bad_password_files_name_the_line(text: str, problem: str) -> None:
    with pytest.raises(CredentialsError, match="passwd:") as caught:
        PasswordFile.parse(text, "passwd")
    assert problem in caught.value.message


def test_acl_decisions() -> None:
    acl = AclTable.from_dict(
        {
            "format": 1,
            "users": {
                "node-1": {
                    "role": "agent",
                    "publish": ["edge/results/node-1/#"],
                    "subscribe": ["edge/tasks/node-1", "edge/tasks/all"],
                },
                "dash": {"publish": [], "subscribe": ["edge/#"]},
            },
            "anonymous": {"subscribe": ["public/#"]},
        }
    )
    assert acl.can_publish("node-1", "edge/results/node-1/t1")
    assert not acl.can_publish("node-1", "edge/results/node-2/t1")
    assert acl.can_subscribe("node-1", "edge/tasks/node-1") and not acl.can_subscribe(
        "node-1", "edge/tasks/+"
    )
    assert acl.can_subscribe("dash", "edge/results/+/x") and not acl.can_subscribe("dash", "#")
    assert acl.can_receive("dash", "edge/presence/node-1") and not acl.can_receive("dash", "other/x")
    assert not acl.can_publish("dash", "edge/tasks/node-1")
    assert acl.can_subscribe(None, "public/a") and not acl.can_publish(None, "public/a")
    assert not acl.can_receive("stranger", "edge/tasks/all")  # users not listed may do nothing
    assert (acl.role_of("node-1"), acl.role_of("dash"), acl.role_of(None)) == ("agent", None, None)


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"users": {"a": {"publish": "x"}}}, "must be a list"),
        ({"users": {"a": {"publish": ["a/#/b"]}}}, "not a valid MQTT topic filter"),
        ({"users": {"a": {"read": ["x"]}}}, "unknown key(s) read"),
        ({"user": {}}, "unknown key(s) user"),
        ({"users": {"a": {"role": 1}}}, "role must be a string"),
    ],
)
def test_bad_acl_files_say_what_is_wrong(doc: dict[str, object], problem: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        AclTable.from_dict(doc, "acl.toml")
    assert problem in caught.value.message and "acl.toml" in caught.value.message


def test_missing_files_say_how_to_make_them(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="edge-provision broker-files"):
        PasswordFile.load(tmp_path / "passwd")
