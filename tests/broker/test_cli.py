"""`edge-broker` as a program: JSON logs, SIGINT and SIGTERM, SIGHUP with a bad file, TCP_NODELAY."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from broker.credentials import hash_password
from tests.support.brokers import embedded
from tests.support.mqtt import TestClient
from tests.support.services import free_port, wait_for_port


def _start(tmp_path: Path, *flags: str, stats: float = 0) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    passwd = tmp_path / "passwd"
    passwd.write_text(f"alice:{hash_password('pw')}\n")
    command = [sys.executable, "-m", "broker", "--bind", f"127.0.0.1:{port}", *flags]
    env = {
        **os.environ,
        "EDGE_BROKER_AUTH_PASSWORD_FILE": str(passwd),
        "EDGE_BROKER_LOG_STATS_INTERVAL_S": str(stats),
    }
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    wait_for_port(port, proc=proc)  # type: ignore[arg-type]
    return proc, port


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_json_logs_and_a_clean_stop(tmp_path: Path, signum: signal.Signals) -> None:
    proc, port = _start(tmp_path, "--log-format", "json", "--data-dir", str(tmp_path / "data"), stats=0.2)
    client = TestClient(port, "c", username="alice", password="pw")
    client.connect()
    client.publish("t/retained", b"kept", qos=1, retain=True)
    client.disconnect()
    stderr = proc.stderr
    assert stderr is not None
    seen = []
    while '"stats: ' not in (line := stderr.readline()):
        assert line, "edge-broker exited"
        seen.append(line)
    stats = json.loads(line)
    assert stats["retained"] == 1 and stats["dropped"] == 0  # the counters as fields
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in [*seen, *err.splitlines()] if line.strip()]
    messages = [entry["message"] for entry in lines]
    assert any(m.startswith("ready: listener tcp: 127.0.0.1:") for m in messages)
    assert messages[-1] == "stopped"
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    assert (tmp_path / "data" / "snapshot.msgpack").exists()


def test_sighup_with_a_broken_password_file_keeps_the_old_one(tmp_path: Path) -> None:
    proc, port = _start(tmp_path)
    try:
        (tmp_path / "passwd").write_text("this is not a password file\n")
        proc.send_signal(signal.SIGHUP)
        client = TestClient(port, "after-hup", username="alice", password="pw")
        client.connect()  # the old credentials are still in force
        client.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "reload failed, the previous credentials stay in force" in err
    assert proc.returncode == 0


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "broker", "--bind", f"127.0.0.1:{port}", "--allow-anonymous"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert f"listeners.tcp: cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_every_accepted_socket_has_tcp_nodelay() -> None:
    with embedded({"listeners.tcp.port": 0, "auth.allow_anonymous": True}) as thread:
        client = TestClient(thread.port, "nodelay")
        client.connect()
        try:

            async def flags() -> list[int]:
                sockets = [
                    w._stream.transport.get_extra_info("socket") for w in thread.embedded.broker._writers
                ]
                return [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets]

            assert thread.call(flags) == [1]
        finally:
            client.disconnect()
