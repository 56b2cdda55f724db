"""Configuration: the bundle runs as it is; TOML, EDGE_* variables, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.node.cli import EXIT_CONFIG, main
from agent.node.config import build_config, load_config
from agent.node.errors import ConfigError
from tests.agent.conftest import Site

MINIMAL = {"agent": {"node": "n1"}, "security": {"signing_key": "k", "trust_store": "t"}}


def test_the_bundle_loads_as_written(site: Site) -> None:
    config = load_config(site.bundle(), environ={})
    bundle = site.bundle().parent
    assert config.node == "node-1" and config.agent.pools == ("cams",)
    assert config.mqtt.tls and config.mqtt.ca_file == bundle / "ca.crt"
    assert config.security.signing_key == bundle / "signing.key"
    assert config.agent.data_dir == bundle / "data"  # relative to the file
    assert config.client_id == "node-1"


def test_environment_overrides_the_file_and_other_components_variables_are_ignored() -> None:
    env = {
        "EDGE_MQTT_PORT": "1884",
        "EDGE_AGENT_POOLS": "a, b",
        "EDGE_MQTT_TLS": "false",
        "EDGE_WORKERS_MEMORY_LIMIT_MB": "64",
        "EDGE_KERNELS_BACKEND": "numpy",
        "EDGE_BROKER_LISTENERS_TCP_PORT": "1",
        "EDGE_FLEET": "x",
    }
    config = build_config(MINIMAL, environ=env)
    assert config.mqtt.port == 1884 and config.agent.pools == ("a", "b") and not config.mqtt.tls
    assert config.workers.memory_limit_mb == 64


@pytest.mark.parametrize(
    ("doc", "env", "key"),
    [
        ({"agent": {}}, {}, "agent.node"),
        ({"agent": {"node": "all"}}, {}, "agent.node"),
        ({"agent": {"node": "a/b"}}, {}, "agent.node"),
        ({"agent": {"node": "n", "pools": ["ok", "no pe"]}}, {}, "agent.pools"),
        ({**MINIMAL, "mqtt": {"port": 70000}}, {}, "mqtt.port"),
        ({**MINIMAL, "mqtt": {"port": "1883"}}, {}, "mqtt.port"),
        ({**MINIMAL, "mqtt": {"protocol": "4"}}, {}, "mqtt.protocol"),
        ({**MINIMAL, "mqtt": {"prefix": "a/#"}}, {}, "mqtt.prefix"),
        ({**MINIMAL, "mqtt": {"tls": True}}, {}, "mqtt.ca_file"),
        ({**MINIMAL, "mqtt": {"reconnect_min_s": 5.0, "reconnect_max_s": 1.0}}, {}, "mqtt.reconnect_max_s"),
        ({**MINIMAL, "mqtt": {"colour": "blue"}}, {}, "mqtt.colour"),
        ({**MINIMAL, "nonsense": {}}, {}, "nonsense"),
        ({"agent": {"node": "n"}, "security": {"trust_store": "t"}}, {}, "security.signing_key"),
        (MINIMAL, {"EDGE_WORKERS_COUNT": "two"}, "workers.count"),
        (MINIMAL, {"EDGE_WORKERS_COUNT": "-1"}, "workers.count"),
        (MINIMAL, {"EDGE_STORE_FSYNC": "maybe"}, "store.fsync"),
        (MINIMAL, {"EDGE_MQTT_COLOUR": "blue"}, "mqtt.colour"),
        (MINIMAL, {"EDGE_HEARTBEAT_INTERVAL_S": "0"}, "heartbeat.interval_s"),
        (MINIMAL, {"EDGE_HEARTBEAT_INTERVAL_S": "nan"}, "heartbeat.interval_s"),
        (MINIMAL, {"EDGE_LIMITS_QUEUE_BYTES": "1000"}, "limits.queue_bytes"),  # below its floor
        (MINIMAL, {"EDGE_LIMITS_QUEUE_BYTES": str(1 << 19)}, "limits.queue_bytes"),  # < max_payload
    ],
)
def test_errors_name_the_key(doc: dict, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(doc, environ=env)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


def test_the_cli_reports_a_bad_file_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nnode = "n"\n[mqtt]\nport = "x"\n')
    assert main(["check", "--config", str(path)]) == EXIT_CONFIG
    assert "mqtt.port: must be an integer" in capsys.readouterr().err
    assert main(["check", "--config", str(tmp_path / "missing.toml")]) == EXIT_CONFIG


def test_missing_bundle_files_are_named(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = site.bundle()
    (config_path.parent / "signing.key").unlink()
    assert main(["check", "--config", str(config_path)]) == EXIT_CONFIG
    assert "security.signing_key: cannot read signing key" in capsys.readouterr().err


def test_check_accepts_the_bundle(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(site.bundle())]) == 0
    assert "node node-1" in capsys.readouterr().out
