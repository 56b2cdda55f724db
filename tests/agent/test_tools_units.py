"""The client tools' parts that need no broker: parameters and files, configuration layers,
the command line, progress output, rendering."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from agent.protocol import Result
from agent.tools.errors import ConfigError, UsageError
from agent.tools.params import build_params, load_param_file, parse_duration, parse_when
from agent.tools.progress import Progress
from agent.tools.render import describe_result, dumps
from agent.tools.settings import load_client_config
from agent.tools.submit import with_default_command

OPERATOR = """
[operator]
name = "op-1"

[mqtt]
host = "broker.example"
port = 8883
tls = true
ca_file = "ca.crt"
username = "op-1"
password_file = "broker.password"

[security]
signing_key = "signing.key"
kid = "op-1"
alg = "ed25519"
trust_store = "trust.toml"
"""


def test_csv_files_give_1d_or_2d_float_arrays(tmp_path: Path) -> None:
    row, column, matrix = tmp_path / "row.csv", tmp_path / "col.csv", tmp_path / "m.csv"
    row.write_text("1,2.5,3\n")
    column.write_text("# a column\n1\n2\n3\n4\n")
    matrix.write_text("1,2\n3,4\n5,6\n")
    assert load_param_file(row, "x").tolist() == [1.0, 2.5, 3.0]
    assert load_param_file(column, "x").shape == (4,)
    m = load_param_file(matrix, "x")
    assert m.shape == (3, 2) and m.dtype == np.float64
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,x\n")
    with pytest.raises(UsageError, match=r"--param-file signal: .*bad.csv is not a valid csv file"):
        build_params(None, [], [f"signal={bad}"])


def test_npy_dtypes_are_sent_as_protocol_dtypes(tmp_path: Path) -> None:
    for dtype, sent in (
        ("float16", "<f8"),
        ("<f4", "<f4"),
        (">f8", ">f8"),
        ("uint32", "<i8"),
        ("bool", "|u1"),
    ):
        path = tmp_path / f"{dtype.strip('<>')}.npy"
        np.save(path, np.arange(3).astype(dtype))
        assert load_param_file(path, "x").dtype.str == sent
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    with pytest.raises(UsageError, match="cannot be sent; use numbers"):
        load_param_file(tmp_path / "text.npy", "x")
    with pytest.raises(UsageError, match=r"must end in \.npy, \.csv, \.txt or \.json"):
        load_param_file(tmp_path / "data.bin", "x")


def test_params_layers_and_values(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"signal": [1, 2], "bins": 4}')
    params = build_params(f"@{tmp_path / 'p.json'}", ["bins=8", "label=hello", "range=[0, 1]"])
    assert params == {"signal": [1, 2], "bins": 8, "label": "hello", "range": [0, 1]}
    with pytest.raises(UsageError, match="must be a JSON object"):
        build_params("[1, 2]")
    with pytest.raises(UsageError, match="NAME=VALUE"):
        build_params(None, ["=3"])


def test_times_and_durations() -> None:
    assert parse_duration("90") == 90 and parse_duration("1h30m") == 5400 and parse_duration("2d") == 172800
    assert parse_when("+10m", now=1000.0) == 1600.0 and parse_when("now", now=5.0) == 5.0
    assert parse_when("2027-01-31T12:00:00Z") == 1801396800.0 == parse_when("1801396800")
    assert parse_when("2027-01-31T13:00:00+01:00") == 1801396800.0
    with pytest.raises(UsageError, match="not like 90"):
        parse_duration("soon")
    with pytest.raises(UsageError, match="no UTC offset"):
        parse_when("2027-01-31T12:00:00")


def test_config_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "operator.toml"
    path.write_text(OPERATOR)
    config = load_client_config(path, environ={})
    assert config.role == "operator" and config.kid == "op-1" and config.mqtt.port == 8883
    assert config.security.trust_store == tmp_path / "trust.toml"  # relative to the file
    env = {"EDGE_MQTT_PORT": "1883", "EDGE_MQTT_HOST": "10.0.0.2", "EDGE_SUBMIT_NODE": "node-7"}
    env["EDGE_SECURITY_CLOCK_SKEW_S"] = "30"  # the agent's key: ignored here, not an error
    config = load_client_config(path, environ=env, flags={"mqtt.port": "11883"})
    assert (config.mqtt.host, config.mqtt.port, config.submit.node) == ("10.0.0.2", 11883, "node-7")
    assert config.client_id("submit").startswith("op-1-submit-")
    assert config.client_id("submit") != config.client_id("submit")


def test_the_environment_alone_gives_a_client_its_keys(tmp_path: Path) -> None:
    """The variables the tools' own errors advise (EDGE_SECURITY_SIGNING_KEY, ...) are read; only
    the agent's keys that a client has no use for are left alone. They were all ignored before."""
    env = {
        "EDGE_SECURITY_SIGNING_KEY": "op.key",
        "EDGE_SECURITY_TRUST_STORE": str(tmp_path / "trust.toml"),
        "EDGE_SECURITY_KID": "op-1",
        "EDGE_SECURITY_MAX_PAYLOAD": "2048",  # the agent's: not an error here
    }
    config = load_client_config(None, environ=env)
    assert config.security.signing_key == Path.cwd() / "op.key"  # relative to the working directory
    assert config.security.trust_store == tmp_path / "trust.toml"
    assert config.kid == "op-1"


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        (OPERATOR, {"EDGE_MQTT_PORT": "0"}, "mqtt.port: must be from 1 to 65535"),
        (OPERATOR, {"EDGE_SUBMIT_TTL_S": "-1"}, "submit.ttl_s: must be > 0"),
        (OPERATOR, {"EDGE_WATCH_FORMAT": "html"}, "watch.format: must be one of"),
        (OPERATOR + "\n[extra]\nx = 1\n", {}, "extra: unknown section"),
        (OPERATOR.replace("port = 8883", "port = 8883\nprt = 1"), {}, "mqtt.prt: unknown setting"),
        ('[agent]\nnode = "node-1"\n', {}, "is an agent's configuration"),
        (OPERATOR.replace('ca_file = "ca.crt"\n', ""), {}, "mqtt.ca_file: is required when mqtt.tls is true"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, environ: dict[str, str], message: str) -> None:
    path = tmp_path / "operator.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_client_config(path, environ=environ)


