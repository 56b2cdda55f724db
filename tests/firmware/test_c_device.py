"""edge-device (firmware_examples/c) against a real agent and a real broker (the embedded one and
Mosquitto), with the files `edge-provision bundle` writes for the device: it signs a task, reads
its reply on `{p}/replies/{kid}/{id}`, verifies it and prints it; the test checks the numbers with
numpy. Ed25519 and HMAC devices; forged replies; the sensor loop across a broker restart; the
aarch64 and armhf builds under qemu-user.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from agent.protocol import load_signer, seal
from tests.agent.conftest import TIMEOUT, TOPICS, Site
from tests.firmware.c_device import Device
from tests.support.fleet import edge_provision


def device_env(site: Site, name: str) -> Path:
    out = site.tmp / f"bundle-{name}"
    if not out.exists():
        edge_provision("--fleet", site.fleet.root, "bundle", name, "--out", out)
    return out / "device.env"


def send(
    device: Device, site: Site, name: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """One task from `name`'s bundle; the test broker's port replaces the bundle's (a flag wins)."""
    env = device_env(site, name)
    return device.run("--env", env, "--port", str(site.broker.tls_port), "--json", *args, timeout=timeout)


def matrices() -> tuple[np.ndarray, np.ndarray]:
    a = np.arange(6, dtype=np.float64).reshape(2, 3) / 3
    b = np.array([[1.5, -2.0], [0.25, 4.0], [-1.0, 0.125]])
    return a, b


def matrix_options(a: np.ndarray, b: np.ndarray) -> list[str]:
    """matrix_a as an ndarray (ext 1 `<f8`), matrix_b as a plain nested list."""
    return [
        "--kernel", "matrix_multiply",
        "--array", f"matrix_a=<f8:{a.shape[0]}x{a.shape[1]}:{','.join(map(repr, a.ravel().tolist()))}",
        "--list", f"matrix_b={b.shape[0]}x{b.shape[1]}:{','.join(map(repr, b.ravel().tolist()))}",
    ]  # fmt: skip


def assert_completed(done: subprocess.CompletedProcess[str], node: str = "node-1") -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    result: dict[str, Any] = json.loads(line)
    assert (result["node"], result["status"]) == (node, "completed")
    return result


@pytest.mark.parametrize("name", ["sensor-1", "mcu-1"])
def test_a_device_sends_a_task_and_prints_its_verified_result(
    any_site: Site, c_device: Device, name: str
) -> None:
    """Ed25519 (sensor-1) and HMAC (mcu-1) devices; an ndarray param and a plain list."""
    site = any_site
    a, b = matrices()
    watcher = site.watch(f"{TOPICS.prefix}/results/node-1/#")
    with site.agent():
        product = assert_completed(send(c_device, site, name, "--target", "node-1", *matrix_options(a, b)))
        stats = assert_completed(send(c_device, site, name, "--target", "node-1", "--signal", "1,2.5,4,-3.5"))
        seen = {r.id for r in site.results(watcher, 2)}
    np.testing.assert_allclose(np.array(product["result"]), a @ b, rtol=1e-12)
    signal_ = np.array([1, 2.5, 4, -3.5])
    assert stats["result"]["count"] == 4
    np.testing.assert_allclose(
        [stats["result"][k] for k in ("mean", "std", "min", "max")],
        [signal_.mean(), signal_.std(), signal_.min(), signal_.max()],
        rtol=1e-12,
    )
    assert seen == {product["id"], stats["id"]}  # the dashboard saw the same tasks, by the agent's word


def test_a_rejected_task_exits_1_with_the_agents_reason(site: Site, c_device: Device) -> None:
    with site.agent():
        done = send(
            c_device, site, "sensor-1", "--target", "node-1", "--kernel", "no_such_kernel", "--signal", "1"
        )
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert (result["status"], result["error"]["code"]) == ("rejected", "unknown_kernel")


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = TIMEOUT) -> str:
    """stderr lines until one holds `text` (the program has subscribed and published by then)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            line = proc.stderr.readline()
            seen.append(line)
            if text in line:
                return line
            if line == "" and proc.poll() is not None:
                break
    raise AssertionError(f"no {text!r} on stderr: {''.join(seen)}")


def forged_replies(site: Site, task_id: str) -> list[bytes]:
    """What node-2 (an agent, so it may write replies topics) can forge for node-1's reply."""
    [node2_key] = sorted((site.fleet.root / "identities" / "node-2").glob("signing-*.key"))
    body = msgpack.packb(
        {"id": task_id, "node": "node-1", "kernel": "stats", "status": "completed", "run": 1, "attempt": 1,
         "result": {"mean": 42.0}, "error": None},
    )  # fmt: skip
    return [
        seal(body, load_signer(node2_key, kid="node-1")),  # node-2's key under node-1's kid: bad signature
        seal(body, load_signer(node2_key, kid="node-2")),  # node-2 signs a body that names node-1
        seal(body, site.signer("sensor-2")),  # a device's key: not an agent this device trusts
    ]


