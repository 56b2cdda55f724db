"""The one settings loader (agent/common/settings.py): conversion of each type, ranges, unknown keys
and variables, the order of layers, nested defaults, and a key named in every error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from agent.common.errors import ConfigError, EdgeError
from agent.common.settings import (
    INTERNAL,
    EnvNames,
    Layer,
    build,
    convert,
    env_layer,
    env_name,
    leaf_paths,
    limit,
    nest,
    read_toml,
)


@dataclass(frozen=True)
class Net:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata=limit(1, 65535))
    timeout_s: float = field(default=5.0, metadata=limit(above=0))
    ratio: float = field(default=0.5, metadata=limit(0, 1))
    floor: int = field(default=10, metadata=limit(10))
    tls: bool = False
    ca_file: Path | None = None
    mode: Literal["auto", "5", "3.1.1"] = "auto"
    pools: tuple[str, ...] = ()
    user: str | None = None


def _off() -> Net:
    return Net(tls=True, port=8883)  # a section whose default is not its class's


@dataclass(frozen=True)
class Pair:
    plain: Net = field(default_factory=Net)
    secure: Net = field(default_factory=_off)


@dataclass(frozen=True)
class Root:
    net: Net = field(default_factory=Net)
    pair: Pair = field(default_factory=Pair)
    source: Path | None = field(default=None, metadata=INTERNAL)


SHARED = EnvNames("EDGE_")
OWNED = EnvNames("EDGE_BROKER_", owns_prefix=True, listed_in="see the README")


def _build(*docs: Mapping[str, Any], text: bool = False) -> Root:
    return build(Root, [Layer(doc, text=text) for doc in docs])


# --- conversion of each type ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "value", "text", "expected"),
    [
        (str, "x", False, "x"),
        (int, 7, False, 7),
        (int, "7", True, 7),
        (float, 2, False, 2.0),
        (float, "2.5", True, 2.5),
        (bool, True, False, True),
        (bool, " Yes ", True, True),
        (bool, "off", True, False),
        (Literal["auto", "json"], "json", False, "json"),
        (Literal["auto", "json"], "JSON", True, "json"),  # a text layer's choice in any case
        (tuple[str, ...], ["a", "b"], False, ("a", "b")),
        (tuple[str, ...], " a, b ,, c", True, ("a", "b", "c")),
        (str | None, None, False, None),
        (str | None, "", True, None),  # an empty variable unsets an optional key
        (str | None, "", False, ""),
        (int | None, "3", True, 3),
    ],
)
def test_conversion_of_each_type(hint: Any, value: object, text: bool, expected: object) -> None:
    converted = convert("s.k", hint, value, text=text)
    assert converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize(
    ("hint", "value", "text", "problem"),
    [
        (str, 5, False, "must be a string, got int"),
        (int, "7", False, "must be an integer, got '7'"),  # TOML says what type it is
        (int, "seven", True, "must be an integer, got 'seven'"),
        (int, 1.5, False, "must be an integer, got 1.5"),
        (int, True, False, "must be an integer, got True"),
        (float, "nan", True, "must be finite"),
        (float, float("inf"), False, "must be finite"),
        (float, "fast", True, "must be a number, got 'fast'"),
        (bool, "yes", False, "must be true or false, got 'yes'"),
        (bool, "maybe", True, "must be true or false, got 'maybe'"),
        (bool, 1, True, "must be true or false, got 1"),
        (Literal["auto", "json"], "JSON", False, "must be one of 'auto', 'json', got 'JSON'"),
        (Literal["auto", "json"], "xml", True, "must be one of 'auto', 'json', got 'xml'"),
        (tuple[str, ...], "a,b", False, "must be a list of strings"),
        (tuple[str, ...], ["a", 1], False, "must be a list of strings"),
        (Path, "", False, "must be a non-empty path string"),
        (Path, 3, False, "must be a non-empty path string"),
        (Path | None, "", False, "must be a non-empty path string"),
    ],
)
def test_a_wrong_value_names_its_key(hint: Any, value: object, text: bool, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        convert("s.k", hint, value, text=text)
    assert (caught.value.key, caught.value.problem, str(caught.value)) == ("s.k", problem, f"s.k: {problem}")


def test_paths_are_relative_to_their_layer(tmp_path: Path) -> None:
    assert convert("k", Path, "ca.crt", base=tmp_path) == tmp_path / "ca.crt"
    assert convert("k", Path, "/etc/ca.crt", base=tmp_path) == Path("/etc/ca.crt")
    assert convert("k", Path, "ca.crt") == Path("ca.crt")  # no base: kept as written
    assert convert("k", Path, "~/ca.crt", base=tmp_path) == Path.home() / "ca.crt"
    assert convert("k", Path, tmp_path / "x") == tmp_path / "x"  # a Path from Python code
    doc = {"net": {"ca_file": "ca.crt"}}
    assert build(Root, [Layer(doc, base=tmp_path)]).net.ca_file == tmp_path / "ca.crt"


def test_an_unsupported_type_is_a_bug_of_the_schema() -> None:
    with pytest.raises(TypeError, match="unsupported setting type"):
        convert("k", list[int], [1])


# --- ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("port", 0, "must be from 1 to 65535, got 0"),
        ("port", 70000, "must be from 1 to 65535, got 70000"),
        ("timeout_s", 0, "must be > 0, got 0"),
        ("ratio", 1.5, "must be from 0 to 1, got 1.5"),
        ("floor", 9, "must be >= 10, got 9"),
    ],
)
def test_ranges_from_field_metadata(key: str, value: float, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _build({"net": {key: value}})
    assert (caught.value.key, caught.value.problem) == (f"net.{key}", problem)


def test_a_range_is_checked_on_the_value_that_wins() -> None:
    assert _build({"net": {"port": 0}}, {"net": {"port": 1}}).net.port == 1
    # ... but every value is converted: a wrong type is an error even when overridden
    with pytest.raises(ConfigError, match=r"net\.port: must be an integer"):
        _build({"net": {"port": "x"}}, {"net": {"port": 1}})


def test_the_bounds_of_a_range_are_accepted() -> None:
    net = _build({"net": {"port": 65535, "ratio": 0, "floor": 10}}).net
    assert (net.port, net.ratio, net.floor) == (65535, 0.0, 10)


# --- unknown keys and variables ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "key", "problem"),
    [
        ({"nett": {}}, "nett", "unknown section (known: net, pair)"),
        ({"net": {"prot": 1}}, "net.prot", "unknown setting (known: ca_file, floor, host, mode, "),
        ({"pair": {"plain": {"colour": "red"}}}, "pair.plain.colour", "unknown setting"),
        ({"pair": {"third": {}}}, "pair.third", "unknown section (known: plain, secure)"),
        ({"source": "x.toml"}, "source", "unknown section"),  # an INTERNAL field is no setting
        ({"net": 5}, "net", "must be a table"),
    ],
)
def test_unknown_keys_are_refused(doc: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _build(doc)
    assert caught.value.key == key and caught.value.problem.startswith(problem)


def test_variables_of_a_shared_prefix() -> None:
    """EDGE_<SECTION>_<KEY>: only the schema's sections are read; an unknown key in one is refused."""
    env = {
        "EDGE_NET_PORT": "1884",
        "EDGE_PAIR_SECURE_PORT": "8884",
        "EDGE_FLEET": "x",
        "EDGE_KERNELS_LIB": "y",
    }
    layer = env_layer(Root, env, SHARED)
    assert layer.text and layer.doc == {"net": {"port": "1884"}, "pair": {"secure": {"port": "8884"}}}
    with pytest.raises(ConfigError) as caught:
        env_layer(Root, {"EDGE_NET_COLOUR": "red"}, SHARED)
    assert caught.value.key == "net.colour"
    assert caught.value.problem == "unknown setting (from the environment variable EDGE_NET_COLOUR)"
    ignoring = EnvNames("EDGE_", ignore=frozenset({"EDGE_NET_COLOUR"}))
    assert env_layer(Root, {"EDGE_NET_COLOUR": "red"}, ignoring).doc == {}


