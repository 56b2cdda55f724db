"""The edge-broker unit under systemd as PID 1, set up by deploy/README.md's commands for a gateway box.

The broker goes into the agent's venv (`pip install 'WHEEL[broker]'`), its files from
`edge-provision broker-files --format amqtt` into /etc/edge-broker, the unit from deploy/systemd.
systemd calls it active once its listeners are open (Type=notify), in its sandbox, as its own user;
a fleet member on the host connects over mutual TLS and a message goes through; it stops cleanly.
Runs after test_agent_unit.py (the agent's install provides the venv), before test_uninstall.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.service.booted import proc_status
from tests.service.conftest import Unit
from tests.support.fleet import edge_provision
from tests.support.mqtt import TestClient
from tests.support.services import free_port

pytestmark = [pytest.mark.service, pytest.mark.timeout(900)]
CHECKOUT = Path(__file__).resolve().parents[2]


def test_the_broker_unit_serves_the_fleet(unit: Unit, service_wheels: dict[str, Path]) -> None:
    system, fleet = unit.system, unit.site.fleet
    wheel = system.put(service_wheels["upgrade"], f"/root/{service_wheels['upgrade'].name}")
    tls_port, tcp_port = free_port(), free_port()
    files = unit.site.tmp / "gateway-box-broker"
    edge_provision(
        "--fleet", fleet.root, "broker-files", "--format", "amqtt", "--bind", "127.0.0.1",
        "--tls-port", str(tls_port), "--tcp-port", str(tcp_port), "--out", files,
    )  # fmt: skip
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        system.put(path, f"/root/broker/{path.relative_to(files)}")
    system.put(CHECKOUT / "deploy" / "systemd" / "edge-broker.service", "/root/edge-broker.service")

    # deploy/README.md, "A gateway box", one command at a time
    commands = [
        f"/opt/edge-agent/current/bin/pip install --quiet '{wheel}[broker]'",
        "useradd --system --user-group --home-dir /var/lib/edge-broker --shell /usr/sbin/nologin edge-broker",
        "install -d -m 0750 -g edge-broker /etc/edge-broker && cp -r /root/broker/* /etc/edge-broker/",
        "chgrp -R edge-broker /etc/edge-broker && install -d -m 0700 -o edge-broker /var/lib/edge-broker",
        "cp /root/edge-broker.service /etc/systemd/system/ && systemctl enable --now edge-broker",
    ]
    for command in commands:
        system.run("sh", "-c", command, timeout=900)

    shown = system.systemctl_show("edge-broker", "ActiveState", "SubState", "Type", "User")
    assert shown == {"ActiveState": "active", "SubState": "running", "Type": "notify", "User": "edge-broker"}
    pid = system.host_pid(int(system.systemctl_show("edge-broker", "MainPID")["MainPID"]))
    status = proc_status(pid)
    assert (status["NoNewPrivs"], status["Seccomp"], int(status["CapEff"], 16)) == ("1", "2", 0)

    def member(name: str) -> TestClient:
        client = TestClient(
            tls_port, f"{name}-gateway-box", username=name, password=fleet.password(name), tls=fleet.tls(name)
        )
        client.connect()
        return client

    # enable --now returned once READY=1: the TLS listener takes a fleet member at once
    client = member("dash-1")
    try:
        client.subscribe("edge/results/node-2/+", 1)
        sender = member("node-2")
        sender.publish("edge/results/node-2/t-1", b"\x81\xa1k\x01", qos=1)
        [message] = client.expect(1, 30)
        assert (message.topic, message.payload) == ("edge/results/node-2/t-1", b"\x81\xa1k\x01")
        sender.close()
    finally:
        client.close()

    lines = [line for line in system.journal("edge-broker") if line.startswith("{")]
    assert lines and all("message" in json.loads(line) for line in lines), system.journal("edge-broker")
    started = time.monotonic()
    system.run("systemctl", "stop", "edge-broker", timeout=120)
    shown = system.systemctl_show("edge-broker", "ActiveState", "Result")
    assert shown == {"ActiveState": "inactive", "Result": "success"}
    assert time.monotonic() - started < 30
