"""edge-device refuses every malformed setting with exit 2 and a message that names the KEY and
where it came from (device.env:LINE, or the flag), before it touches the network. The device.env
is the one `edge-provision bundle` writes; each case changes one line of it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.conftest import IDENTITIES, REVOKED
from tests.firmware.c_device import Device
from tests.support.fleet import edge_provision, provision


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("c-settings")
    fleet = provision(work, IDENTITIES, revoked=REVOKED)
    edge_provision("--fleet", fleet.root, "bundle", "sensor-1", "--out", work / "bundle")
    yield work / "bundle"


def edited(bundle: Path, tmp_path: Path, key: str, value: str | None) -> tuple[Path, int]:
    """A copy of the bundle whose device.env sets `key` to `value` (None: drops it); the line number."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    lines = (copy / "device.env").read_text().splitlines()
    [number] = [i for i, line in enumerate(lines) if line.startswith(f"{key}=")]
    if value is None:
        del lines[number]
    else:
        lines[number] = f"{key}={value}"
    (copy / "device.env").write_text("\n".join(lines) + "\n")
    return copy / "device.env", number + 1


CASES = {
    "missing host": ("EDGE_MQTT_HOST", None, r"EDGE_MQTT_HOST is not set \(in .*device\.env, or --host\)"),
    "bad port": (
        "EDGE_MQTT_PORT",
        "88a3",
        r"device\.env:{line}: EDGE_MQTT_PORT: '88a3' is not a port number",
    ),
    "port out of range": ("EDGE_MQTT_PORT", "70000", r"device\.env:{line}: EDGE_MQTT_PORT: '70000'"),
    "tls not a boolean": (
        "EDGE_MQTT_TLS",
        "yes",
        r"device\.env:{line}: EDGE_MQTT_TLS: 'yes' is not true or false",
    ),
    "bad base64 agent key": (
        "EDGE_AGENT_KEY_1",
        '"node-1 ed25519 not*base64 - -"',
        r"device\.env:{line}: EDGE_AGENT_KEY_1: the public key is not base64 of 32 bytes",
    ),
    "agent key of 31 bytes": (
        "EDGE_AGENT_KEY_1",
        '"node-1 ed25519 ' + "A" * 40 + '== - -"',
        r"device\.env:{line}: EDGE_AGENT_KEY_1: the public key is not base64 of 32 bytes",
    ),
    "fewer keys than counted": (
        "EDGE_AGENT_KEYS",
        "9",
        r"EDGE_AGENT_KEY_3 is not set \(EDGE_AGENT_KEYS says 9",
    ),
    "unreadable CA file": (
        "EDGE_MQTT_CA_FILE",
        "nowhere/ca.crt",
        r"device\.env:{line}: EDGE_MQTT_CA_FILE: cannot read .*nowhere/ca\.crt: No such file",
    ),
    "unreadable signing key": (
        "EDGE_SECURITY_SIGNING_KEY",
        "missing.key",
        r"device\.env:{line}: EDGE_SECURITY_SIGNING_KEY: cannot read .*missing\.key",
    ),
    "not a key file": (
        "EDGE_SECURITY_SIGNING_KEY",
        "ca.crt",
        r"device\.env:{line}: EDGE_SECURITY_SIGNING_KEY: neither a PKCS#8 PEM",
    ),
    "alg disagrees with the key": (
        "EDGE_SECURITY_ALG",
        "hmac-sha256",
        r"device\.env:{line}: EDGE_SECURITY_ALG: hmac-sha256, but EDGE_SECURITY_SIGNING_KEY holds an ed25519",
    ),
    "unknown alg": (
        "EDGE_SECURITY_ALG",
        "rsa",
        r"device\.env:{line}: EDGE_SECURITY_ALG: 'rsa' is not ed25519",
    ),
    "unquoted spaces": ("EDGE_MQTT_HOST", "a b", r"device\.env:{line}: EDGE_MQTT_HOST: a value with spaces"),
    "unterminated quote": (
        "EDGE_MQTT_HOST",
        '"localhost',
        r"device\.env:{line}: EDGE_MQTT_HOST: a quoted value",
    ),
    "bad target": (
        "EDGE_DEVICE_TARGET",
        "node/1",
        r"device\.env:{line}: EDGE_DEVICE_TARGET: 'node/1' is not a node",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_setting_is_refused_naming_it(
    c_device: Device, bundle: Path, tmp_path: Path, case: str
) -> None:
    key, value, expected = CASES[case]
    env, line = edited(bundle, tmp_path, key, value)
    target = [] if key == "EDGE_DEVICE_TARGET" else ["--target", "node-1"]  # sensor-1's bundle names none
    done = c_device.run("send", "--env", env, *target, timeout=20)
    assert done.returncode == 2, (case, done.returncode, done.stderr)
    assert re.search(expected.format(line=line), done.stderr), done.stderr
    assert done.stdout == ""


def test_a_flag_is_named_when_it_is_the_bad_value(c_device: Device, bundle: Path) -> None:
    done = c_device.run("send", "--env", bundle / "device.env", "--target", "node-1", "--port", "https")
    assert done.returncode == 2
    assert "--port (EDGE_MQTT_PORT): 'https' is not a port number" in done.stderr
    done = c_device.run("send", "--env", bundle / "device.env", "--port", "1")  # sensor-1 has no target
    assert done.returncode == 2
    assert "EDGE_DEVICE_TARGET is not set" in done.stderr and "--target" in done.stderr


def test_an_unreadable_env_file_and_bad_task_options_are_refused(c_device: Device, tmp_path: Path) -> None:
    done = c_device.run("send", "--env", tmp_path / "absent.env")
    assert done.returncode == 2 and "--env: cannot read" in done.stderr
    done = c_device.run("encode", "--env", "/dev/null", "--array", "a=<f8:2x2:1,2,3")
    assert done.returncode == 2 and "--array a: the shape holds 4 values, 3 given" in done.stderr
    done = c_device.run("encode", "--env", "/dev/null", "--array", "a=<u2:2:1,-2")
    assert done.returncode == 2 and "--array a: value 1 is not an integer of <u2" in done.stderr
    done = c_device.run("encode", "--env", "/dev/null", "--signal", "1,x")
    assert done.returncode == 2 and "--signal signal: 'x' is not a number" in done.stderr
    done = c_device.run("--every", "soon")
    assert done.returncode == 2 and "--every: 'soon' is not a period" in done.stderr