def test_variables_of_an_owned_prefix() -> None:
    """EDGE_BROKER_<PATH>: every variable under the prefix must name a setting."""
    layer = env_layer(Root, {"EDGE_BROKER_PAIR_PLAIN_HOST": "::1", "EDGE_NET_PORT": "1"}, OWNED)
    assert layer.doc == {"pair": {"plain": {"host": "::1"}}}
    with pytest.raises(ConfigError) as caught:
        env_layer(Root, {"EDGE_BROKER_PAIR_PORT": "1"}, OWNED)
    assert (caught.value.key, caught.value.problem) == (
        "EDGE_BROKER_PAIR_PORT",
        "unknown setting (see the README)",
    )


def test_names_of_the_variables() -> None:
    assert env_name("EDGE_", "mqtt.keepalive_s") == "EDGE_MQTT_KEEPALIVE_S"
    assert "pair.secure.ca_file" in leaf_paths(Root) and "source" not in leaf_paths(Root)


# --- layers -----------------------------------------------------------------------------------


def test_defaults_then_file_then_environment_then_flags(tmp_path: Path) -> None:
    doc = {"net": {"port": 2000, "host": "file", "user": "file"}}
    env = env_layer(Root, {"EDGE_NET_PORT": "3000", "EDGE_NET_USER": ""}, SHARED, base=tmp_path)
    flags = Layer(nest({"net.port": "4000"}), text=True)
    root = build(Root, [Layer(doc), env, flags], source=tmp_path / "x.toml")
    assert (root.net.port, root.net.host, root.net.user) == (4000, "file", None)
    assert root.net.timeout_s == 5.0 and root.source == tmp_path / "x.toml"
    assert build(Root, [Layer(doc), env]).net.port == 3000
    assert build(Root, []) == Root()