def test_missing_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "operator.toml"
    path.write_text(OPERATOR)
    config = load_client_config(path, environ={})
    with pytest.raises(ConfigError, match=r"security.signing_key: cannot load .*signing.key"):
        config.signer()
    with pytest.raises(ConfigError, match=r"security.trust_store: .*trust.toml"):
        config.trust()
    with pytest.raises(ConfigError, match="config: cannot read"):
        load_client_config(tmp_path / "nope.toml", environ={})
    bare = load_client_config(None, environ={})
    with pytest.raises(ConfigError, match="no signing key: pass --config"):
        bare.signer()


def test_task_is_the_default_subcommand() -> None:
    assert with_default_command(["-c", "op.toml", "--kernel", "stats"]) == [
        "task",
        "-c",
        "op.toml",
        "--kernel",
        "stats",
    ]
    assert with_default_command(["--config=op.toml", "batch", "f"]) == ["--config=op.toml", "batch", "f"]
    assert with_default_command(["--no-tls", "-c", "x", "control", "drain"])[0] == "--no-tls"
    assert with_default_command(["--kernel", "batch"])[0] == "task"  # a kernel named like a subcommand
    assert with_default_command(["--help"]) == ["--help"]


def test_progress_bar_on_a_terminal_and_lines_elsewhere() -> None:
    tty, plain = io.StringIO(), io.StringIO()
    bar, lines = Progress("published", 20, tty, tty=True), Progress("published", 20, plain, tty=False)
    for _ in range(20):
        bar.advance()
        lines.advance()
    bar.finish()
    lines.finish()
    assert "\r" in tty.getvalue() and "[##############################] 20/20" in tty.getvalue()
    assert plain.getvalue().splitlines() == [f"published {2 * i}/20 ({10 * i}%)" for i in range(1, 11)]


def test_results_for_people_and_for_scripts() -> None:
    big = np.arange(100, dtype=np.float64).reshape(10, 10)
    result = Result("t-1", "node-1", "stats", "completed", 1, 1, 0.0, 0.0, 0.0, 1.25, {"out": big, "n": 3})
    text = describe_result(result)
    assert "t-1 stats completed (run 1, attempt 1) 1.25 ms" in text
    assert "out: float64 (10, 10) [0, 1, 2, 3, 4, 5, ... (94 more)]" in text and "n: 3" in text
    assert "99" in describe_result(result, full=True)
    doc = json.loads(dumps({"out": big, "nonce": b"\x01\x02"}))
    assert doc["out"][9][9] == 99.0 and doc["nonce"] == "0102"
    failed = Result(
        "t-2", "node-1", "stats", "abandoned", 1, 3, 0.0, error={"code": "timeout", "message": "30 s"}
    )
    assert describe_result(failed).endswith("error: timeout: 30 s")
