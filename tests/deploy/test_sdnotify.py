"""sd_notify (agent/common/sdnotify.py) on real Unix datagram sockets, path and abstract, and what the
agent and the broker processes tell a supervisor: READY=1 once online, WATCHDOG=1, STOPPING=1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.common.sdnotify import ServiceNotifier, notify_address, watchdog_interval
from tests.agent.conftest import Site, agent_process
from tests.support.services import free_port, wait_for_port


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """What systemd holds: a datagram socket; yields it and its NOTIFY_SOCKET value."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(30)
    yield sock, str(path)
    sock.close()


def messages(sock: socket.socket, until: str, timeout: float = 30.0) -> list[str]:
    """Every datagram until one contains `until`."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not got or until not in got[-1]:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            raise AssertionError(f"no {until!r} within {timeout} s; got {got}") from None
    return got


def test_datagrams_reach_a_path_socket_and_an_abstract_one(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    service = ServiceNotifier.from_environ({"NOTIFY_SOCKET": path})
    assert service.send("READY=1", "STATUS=x")
    assert sock.recv(100) == b"READY=1\nSTATUS=x"

    name = f"edge-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind(b"\0" + name.encode())
        abstract.settimeout(5)
        assert notify_address("@" + name) == b"\0" + name.encode()
        assert ServiceNotifier.from_environ({"NOTIFY_SOCKET": "@" + name}).send("WATCHDOG=1")
        assert abstract.recv(100) == b"WATCHDOG=1"


def test_ready_once_when_online_watchdog_when_due_and_nothing_without_systemd(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    now = [100.0]
    service = ServiceNotifier(notify_address(path), watchdog_s=5.0, clock=lambda: now[0])
    service.tick(online=False)
    assert sock.recv(100) == b"WATCHDOG=1"  # fed while not online yet
    service.tick(online=True, status="online, broker b:1")
    assert sock.recv(100) == b"READY=1\nSTATUS=online, broker b:1" and service.ready
    now[0] += 4.9
    service.tick(online=True)
    now[0] += 0.2
    service.tick(online=True)
    assert sock.recv(100) == b"WATCHDOG=1"  # one more, 5 s after the first; READY not again
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(100)
    assert service.tick_s == 1.0

    quiet = ServiceNotifier.from_environ({})  # not under systemd
    assert not quiet.send("READY=1") and quiet.tick_s == 1.0
    quiet.tick(online=True)


def test_watchdog_settings_from_the_environment() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7) is None  # another's
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}, 7) is None
    fast = ServiceNotifier.from_environ({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "400000"})
    assert fast.watchdog_s == 0.2 and fast.tick_s == 0.2


def test_a_vanished_supervisor_is_logged_once_and_costs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    service = ServiceNotifier.from_environ({"NOTIFY_SOCKET": "/nonexistent/notify.sock"})
    assert not service.send("READY=1") and not service.send("WATCHDOG=1")
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1


def test_the_agent_process_says_ready_when_online_feeds_the_watchdog_and_says_stopping(
    site: Site, listener: tuple[socket.socket, str]
) -> None:
    sock, path = listener
    site.env.update({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    with agent_process(site) as agent:
        got = messages(sock, "READY=1")
        assert got[-1].startswith("READY=1\nSTATUS=online, broker 127.0.0.1:"), got
        assert "connected to 127.0.0.1:" in agent.output()  # online before READY, not merely launched
        assert len(messages(sock, "WATCHDOG=1")) <= 2
        pings = messages(sock, "WATCHDOG=1") + messages(sock, "WATCHDOG=1")
        assert pings[-1] == "WATCHDOG=1"
        agent.proc.send_signal(signal.SIGTERM)
        assert messages(sock, "STOPPING=1")[-1] == "STOPPING=1\nSTATUS=draining"
        assert agent.proc.wait(30) == 0


def test_the_broker_process_says_ready_once_listening(
    tmp_path: Path, listener: tuple[socket.socket, str]
) -> None:
    sock, path = listener
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    command = [sys.executable, "-m", "broker", "--bind", f"127.0.0.1:{port}", "--allow-anonymous"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        got = messages(sock, "READY=1")
        wait_for_port(port, timeout=1)  # listening by then
        assert got[-1] == "READY=1\nSTATUS=listening"
        assert messages(sock, "WATCHDOG=1")[-1] == "WATCHDOG=1"
        proc.send_signal(signal.SIGTERM)
        assert messages(sock, "STOPPING=1")[-1] == "STOPPING=1\nSTATUS=draining"
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