def test_a_section_keeps_its_declared_default_when_one_key_is_set() -> None:
    """`pair.secure` defaults to tls=True on 8883: setting its host keeps both (the broker's TLS
    and WebSocket listeners turned on, on the plain port, when one of their keys was set)."""
    secure = _build({"pair": {"secure": {"host": "::1"}}}).pair.secure
    assert (secure.host, secure.tls, secure.port) == ("::1", True, 8883)


def test_nest_merges_dotted_and_nested_keys() -> None:
    assert nest({"a.b": 1, "a": {"c": 2}, "d": 3}) == {"a": {"b": 1, "c": 2}, "d": 3}


# --- files and the error ----------------------------------------------------------------------


def test_reading_a_toml_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[net]\nport = 1\n")
    assert read_toml(good) == {"net": {"port": 1}}
    cases = {
        tmp_path / "missing.toml": "cannot read",
        tmp_path: "cannot read",  # a directory
        tmp_path / "bad.toml": "is not valid TOML",
        tmp_path / "binary.toml": "is not valid TOML: not UTF-8 text",
    }
    (tmp_path / "bad.toml").write_text("[net\n")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    for path, problem in cases.items():
        with pytest.raises(ConfigError) as caught:
            read_toml(path, key="--config")
        assert caught.value.key == "--config" and problem in caught.value.problem


def test_one_config_error_for_every_component() -> None:
    from agent.node.errors import ConfigError as AgentConfigError
    from agent.tools.errors import ConfigError as ToolsConfigError
    from broker.errors import ConfigError as BrokerConfigError

    assert AgentConfigError is ToolsConfigError is BrokerConfigError is ConfigError
    error = ConfigError("mqtt.port", "must be an integer")
    assert isinstance(error, EdgeError) and error.exit_code == 2 and error.message == str(error)
