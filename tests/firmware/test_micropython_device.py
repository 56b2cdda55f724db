"""The MicroPython example (firmware_examples/micropython) on the unix port, against a real agent
and broker (both brokers): it signs a task with mcu-1's HMAC secret from its own bundle's
config.py, publishes it, reads the reply, and prints it. It cannot verify the agent's Ed25519
signature, so the test does, on the envelope it printed, with the device bundle's trust store,
and compares the numbers with numpy."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from agent.protocol import Result, TrustStore, open_agent_message
from tests.agent.conftest import TOPICS, Site
from tests.firmware.micropython import device, start_device
from tests.support.fleet import edge_provision

DEVICE = "mcu-1"


@dataclass
class Reply:
    topic: str
    result: Result
    printed: dict[str, str]


def bundle(site: Site) -> Path:
    """mcu-1's bundle as `edge-provision bundle` writes it (config.py, the TLS files, trust.toml),
    config.py given the ports of the test's broker (fleet.toml has the default ones)."""
    out = site.tmp / f"bundle-{DEVICE}"
    if not out.exists():
        edge_provision("--fleet", site.fleet.root, "bundle", DEVICE, "--out", out)
        ports = f"TCP_PORT = {site.broker.port}\nTLS_PORT = {site.broker.tls_port}\n"
        (out / "config.py").write_text((out / "config.py").read_text() + ports)
    return out


def replies(output: str, trust: TrustStore) -> list[Reply]:
    """Each reply the device printed, its envelope verified with the protocol library."""
    printed: list[tuple[str, dict[str, str]]] = []
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word == "reply":
            printed.append((rest, {}))
        elif printed and word in ("envelope", "status", "result", "error", "signed-by"):
            printed[-1][1][word] = rest
    got = []
    for topic, lines in printed:
        answer = open_agent_message(bytes.fromhex(lines["envelope"]), topic, trust)
        assert isinstance(answer, Result)
        got.append(Reply(topic, answer, lines))
    return got


def sent_ids(output: str) -> list[str]:
    return [line.split()[1] for line in output.splitlines() if line.startswith("sent ")]


def run_device(site: Site, *args: str, target: str | None = "node-1") -> tuple[int, str]:
    """main.py with mcu-1's bundle (which names no target: mcu-1 may task every agent)."""
    out = device("--config", bundle(site), *(("--target", target) if target else ()), *args)
    return out.returncode, out.stdout


def trust(site: Site) -> TrustStore:
    return TrustStore.load(bundle(site) / "trust.toml")


def stats(signal: list[float]) -> dict[str, float]:
    x = np.asarray(signal)
    return {
        "count": len(x),
        "mean": x.mean(),
        "std": x.std(),
        "min": x.min(),
        "max": x.max(),
        "rms": np.sqrt((x * x).mean()),
    }


@pytest.mark.parametrize("transport", ["--tcp", "--tls"])
def test_the_device_sends_a_task_and_prints_the_agents_reply(any_site: Site, transport: str) -> None:
    """Plain MQTT on the loopback listener, and mutual TLS with the bundle's files (mbedTLS)."""
    with any_site.agent():
        code, output = run_device(any_site, transport)
    assert code == 0, output
    [task_id] = sent_ids(output)
    [reply] = replies(output, trust(any_site))
    assert reply.topic == f"{TOPICS.prefix}/replies/{DEVICE}/{task_id}"
    assert (reply.result.id, reply.result.node, reply.result.status) == (task_id, "node-1", "completed")
    assert reply.printed["signed-by"] == "node-1"
    expected = stats([1.0, 2.0, 3.0, 4.0])
    assert reply.result.result.keys() == expected.keys()
    for key, value in expected.items():
        assert reply.result.result[key] == pytest.approx(value, rel=1e-12)
        assert json.loads(reply.printed["result"])[key] == pytest.approx(value, rel=1e-12)


def test_an_ndarray_result_is_decoded_to_nested_lists(site: Site) -> None:
    a = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    b = [[0.5], [-1.0], [2.0]]
    params = json.dumps({"matrix_a": a, "matrix_b": b})
    with site.agent():
        code, output = run_device(site, "--tcp", "--kernel", "matrix_multiply", "--params", params)
    assert code == 0, output
    [reply] = replies(output, trust(site))
    expected = np.asarray(a) @ np.asarray(b)
    np.testing.assert_allclose(reply.result.result, expected, rtol=1e-12)
    assert json.loads(reply.printed["result"]) == expected.tolist()  # ext 1 -> nested lists