def test_forged_replies_are_refused_and_never_printed(any_site: Site, c_device: Device) -> None:
    """The agent is slow (test.sleep) so the forgeries come first; the real reply still wins."""
    site = any_site
    forger = site.client("node-2")
    env = device_env(site, "sensor-1")
    args = [
        "--env",
        env,
        "--port",
        str(site.broker.tls_port),
        "--json",
        "--target",
        "node-1",
        "--id",
        "c-forged-1",
    ]
    with site.agent():
        proc = c_device.start(*args, "--kernel", "test.sleep", "--float", "seconds=1.0")
        wait_for_line(proc, "waiting for its reply")
        for payload in forged_replies(site, "c-forged-1"):
            forger.publish(f"{TOPICS.prefix}/replies/sensor-1/c-forged-1", payload)
        out, err = proc.communicate(timeout=TIMEOUT)
    c_device.check_sanitizers(err)
    assert proc.returncode == 0, err
    [line] = out.splitlines()
    assert json.loads(line)["kernel"] == "test.sleep"  # the agent's, not the forged stats result
    assert err.count("refused a reply on edge/replies/sensor-1/c-forged-1") == 3, err
    for code in ("bad_signature", "wrong_node", "unknown_key"):
        assert f": {code}:" in err, err


def test_only_forged_replies_end_in_a_timeout_that_says_so(site: Site, c_device: Device) -> None:
    forger = site.client("node-2")
    env = device_env(site, "sensor-1")
    proc = c_device.start(
        "--env",
        env,
        "--port",
        str(site.broker.tls_port),
        "--target",
        "node-1",
        "--id",
        "c-forged-2",
        "--wait-timeout",
        "2",
        "--signal",
        "1",
    )  # no agent runs: only the forgeries come
    wait_for_line(proc, "waiting for its reply")
    for payload in forged_replies(site, "c-forged-2"):
        forger.publish(f"{TOPICS.prefix}/replies/sensor-1/c-forged-2", payload)
    out, err = proc.communicate(timeout=TIMEOUT)
    c_device.check_sanitizers(err)
    assert (proc.returncode, out) == (3, "")
    assert "only 3 forged or invalid replies came, all refused" in err, err


def test_the_sensor_loop_survives_a_broker_restart_and_stops_cleanly(
    site: Site, c_asan: Device, tmp_path: Path
) -> None:
    """--every with a sensor file: a verified reply per period, before and after the broker
    restarts; SIGTERM ends it with a clean disconnect and exit 0."""
    reading = tmp_path / "temperature"
    reading.write_text("21.5\n")
    env = device_env(site, "sensor-1")
    with site.agent():
        proc = c_asan.start(
            "--env", env, "--port", str(site.broker.tls_port), "--json", "--target", "node-1",
            "--every", "300ms", "--sensor-file", reading, "--window", "4",
        )  # fmt: skip
        try:
            before = read_results(proc, 3)
            site.broker.restart()
            reading.write_text("23.5\n")
            after = read_results(proc, 3, lambda r: r["result"]["max"] == 23.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=TIMEOUT)
    c_asan.check_sanitizers(err)
    assert proc.returncode == 0, err
    assert "stopped (" in err and "reconnected to the broker" in err, err
    assert [r["result"]["count"] for r in before] == [1, 2, 3]
    assert all(r["result"]["mean"] == 21.5 for r in before)
    assert all(r["status"] == "completed" for r in before + after)
    del out


def read_results(proc: subprocess.Popen[str], count: int, keep: Any = None, timeout: float = 60) -> list[Any]:
    assert proc.stdout is not None
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} results"
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            assert line, "the loop ended"
            result = json.loads(line)
            if keep is None or keep(result):
                got.append(result)
    return got


def test_the_arm_builds_run_under_qemu_against_the_real_agent(site: Site, c_cross: Device) -> None:
    """aarch64 and armhf binaries (cross-built against Debian's arm64/armhf libraries) under
    qemu-user: mutual TLS, signing, the reply's verification, on the loopback broker."""
    a, b = matrices()
    with site.agent():
        done = send(c_cross, site, "sensor-1", "--target", "node-1", *matrix_options(a, b), timeout=120)
        hmac = send(c_cross, site, "mcu-1", "--target", "node-1", "--signal", "3,4", timeout=120)
    np.testing.assert_allclose(np.array(assert_completed(done)["result"]), a @ b, rtol=1e-12)
    assert assert_completed(hmac)["result"]["mean"] == 3.5
