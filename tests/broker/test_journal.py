"""Cancellation in the journal, end to end: `edge-broker` processes killed with SIGKILL.

A message queued for a connected persistent subscriber that acknowledges it before the batch
holding it is written leaves no record at all; the publisher's PUBACK waits for that
acknowledgement or for the write, so whichever way the broker dies, nothing acknowledged to a
publisher is lost (broker/journal.py).
"""

from __future__ import annotations

import queue
import random
import signal
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from agent.common.journal import LEGACY_BROKER, scan
from tests.broker.conftest import USERS, BrokerProcess
from tests.support.mqtt import PUBACK, PUBLISH, RawClient, TestClient, packet

ACK_WAIT = "EDGE_BROKER_PERSISTENCE_ACK_WAIT_MS"


def journal_kinds(data_dir: Path) -> list[str]:
    """The kinds of every record in the journals (as a crash would leave them)."""
    kinds: list[str] = []
    for path in sorted(data_dir.glob("journal.*.log")):
        for batch in scan(path.read_bytes(), LEGACY_BROKER).values:
            kinds += [rec[0] for rec in batch]
    return kinds


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def subscriber(port: int, client_id: str = "j-sub", *, manual_ack: bool = False) -> TestClient:
    """A persistent subscriber of these tests, connected."""
    sub = TestClient(
        port, client_id, clean=False, username="alice", password=USERS["alice"], manual_ack=manual_ack
    )
    sub.connect()
    return sub


def test_messages_acknowledged_before_their_commit_are_never_written(broker_process: BrokerProcess) -> None:
    broker_process.env[ACK_WAIT] = "1000"  # acknowledgements always beat the write here
    proc = broker_process.spawn()
    try:
        sub = subscriber(broker_process.port)
        sub.subscribe("test/j/#", 1)
        pub = TestClient(broker_process.port, "j-pub", username="bob", password=USERS["bob"])
        pub.connect()
        for i in range(50):
            pub.publish(f"test/j/{i}", b"%d" % i, qos=1)  # PUBACK after the subscriber's
        assert [m.payload for m in sub.expect(50)] == [b"%d" % i for i in range(50)]
        pub.close()
        sub.close()
        assert journal_kinds(broker_process.data_dir) == ["S", "B"]  # no M, Q or A
    finally:
        kill(proc)

    proc = broker_process.spawn()
    try:
        back = subscriber(broker_process.port)
        back.sync()  # a round trip: anything still queued would have arrived before its PUBACK
        assert back.messages.empty()  # delivered and acknowledged once: not again
        back.close()
    finally:
        stop(proc)


def test_a_crash_before_the_publishers_puback_loses_nothing(broker_process: BrokerProcess) -> None:
    broker_process.env[ACK_WAIT] = "1000"
    proc = broker_process.spawn()
    publisher = RawClient(broker_process.port)
    try:
        sub = subscriber(broker_process.port, manual_ack=True)
        sub.subscribe("test/j/#", 1)
        _, code = publisher.connect("j-raw", username="bob", password=USERS["bob"])
        assert code == 0
        publisher.publish("test/j/once", b"m", qos=1, packet_id=7)
        assert sub.expect(1)[0].payload == b"m"  # delivered, never acknowledged
        publisher.sock.settimeout(0.3)
        try:
            got = publisher.receive()
        except TimeoutError:
            got = None
        assert got is None, f"PUBACK before the message was safe: {got}"
        assert "M" not in journal_kinds(broker_process.data_dir)  # still waiting for the subscriber
        sub.close()
    finally:
        publisher.close()
        kill(proc)

    proc = broker_process.spawn()
    try:
        back = subscriber(broker_process.port, manual_ack=True)
        publisher = RawClient(broker_process.port)
        publisher.connect("j-raw", username="bob", password=USERS["bob"])
        body = b"\x00\x0btest/j/once" + (7).to_bytes(2, "big") + b"m"
        publisher.send(packet(PUBLISH, 0x08 | 0x02, body))  # the resend, DUP set [MQTT-4.4.0-1]
        assert publisher.receive_kind(PUBACK).packet_id == 7
        assert back.expect(1)[0].payload == b"m"
        publisher.close()
        back.close()
    finally:
        stop(proc)


