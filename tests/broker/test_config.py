"""Configuration: layers, environment variables, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.common import tomlio
from broker.cli import main
from broker.config import load_settings, settings_from
from broker.credentials import hash_password
from broker.errors import ConfigError

ANON = {"auth.allow_anonymous": True}


def test_defaults_are_loopback_and_safe() -> None:
    settings = settings_from(ANON)
    assert (settings.listeners.tcp.host, settings.listeners.tcp.port) == ("127.0.0.1", 1883)
    assert not settings.listeners.tls.enabled and not settings.listeners.ws.enabled
    assert settings.persistence.data_dir is None
    limits = settings.limits  # sessions of non-agents expire after a day; agents' are kept
    assert (limits.session_expiry_s, limits.agent_session_expiry_s) == (86_400, 0)
    with pytest.raises(ConfigError, match="nobody could connect"):
        settings_from({})


def test_layers_toml_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(
        "[listeners.tcp]\nport = 2000\n[auth]\nallow_anonymous = true\n[limits]\nmax_queued_messages = 7\n"
    )
    env = {"EDGE_BROKER_LISTENERS_TCP_PORT": "3000", "EDGE_BROKER_PERSISTENCE_FSYNC": "false"}
    settings = load_settings(config, environ=env, overrides={"limits.max_inflight_messages": 5})
    assert settings.listeners.tcp.port == 3000
    assert settings.limits.max_queued_messages == 7 and settings.limits.max_inflight_messages == 5
    assert settings.persistence.fsync is False
    assert (
        load_settings(config, environ={}, overrides={"listeners.tcp.port": 4000}).listeners.tcp.port == 4000
    )


def test_fleet_files_directory_supplies_passwords_acl_and_relative_paths(tmp_path: Path) -> None:
    fleet = tmp_path / "broker-files"
    fleet.mkdir()
    (fleet / "passwd").write_text(f"node-1:{hash_password('pw')}\n")
    (fleet / "acl.toml").write_text('[users."node-1"]\npublish = []\nsubscribe = ["edge/tasks/node-1"]\n')
    (fleet / "broker.toml").write_text('[persistence]\ndata_dir = "data"\n')
    settings = load_settings(None, environ={"EDGE_BROKER_FLEET_FILES": str(fleet)})
    assert settings.auth.password_file == fleet / "passwd"
    assert settings.auth.acl_file == fleet / "acl.toml"
    assert settings.persistence.data_dir == fleet / "data"


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"listeners.tcp.port": 70000}, "listeners.tcp.port"),
        ({"listeners.tcp.port": "eighty"}, "listeners.tcp.port"),
        ({"listeners.tcp.colour": "red"}, "listeners.tcp.colour"),
        ({"limits.max_inflight_messages": 0}, "limits.max_inflight_messages"),
        ({"log.format": "xml"}, "log.format"),
        ({"listeners.tls.enabled": True}, "listeners.tls.certfile"),
        (
            {
                "listeners.tls.enabled": True,
                "listeners.tls.certfile": "/nope",
                "listeners.tls.keyfile": "/nope",
            },
            "listeners.tls.certfile",
        ),
        ({"listeners.tcp.enabled": False}, "listeners"),
        ({"auth.password_file": "/does/not/exist"}, "auth.password_file"),
        ({"persistence.fsync": "perhaps"}, "persistence.fsync"),
        ({"persistence.ack_wait_ms": -1}, "persistence.ack_wait_ms"),
    ],
)
def test_errors_name_the_key(doc: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from({**ANON, **doc})
    assert caught.value.key == key
    assert str(caught.value).startswith(key + ":")


def test_a_listener_keeps_the_defaults_of_the_keys_not_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TLS listener requires client certificates unless told otherwise (README), and a listener
    is off until enabled. Setting one key of a listener used to rebuild it from the class defaults:
    mutual TLS silently off, a WebSocket listener turned on at port 1883."""
    for name in ("server.crt", "server.key", "ca.crt"):  # only their existence is checked here
        (tmp_path / name).write_text("-")
    files = {"certfile": "server.crt", "keyfile": "server.key", "cafile": "ca.crt"}
    tls = {"enabled": True, "port": 8884, **files}
    config = tmp_path / "broker.toml"
    config.write_text(tomlio.dumps({"listeners": {"tls": tls}, "auth": {"allow_anonymous": True}}))
    env = {"EDGE_BROKER_LISTENERS_WS_HOST": "127.0.0.2"}
    monkeypatch.chdir(tmp_path)  # the paths of --config are relative to the working directory
    listeners = load_settings(config, environ=env).listeners
    tls_on, ws = listeners.tls, listeners.ws
    assert (tls_on.enabled, tls_on.port, tls_on.require_certificate) == (True, 8884, True)
    assert (ws.enabled, ws.host, ws.port) == (False, "127.0.0.2", 9001)


@pytest.mark.parametrize("key", ["limits.max_queued_bytes", "limits.max_retained_bytes"])
def test_a_byte_bound_is_off_or_holds_a_whole_packet(key: str) -> None:
    for value in (1000, -1):  # less than limits.max_packet_size: not even one message would fit
        with pytest.raises(ConfigError) as caught:
            settings_from({**ANON, key: value})
        assert caught.value.key == key and "at least limits.max_packet_size" in caught.value.problem
    assert settings_from({**ANON, key: 0}) and settings_from({**ANON, key: 2 << 20})


def test_unknown_environment_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="EDGE_BROKER_LISTENER_PORT"):
        load_settings(None, environ={"EDGE_BROKER_LISTENER_PORT": "1"})


def test_cli_check_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--allow-anonymous", "--bind", "127.0.0.1:1999", "--check"]) == 0
    assert "listener tcp: 127.0.0.1:1999" in capsys.readouterr().out
    assert main(["--bind", "nonsense", "--allow-anonymous", "--check"]) == 2
    assert "--bind" in capsys.readouterr().err
    assert main(["--check"]) == 2
    assert "edge-broker: error: auth: nobody could connect" in capsys.readouterr().err


def test_a_fleet_directory_is_not_its_broker_files(tmp_path: Path) -> None:
    (tmp_path / "fleet.toml").write_text("format = 1\n")
    with pytest.raises(ConfigError, match="broker-files --format amqtt"):
        load_settings(None, environ={}, overrides={"fleet_files": str(tmp_path)})
