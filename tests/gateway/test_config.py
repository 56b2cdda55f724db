"""gateway.toml as `edge-provision bundle` writes it, then EDGE_GATEWAY_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.common.errors import ConfigError
from gateway.config import load_config
from tests.support.fleet import edge_provision


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gw")
    edge_provision("init", root / "fleet", "--name", "t")
    edge_provision("--fleet", root / "fleet", "add", "agent", "node-1")
    edge_provision("--fleet", root / "fleet", "add", "gateway", "gw-1")
    edge_provision("--fleet", root / "fleet", "bundle", "gw-1", "--out", root / "gw-1")
    return root / "gw-1" / "gateway.toml"


def test_the_bundle_file_alone_configures_the_gateway(bundle: Path) -> None:
    config = load_config(bundle, environ={})
    assert (config.name, config.kid, config.http.port, config.mqtt.username) == ("gw-1", "gw-1", 8080, "gw-1")
    assert config.auth.api_clients == bundle.parent / "api-clients.json"
    assert config.signer().kid == "gw-1"
    assert {k.kid for k in config.trust().keys()} == {"node-1"}  # noqa: SIM118 (not a dict)
    assert config.token_key_path == bundle.parent / "data" / "token.key"


def test_variables_override_the_file(bundle: Path, tmp_path: Path) -> None:
    env = {
        "EDGE_GATEWAY_HTTP_PORT": "0",
        "EDGE_GATEWAY_MQTT_PORT": "18883",
        "EDGE_GATEWAY_STORE_DATA_DIR": str(tmp_path),
        "EDGE_GATEWAY_TASKS_DEFAULT_TARGET": "pool:cams",
        "EDGE_GATEWAY_LIMITS_RATE_PER_S": "5",
        "EDGE_MQTT_PORT": "1",  # another program's variable: left alone
    }
    config = load_config(bundle, environ=env)
    assert (config.http.port, config.mqtt.port, config.store.data_dir) == (0, 18883, tmp_path)
    assert (config.tasks.default_target, config.limits.rate_per_s) == ("pool:cams", 5.0)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"EDGE_GATEWAY_HTTP_PROT": "1"}, "EDGE_GATEWAY_HTTP_PROT"),
        ({"EDGE_GATEWAY_HTTP_PORT": "70000"}, "http.port"),
        ({"EDGE_GATEWAY_HTTP_TLS_CERT": "/x.crt"}, "http.tls_cert"),
        ({"EDGE_GATEWAY_TASKS_DEFAULT_TARGET": "a/b"}, "tasks.default_target"),
        ({"EDGE_GATEWAY_AUTH_TOKEN_TTL_S": "0"}, "auth.token_ttl_s"),
    ],
)
def test_a_bad_setting_is_refused_by_name(bundle: Path, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(bundle, environ=env)
    assert key in str(exc.value)


def test_a_file_that_is_not_a_gateways(tmp_path: Path) -> None:
    other = tmp_path / "operator.toml"
    other.write_text('[operator]\nname = "op-1"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(other, environ={})
    assert exc.value.key == "operator"
    bare = tmp_path / "g.toml"
    bare.write_text("[http]\nport = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bare, environ={})
    assert exc.value.key == "gateway.name" and "edge-provision add gateway" in str(exc.value)
