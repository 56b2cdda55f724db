"""Fixtures of the broker suite: both brokers, the same users and ACL, clients closed after."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.brokers import KINDS, RunningBroker, broker_under_test, write_credentials
from tests.support.mqtt import RawClient, TestClient
from tests.support.services import free_port, wait_for_port

USERS = {"alice": "alice-pw", "bob": "bob-pw", "admin": "admin-pw"}
_OWN = ["test/#", "$test/#", "will/#"]
_WORKERS = "$share/workers/test/#"  # a shared subscription needs a grant naming its group
ACL: dict[str, Any] = {
    "users": {
        "alice": {"publish": _OWN, "subscribe": [*_OWN, _WORKERS]},
        "bob": {"publish": _OWN, "subscribe": [*_OWN, _WORKERS]},
        "admin": {"publish": ["#", "$test/#"], "subscribe": ["#", "$test/#"]},
    }
}

ClientFactory = Callable[..., TestClient]


@pytest.fixture(params=KINDS)
def mqtt_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningBroker]:
    """The embedded broker, then the same test against a real Mosquitto."""
    with broker_under_test(request.param, tmp_path, USERS, ACL) as running:
        yield running


@pytest.fixture
def embedded_settings() -> dict[str, Any]:
    """Settings of `embedded_broker`; a test module overrides this fixture to change them."""
    return {}


@pytest.fixture
def embedded_broker(tmp_path: Path, embedded_settings: dict[str, Any]) -> Iterator[RunningBroker]:
    """The embedded broker alone, with the suite's users and ACL and `embedded_settings`."""
    with broker_under_test("embedded", tmp_path, USERS, ACL, settings=embedded_settings) as running:
        yield running


def _factory(running_port: Callable[[], int]) -> Iterator[ClientFactory]:
    made: list[TestClient] = []

    def make(client_id: str = "", user: str = "alice", connect: bool = True, **options: Any) -> TestClient:
        client = TestClient(
            running_port(), client_id, username=user, password=USERS.get(user, "x"), **options
        )
        made.append(client)
        if connect:
            client.connect()
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(mqtt_broker: RunningBroker) -> Iterator[ClientFactory]:
    """`client("id", user="alice", clean=False, ...)`: a connected TestClient on `mqtt_broker`."""
    yield from _factory(lambda: mqtt_broker.port)


@pytest.fixture
def embedded_client(embedded_broker: RunningBroker) -> Iterator[ClientFactory]:
    """The same factory on `embedded_broker`."""
    yield from _factory(lambda: embedded_broker.port)


def deliver_unacknowledged(client: ClientFactory, client_id: str, topic: str, payload: bytes) -> TestClient:
    """A persistent subscriber that receives one QoS 1 message and never acknowledges it."""
    sub = client(client_id, clean=False, manual_ack=True)
    sub.subscribe(topic, 1)
    client("pub").publish(topic, payload, qos=1)
    assert sub.expect(1)[0].payload == payload
    return sub


RawFactory = Callable[..., RawClient]


@pytest.fixture
def raw(mqtt_broker: RunningBroker) -> Iterator[RawFactory]:
    """`raw("id", user="alice", **connect_options)`: a RawClient, connected (CONNACK 0) unless
    `client_id` is None; every socket is closed after the test."""
    made: list[RawClient] = []

    def make(client_id: str | None = None, user: str = "alice", **options: Any) -> RawClient:
        connection = RawClient(mqtt_broker.port)
        made.append(connection)
        if client_id is not None:
            _, code = connection.connect(client_id, username=user, password=USERS[user], **options)
            assert code == 0, f"CONNACK {code}"
        return connection

    yield make
    for connection in made:
        connection.close()


@dataclass
class BrokerProcess:
    """`edge-broker` as a child process, restartable over the same data directory (`data_dir`);
    `env` may be changed before `spawn()` (e.g. `EDGE_BROKER_PERSISTENCE_ACK_WAIT_MS`)."""

    command: list[str]
    env: dict[str, str]
    port: int
    log: Path
    data_dir: Path

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            proc = subprocess.Popen(self.command, env=self.env, stderr=log)
        wait_for_port(self.port, proc=proc)
        return proc


@pytest.fixture
def broker_process(tmp_path: Path) -> BrokerProcess:
    passwd, acl = write_credentials(tmp_path, USERS, ACL)
    port = free_port()
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "broker", "--bind", f"127.0.0.1:{port}", "--data-dir", str(data_dir)]
    env = {**os.environ, "EDGE_BROKER_AUTH_PASSWORD_FILE": str(passwd), "EDGE_BROKER_AUTH_ACL_FILE": str(acl)}
    return BrokerProcess(command, env, port, tmp_path / "broker.log", data_dir)