def test_a_delivery_not_acknowledged_in_time_is_written_before_the_puback(
    broker_process: BrokerProcess,
) -> None:
    broker_process.env[ACK_WAIT] = "20"
    proc = broker_process.spawn()
    try:
        sub = subscriber(broker_process.port, manual_ack=True)
        sub.subscribe("test/j/#", 1)
        pub = TestClient(broker_process.port, "j-pub", username="bob", password=USERS["bob"])
        pub.connect()
        pub.publish("test/j/slow", b"kept", qos=1)  # returns on PUBACK: after the write, ~20 ms on
        assert sub.expect(1)[0].payload == b"kept"
        assert journal_kinds(broker_process.data_dir)[-2:] == ["M", "Q"]
        pub.close()
        sub.close()
    finally:
        kill(proc)

    proc = broker_process.spawn()
    try:
        back = subscriber(broker_process.port)
        [again] = back.expect(1)
        assert (again.topic, again.payload) == ("test/j/slow", b"kept")
        back.close()
    finally:
        stop(proc)


def _drain(client: TestClient) -> list[bytes]:
    """Every message the client has received so far (its queue emptied)."""
    got = []
    while not client.messages.empty():
        got.append(client.messages.get_nowait().payload)
    return got


def _collect(client: TestClient, want: set[bytes], quiet_s: float = 3.0) -> set[bytes]:
    """Messages received until every one of `want` came, or none came for `quiet_s`."""
    got = set(_drain(client))
    while not want <= got:
        try:
            got.add(client.messages.get(timeout=quiet_s).payload)
        except queue.Empty:
            break
    return got


class Publisher:
    """Numbered QoS 1 messages as fast as paho takes them (20 in flight); `acked` holds those
    whose PUBACK came, across connections (paho marks each message info when its PUBACK comes;
    no callback, which would run under paho's own lock)."""

    def __init__(self) -> None:
        self.number = 0
        self._sent: list[tuple[mqtt.MQTTMessageInfo, bytes]] = []

    @property
    def acked(self) -> set[bytes]:
        return {payload for info, payload in self._sent if info.is_published()}

    def run(self, port: int, seconds: float) -> TestClient:
        """Publish for `seconds` on a new connection, which is returned (still open)."""
        client = TestClient(port, "r-pub", username="bob", password=USERS["bob"])
        client.connect()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            payload = b"%d" % self.number
            self.number += 1
            self._sent.append((client.client.publish("test/r/n", payload, qos=1), payload))
            time.sleep(0.0005)
        return client


def test_sigkill_at_random_moments_loses_no_acknowledged_message(broker_process: BrokerProcess) -> None:
    """A publisher with 20 QoS 1 messages in flight, a persistent subscriber that keeps up (so
    most of its queue entries are cancelled, some written) and one that is away (all of its
    entries written): the broker is killed at a random moment, three times. Every message the
    publisher got a PUBACK for reaches both, before a kill or after the restart."""
    rng = random.Random(4)
    publisher = Publisher()
    received: set[bytes] = set()
    broker_process.env["EDGE_BROKER_LIMITS_MAX_QUEUED_MESSAGES"] = "0"  # no bound: nothing dropped
    proc = broker_process.spawn()
    try:
        away = subscriber(broker_process.port, "r-away")
        away.subscribe("test/r/#", 1)
        away.close()
    finally:
        stop(proc)
    for _ in range(3):
        proc = broker_process.spawn()
        try:
            sub = subscriber(broker_process.port)
            sub.subscribe("test/r/#", 1)
            sub.sync()
            received.update(_drain(sub))  # what was queued across the previous kill
            pub = publisher.run(broker_process.port, rng.uniform(0.2, 0.8))
        finally:
            kill(proc)
        pub.close()
        sub.close()
        received.update(_drain(sub))
    acked = publisher.acked  # fixed now: the publisher's connections are closed

    proc = broker_process.spawn()
    try:
        back = subscriber(broker_process.port)
        received |= _collect(back, acked - received)
        back.close()
        away = subscriber(broker_process.port, "r-away")
        kept = _collect(away, acked)
        away.close()
    finally:
        stop(proc)
    assert len(acked) > 100  # the scenario did something
    for name, got in (("the subscriber that kept up", received), ("the subscriber away", kept)):
        lost = sorted(acked - got, key=int)
        assert not lost, f"acknowledged to the publisher, never delivered to {name}: {lost[:10]}"
