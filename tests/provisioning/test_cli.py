"""`edge-provision` end to end, as a user runs it: a subprocess of the installed command, real files."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from agent.common import tomlio
from agent.protocol import TrustStore, load_signer
from tests.support.services import require_tool

from .conftest import Run, run_cli, run_main, snapshot


def ok(*args: str | Path, **kw: object) -> Run:
    result = run_cli(*args, **kw)  # type: ignore[arg-type]
    assert result.code == 0, f"edge-provision {' '.join(map(str, args))}: {result.err}"
    OUTPUTS.append(result.out + result.err)
    return result


OUTPUTS: list[str] = []  # everything the CLI printed in this module: checked for secrets


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fleet made through the CLI; tests copy it instead of rebuilding it."""
    root = tmp_path_factory.mktemp("template") / "fleet"
    ok("init", root, "--name", "plant-3")
    ok("add", "agent", "node-1", "--pool", "cams", "--fleet", root)
    ok("add", "device", "--count", "3", "--prefix", "s-", "--fleet", root)
    ok("add", "operator", "alice", "--fleet", root)
    return root


@pytest.fixture
def fleet_copy(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "fleet"
    shutil.copytree(template, copy, symlinks=True)
    return copy


def test_help_explains_every_command_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    top = ok("--help").out
    assert "EDGE_FLEET" in top and "examples:" in top

    def help_of(*args: str) -> str:
        result = run_main(*args, "--help", capsys=capsys)
        assert result.code == 0
        return result.out

    for command in ("init", "add", "bundle", "revoke", "rotate", "list", "show", "broker-files"):
        assert command in top
        sub = help_of(command)
        assert "example" in sub, command
        if command != "add":
            assert "--fleet" in sub, command
    for kind in ("agent", "device", "operator", "dashboard"):
        assert "--fleet" in help_of("add", kind)
    assert "--targets" in help_of("add", "device")
    assert "--pool" in help_of("add", "agent")


def test_init_lays_out_a_private_fleet(tmp_path: Path) -> None:
    root = tmp_path / "f"
    out = ok("init", root, "--prefix", "acme/edge", "--tls-port", "18883", "--ca-alg", "ed25519").out
    assert "created fleet 'f'" in out
    config = tomlio.loads((root / "fleet.toml").read_text())
    assert config["format"] == 1 and config["prefix"] == "acme/edge" and config["tls_port"] == 18883
    assert mode(root) == 0o700
    assert mode(root / "ca" / "ca.key") == 0o600
    assert mode(root / "broker" / "server.key") == 0o600
    assert mode(root / "registry.json") == 0o600
    assert mode(root / "ca" / "ca.crt") == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging directory left"


def test_lifecycle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command as a subprocess; secondary checks in-process (`inproc`) to save start-up time."""
    fleet = tmp_path / "fleet"
    env = {"EDGE_FLEET": str(fleet)}
    monkeypatch.setenv("EDGE_FLEET", str(fleet))

    def inproc(*args: str | Path) -> Run:
        result = run_main(*args, capsys=capsys)
        assert result.code == 0, result.err
        OUTPUTS.append(result.out + result.err)
        return result

    ok("init", "--name", "plant", env=env)
    ok("add", "agent", "node-1", "--pool", "cams", env=env)
    ok("add", "device", "sensor-7", "--targets", "node-1,pool:cams", env=env)
    ok("add", "device", "mcu-1", "--alg", "hmac-sha256", env=env)
    ok("add", "operator", "alice", env=env)
    ok("add", "dashboard", "grafana", env=env)
    bulk = ok("add", "device", "--count", "25", "--prefix", "s-", env=env)
    assert "added 25 devices: s-0001 .. s-0025" in bulk.out
    assert "adding 25/25" in bulk.err

    listed = json.loads(ok("list", "--json", env=env).out)
    assert len(listed) == 30
    assert {i["name"]: i["kind"] for i in listed}["grafana"] == "dashboard"
    assert "s-0025" in inproc("list").out
    assert [i["name"] for i in json.loads(inproc("list", "--kind", "agent", "--json").out)] == ["node-1"]
    shown = json.loads(ok("show", "node-1", "--json", env=env).out)
    assert shown["pools"] == ["cams"] and shown["status"] == "active"
    assert {"access": "read", "topic": "$share/cams/edge/tasks/pool/cams"} in shown["broker"]["grants"]
    assert "targets:     node-1, pool:cams" in inproc("show", "sensor-7").out

    agent = tmp_path / "node-1"
    ok("bundle", "node-1", "--out", agent, env=env)
    check_agent_bundle(agent)
    archive = tmp_path / "sensor-7.tar.gz"
    ok("bundle", "sensor-7", "--archive", archive, env=env)
    check_device_archive(archive, tmp_path / "unpacked")

    ok("rotate", "mcu-1", "--overlap", "1h", env=env)
    inproc("rotate", "alice", "--until", "2099-01-01T00:00:00Z")
    keys = json.loads(ok("show", "mcu-1", "--json", env=env).out)["keys"]
    assert [(k["generation"], k["current"]) for k in keys] == [(1, False), (2, True)]
    assert keys[0]["not_after"] is not None and keys[1]["not_before"] is not None

    revoked = ok("revoke", "sensor-7", env=env)
    assert "revoked device sensor-7" in revoked.out
    assert "already revoked" in inproc("revoke", "sensor-7").out
    assert json.loads(inproc("show", "sensor-7", "--json").out)["status"] == "revoked"

    broker = tmp_path / "broker"
    ok("broker-files", "--out", broker, env=env)
    logins = json.loads((broker / "dynamic-security.json").read_text())
    assert "sensor-7" not in {c["username"] for c in logins["clients"]} | {
        r["rolename"] for r in logins["roles"]
    }
    assert "mcu-1" in {c["username"] for c in logins["clients"]}
    assert mode(broker / "dynamic-security.json") == 0o600  # it holds the password hashes
    assert not (broker / "passwd").exists() and not (broker / "acl").exists()
    inproc("broker-files", "--format", "amqtt", "--out", tmp_path / "amqtt")

    for path in fleet.rglob("*"):
        if path.suffix in (".key", ".password"):
            assert mode(path) == 0o600, path
    assert_no_secret_printed(fleet, [agent, tmp_path / "unpacked"])


def check_agent_bundle(agent: Path) -> None:
    files = {p.name: mode(p) for p in agent.iterdir()}
    assert files == {
        "agent.toml": 0o644,
        "signing.key": 0o600,
        "tls.key": 0o600,
        "tls.crt": 0o644,
        "ca.crt": 0o644,
        "broker.password": 0o600,
        "trust.toml": 0o600,  # mcu-1's HMAC secret is in it
    }
    config = tomlio.loads((agent / "agent.toml").read_text())
    assert config["agent"] == {"node": "node-1", "pools": ["cams"], "data_dir": "data"}
    assert config["mqtt"] == {
        "host": "127.0.0.1",
        "port": 8883,
        "tls": True,
        "ca_file": "ca.crt",
        "cert_file": "tls.crt",
        "key_file": "tls.key",
        "username": "node-1",
        "password_file": "broker.password",
        "prefix": "edge",
    }
    assert config["security"] == {"signing_key": "signing.key", "trust_store": "trust.toml"}
    assert load_signer(agent / config["security"]["signing_key"], "node-1").alg == "ed25519"
    trust = TrustStore.load(agent / "trust.toml")
    kids = {k.kid for k in TrustStore.keys(trust)}
    assert kids == {"sensor-7", "mcu-1", "alice"} | {f"s-{i:04d}" for i in range(1, 26)}


def check_device_archive(archive: Path, into: Path) -> None:
    assert mode(archive) == 0o600
    with tarfile.open(archive) as tar:
        members = {m.name: stat.S_IMODE(m.mode) for m in tar.getmembers()}
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12
            tar.extractall(into, filter="data")
        else:  # pragma: no cover
            tar.extractall(into)  # our own archive
    assert members == {
        "sensor-7": 0o700,
        "sensor-7/device.toml": 0o644,
        "sensor-7/signing.key": 0o600,
        "sensor-7/tls.key": 0o600,
        "sensor-7/tls.crt": 0o644,
        "sensor-7/ca.crt": 0o644,
        "sensor-7/broker.password": 0o600,
        "sensor-7/trust.toml": 0o644,
        "sensor-7/device.env": 0o644,
    }
    config = tomlio.loads((into / "sensor-7" / "device.toml").read_text())
    assert config["device"] == {"name": "sensor-7", "targets": ["node-1", "pool:cams"]}
    assert config["security"] == {
        "signing_key": "signing.key",
        "kid": "sensor-7",
        "alg": "ed25519",
        "trust_store": "trust.toml",
    }
    env = (into / "sensor-7" / "device.env").read_text().splitlines()
    assert "EDGE_DEVICE_TARGET=node-1" in env and "EDGE_SECURITY_KID=sensor-7" in env
    assert config["mqtt"]["username"] == "sensor-7" and config["mqtt"]["prefix"] == "edge"


def assert_no_secret_printed(fleet: Path, bundles: list[Path]) -> None:
    secrets: set[str] = set()
    for root in [fleet, *bundles]:
        for path in root.rglob("*"):
            if path.is_file() and (path.suffix in (".key", ".password")):
                for line in path.read_text().splitlines():
                    if line and not line.startswith("-----"):
                        secrets.add(line.strip())
    assert len(secrets) > 20
    printed = "\n".join(OUTPUTS)
    assert "PRIVATE KEY" not in printed
    leaked = [s for s in secrets if s in printed]
    assert not leaked, "private material on stdout/stderr"


@pytest.mark.parametrize("alg", ["ecdsa-p256", "ed25519", "rsa-2048"])
def test_certificates_pass_openssl_verify(
    tmp_path: Path, alg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    openssl = require_tool("openssl")
    fleet = tmp_path / "fleet"
    commands: list[list[str | Path]] = [
        ["init", fleet, "--ca-alg", alg],
        ["add", "agent", "node-1", "--fleet", fleet],
        ["add", "device", "d", "--fleet", fleet],
        ["bundle", "node-1", "--out", tmp_path / "b", "--fleet", fleet],
    ]
    for args in commands:
        assert run_main(*args, capsys=capsys).code == 0
    certs = [
        tmp_path / "b" / "tls.crt",
        fleet / "identities" / "d" / "tls-1.crt",
        fleet / "broker" / "server.crt",
    ]
    for cert in certs:
        check = subprocess.run(
            [openssl, "verify", "-CAfile", str(fleet / "ca" / "ca.crt"), str(cert)],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0 and check.stdout.strip().endswith(": OK"), check.stdout + check.stderr
    subject = subprocess.run(
        [openssl, "x509", "-noout", "-subject", "-ext", "extendedKeyUsage", "-in", str(certs[0])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CN = node-1" in subject and "TLS Web Client Authentication" in subject
    server = subprocess.run(
        [openssl, "x509", "-noout", "-ext", "subjectAltName", "-in", str(certs[2])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in server and "DNS:localhost" in server


BAD_INPUT = [
    (["add", "agent", "bad/name"], 2, "must match"),
    (["add", "agent", "all"], 2, "task target of its own"),
    (["add", "device", "x" * 65], 2, "must match"),
    (["add", "device", "node-1"], 2, "agent 'node-1' already exists; use --force"),
    (["add", "device", "--count", "5", "--prefix", "s-"], 2, "'s-0001' already exists (and 2 more)"),
    (["add", "device", "x", "--targets", "pool:"], 2, "pool name must match"),
    (["add", "device", "x", "--targets", "node-1,a/b"], 2, "is not a node id"),
    (["add", "agent", "x", "--pool", "bad pool"], 2, "pool 'bad pool'"),
    (["add", "agent", "x", "--count", "2"], 2, "either a NAME or --count"),
    (["add", "agent"], 2, "give a NAME"),
    (["add", "operator", "x", "--targets", "node-1"], 2, "unrecognized arguments"),
    (["show", "nobody"], 2, "no identity called 'nobody'"),
    (["bundle", "nobody"], 2, "no identity called 'nobody'"),
    (["revoke", "nobody"], 2, "no identity called 'nobody'"),
    (["rotate", "nobody"], 2, "no identity called 'nobody'"),
    (["rotate", "node-1", "--until", "2001-01-01T00:00:00Z"], 2, "in the past"),
    (["rotate", "node-1", "--overlap", "soon"], 2, "is not like 90s"),
    (["rotate", "node-1", "--alg", "hmac-sha256"], 2, "devices only"),
    (["broker-files", "--tls-port", "0"], 2, "not a TCP port"),
    (["broker-files", "--run-as", "no-such-user-x"], 2, "no such user"),
    (["broker-files", "--install-dir", "etc/mosquitto"], 2, "must be an absolute path"),
    (
        ["broker-files", "--plugin-path", "lib/dynsec.so"],
        2,
        "--plugin-path lib/dynsec.so must be an absolute",
    ),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_INPUT, ids=[" ".join(a) for a, _, _ in BAD_INPUT])
def test_bad_input_changes_nothing(
    fleet_copy: Path,
    args: list[str],
    code: int,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process through cli.main (the same code path as the command, without 0.7 s of start-up each)."""
    monkeypatch.chdir(fleet_copy.parent)
    before = snapshot(fleet_copy)
    result = run_main(*args, "--fleet", fleet_copy, capsys=capsys)
    assert result.code == code, result.err
    assert message in result.err
    assert result.err.startswith("edge-provision: error: ") or "usage:" in result.err
    assert snapshot(fleet_copy) == before
    assert sorted(p.name for p in fleet_copy.parent.iterdir()) == ["fleet"], "nothing written beside it"


def test_init_refuses_an_existing_fleet_or_a_non_empty_directory(fleet_copy: Path, tmp_path: Path) -> None:
    before = snapshot(fleet_copy)
    result = run_cli("init", fleet_copy)
    assert result.code == 1 and "already a fleet directory" in result.err
    assert snapshot(fleet_copy) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = run_cli("init", other)
    assert result.code == 1 and "is not empty" in result.err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("case", ["missing", "foreign", "wrong-format"])
def test_commands_refuse_what_is_not_a_fleet(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "dir"
    if case != "missing":
        target.mkdir()
        (target / "data.txt").write_text("not a fleet")
    if case == "wrong-format":
        (target / "fleet.toml").write_text('format = 9\nname = "x"\n')
    before = snapshot(target) if target.exists() else None
    for args in (
        ["list"],
        ["add", "agent", "n"],
        ["revoke", "n"],
        ["broker-files", "--out", str(tmp_path / "b")],
    ):
        result = run_main(*args, "--fleet", target, capsys=capsys)
        assert result.code == 1, result.err
        expected = {
            "missing": "is not a directory",
            "foreign": "has no fleet.toml",
            "wrong-format": "format 1",
        }
        assert expected[case] in result.err
    assert (snapshot(target) if target.exists() else None) == before
    assert not (tmp_path / "b").exists()


def test_force_replaces_an_identity(fleet_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = json.loads(run_main("show", "s-0001", "--json", "--fleet", fleet_copy, capsys=capsys).out)
    assert run_main("add", "agent", "s-0001", "--force", "--fleet", fleet_copy, capsys=capsys).code == 0
    new = json.loads(run_main("show", "s-0001", "--json", "--fleet", fleet_copy, capsys=capsys).out)
    assert new["kind"] == "agent" and new["generation"] == 2
    assert new["key_fingerprint"] != old["key_fingerprint"]
    assert sorted(p.name for p in (fleet_copy / "identities" / "s-0001").iterdir()) == [
        "broker-2.password",
        "signing-2.key",
        "tls-2.crt",
        "tls-2.key",
    ]


def test_bundle_refuses_to_overwrite(
    fleet_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b"
    assert run_main("bundle", "node-1", "--out", out, "--fleet", fleet_copy, capsys=capsys).code == 0
    again = run_main("bundle", "node-1", "--out", out, "--fleet", fleet_copy, capsys=capsys)
    assert again.code == 2 and "--force" in again.err
    assert (
        run_main("bundle", "node-1", "--out", out, "--force", "--fleet", fleet_copy, capsys=capsys).code == 0
    )


def test_fleet_option_before_the_command_and_init_into_an_empty_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_main("init", empty, capsys=capsys).code == 0
    assert (empty / "fleet.toml").is_file()
    assert run_main("--fleet", empty, "add", "dashboard", "d", capsys=capsys).code == 0
    assert "dashboard" in run_main("--fleet", empty, "list", capsys=capsys).out


def test_amqtt_files_load_in_the_embedded_broker_settings(fleet_copy: Path, tmp_path: Path) -> None:
    """The files `--format amqtt` writes are what broker/config.py reads (skipped until it exists)."""
    config = pytest.importorskip("broker.config")
    if not hasattr(config, "load_settings"):
        pytest.skip("broker.config has no load_settings yet")
    out = tmp_path / "amqtt"
    ok("broker-files", "--format", "amqtt", "--out", out, "--tls-port", "18883", "--fleet", fleet_copy)
    settings = config.load_settings(overrides={"fleet_files": str(out)})
    assert settings.listeners.tls.port == 18883 and settings.listeners.tls.require_certificate
    assert settings.listeners.tls.cafile == out / "ca.crt"
    assert settings.protocol.prefix == "edge"  # which tasks and control topics are never retained
    assert set(settings.load_passwords().users) == {"node-1", "alice", "s-0001", "s-0002", "s-0003"}
    acl = settings.load_acl()
    assert acl.can_subscribe("node-1", "$share/cams/edge/tasks/pool/cams")
    assert acl.can_receive("node-1", "edge/tasks/pool/cams")
    assert not acl.can_subscribe("node-1", "edge/#")
    assert acl.can_publish("s-0001", "edge/tasks/node-1") and not acl.can_publish(
        "s-0001", "edge/control/node-1"
    )


def test_both_formats_bound_the_brokers_resources(fleet_copy: Path, tmp_path: Path) -> None:
    """The same bounds in `broker.toml` (read by broker/config.py) and in `mosquitto.conf` (started
    by a real Mosquitto in test_mosquitto.py, which refuses an unknown or bad option)."""
    from broker.config import load_settings

    ok("broker-files", "--format", "amqtt", "--out", tmp_path / "amqtt", "--fleet", fleet_copy)
    ok("broker-files", "--format", "mosquitto", "--out", tmp_path / "mosq", "--fleet", fleet_copy)
    limits = load_settings(overrides={"fleet_files": str(tmp_path / "amqtt")}).limits
    conf = (tmp_path / "mosq" / "mosquitto.conf").read_text().splitlines()
    assert (limits.max_queued_messages, limits.max_queued_bytes) == (10_000, 64 << 20)
    assert (limits.session_expiry_s, limits.agent_session_expiry_s) == (86_400, 0)
    assert limits.max_connections == 1000  # edge-broker: every listener together
    assert {
        "max_queued_messages 10000",
        f"max_queued_bytes {64 << 20}",
        "persistent_client_expiration 30d",
    } <= set(conf)
    assert conf.count("max_connections 10000") == 2  # Mosquitto counts per listener