def test_a_rejected_task_comes_back_as_rejected(any_site: Site) -> None:
    with any_site.agent():
        code, output = run_device(any_site, "--tcp", "--params", '{"signal": "not numbers"}')
    assert code == 1, output
    [reply] = replies(output, trust(any_site))
    assert reply.result.status == "rejected" and reply.printed["status"] == "rejected"
    assert reply.result.error is not None and reply.result.error["code"] == "invalid_params"
    assert reply.printed["error"].startswith("invalid_params: ")


def test_the_sensor_loop_sends_a_task_every_period(site: Site) -> None:
    with site.agent():
        code, output = run_device(site, "--tcp", "--every", "0.5", "--count", "3")
    assert code == 0, output
    got = replies(output, trust(site))
    assert [r.result.id for r in got] == sent_ids(output) and len(got) == 3
    assert all(r.result.status == "completed" and r.result.result["count"] == 8 for r in got)


def test_the_sensor_loop_goes_on_after_the_broker_restarts(site: Site) -> None:
    """A board runs for months: a broken link between rounds is reported and the next round
    connects again, instead of ending the program."""
    with site.agent():
        proc = start_device(
            "--config", bundle(site), "--target", "node-1", "--tcp", "--every", "1", "--count", "3"
        )
        try:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:  # the first round's reply, then the broker goes away
                lines.append(line)
                if line.startswith("status "):
                    break
            site.broker.restart()
            rest, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "error broker: connection lost" in output
    got = replies(output, trust(site))
    assert len(got) == 3 and all(r.result.status == "completed" for r in got), output


def test_no_agent_no_reply_ends_with_the_timeout_status(site: Site) -> None:
    code, output = run_device(site, "--tcp", "--timeout", "1")
    assert code == 3, output
    assert "timeout: no reply to" in output


def test_an_unreachable_broker_ends_with_the_broker_status(site: Site, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        config = (bundle(site) / "config.py").read_text()
        port = s.getsockname()[1]
        (bundle(site) / "config.py").write_text(config + f"\nTCP_PORT = {port}\n")
        code, output = run_device(site, "--tcp")
    assert code == 4, output
    assert f"error broker: cannot connect to 127.0.0.1:{port}" in output


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("del SECRET", "config.py: SECRET is missing (bytes: the device's HMAC secret"),
        ("SECRET = 'a text, not bytes, at least 16'", "config.py: SECRET must be bytes"),
        ("SECRET = b'short'", "config.py: SECRET must be bytes: the device's HMAC secret, at least 16"),
        ("TCP_PORT = '1883'", "config.py: TCP_PORT must be the broker's plain MQTT port, an int"),
        ("ALG = 'ed25519'", "config.py: ALG must be 'hmac-sha256' (MicroPython has no Ed25519)"),
        ("USE_TLS = 'yes'", "config.py: USE_TLS must be True"),
        ("TARGET = 'a/b'", "config.py: TARGET must be a node id"),
        ("NAME = ", "config.py does not parse"),
    ],
)
def test_a_malformed_config_is_refused_naming_the_setting(site: Site, edit: str, message: str) -> None:
    path = bundle(site) / "config.py"
    path.write_text(path.read_text() + edit + "\n")
    code, output = run_device(site, target=None)
    assert code == 2, output
    assert message in output
    assert "SECRET = b" not in output and "a text" not in output  # never the secret itself


def test_a_task_fits_in_a_small_heap(site: Site) -> None:
    """Footprint guard (README.md of the example): one task from .py sources needs a 73 KB
    MicroPython heap on the 64-bit unix port today; 96 KB leaves room, a bloated change fails."""
    with site.agent():
        out = device("--config", bundle(site), "--target", "node-1", "--tcp", heap="96k")
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ttl", "soon"), "error: --ttl must be a number of seconds"),
        (("--timeout", "-1"), "error: --timeout must be positive"),
        (("--params", "[1, 2]"), "error: --params must be a JSON object"),
        (("--every", "1", "--count", "x"), "error: --count must be a whole number"),
        (("--bogus",), "error: unknown or incomplete argument '--bogus'"),
        (("--kernel",), "error: unknown or incomplete argument '--kernel'"),
    ],
)
def test_bad_arguments_are_refused_before_connecting(site: Site, args: tuple[str, ...], message: str) -> None:
    code, output = run_device(site, *args)
    assert code == 2, output
    assert output.strip().splitlines()[-1].startswith(message)
    assert "sent " not in output
