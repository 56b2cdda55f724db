"""agent.mqtt.MqttLink against a real Mosquitto: PUBACKs reach the agent once per loop iteration,
outside paho's locks (a handler may take a lock that a publishing thread holds while paho writes),
and results published from another thread with `publish_here` are written there and acknowledged."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.node.link.mqtt import Handlers, LinkSettings, MqttLink
from tests.support.services import free_port, run_mosquitto

TIMEOUT = 20.0


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    conf = f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    with run_mosquitto(conf, tmp_path, [port]):
        yield port


def test_pubacks_are_reported_in_batches_outside_paho_locks_while_other_threads_publish(port: int) -> None:
    reports: queue.SimpleQueue[tuple[list[int], bool, str]] = queue.SimpleQueue()
    outbox_lock = threading.Lock()  # as Outbox: held by publishers while paho writes, taken on PUBACK

    def published(mids: list[int]) -> None:
        free = link._client._out_message_mutex.acquire(blocking=False)  # paho's lock is not held
        if free:
            link._client._out_message_mutex.release()
        with outbox_lock:
            reports.put((mids, free, threading.current_thread().name))

    link = MqttLink(
        LinkSettings("127.0.0.1", port, "link-test", ("x/never",), protocol="5"),
        Handlers(message=lambda delivery: None, published=published),
    )
    link.start()
    try:
        assert link.wait_subscribed(TIMEOUT)
        sent: set[int] = set()

        def publisher(n: int) -> None:
            for i in range(200):
                with outbox_lock:
                    mid = link.publish_here(f"r/{n}/{i}", b"result", 1)
                    assert mid is not None  # plain TCP and connected: written by this thread
                    sent.add(mid)

        threads = [threading.Thread(target=publisher, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        acknowledged: list[int] = []
        batches = 0
        while len(acknowledged) < 600:
            mids, free, thread_name = reports.get(timeout=TIMEOUT)
            assert free and thread_name == "mqtt-network"
            acknowledged += mids
            batches += 1
        assert sorted(acknowledged) == sorted(sent) and len(sent) == 600
        assert batches < 600  # several PUBACKs per loop iteration, reported together
    finally:
        link.stop()
