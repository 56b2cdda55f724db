"""edge-watch end to end (a real agent process, the embedded broker, the tool as a process with
dash-1's bundle) and its table renderer on recorded state.

Forgeries are published with node-1's broker login (what a stolen password or a compromised
broker allows): one signed by a key that is not node-1's, one signed by node-2's real key. Both must
be flagged, never shown as valid.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.protocol import (
    Heartbeat,
    Presence,
    Result,
    Signer,
    Topics,
    TrustedKey,
    TrustStore,
    generate_signer,
    seal,
)
from agent.tools.board import Board, render
from agent.tools.connection import Incoming
from agent.tools.errors import EXIT_OK, EXIT_TIMEOUT
from agent.tools.observe import line, observe
from tests.agent.conftest import Site, _site, agent_process
from tests.agent.toolrun import bundle_file, command, live, run, tool_env

TOPICS = Topics()


def result_body(
    task_id: str, node: str = "node-1", status: str = "completed", **extra: Any
) -> dict[str, Any]:
    now = time.time()
    body = Result(task_id, node, "stats", status, 1, 1, now, now, now, 1.5, {"mean": 1.0}).to_body()
    if status != "completed":
        body.update(result=None, error={"code": "invalid_params", "message": "signal: empty"})
    return body


def test_lines_and_json_from_a_real_agent_with_forgeries_flagged(site: Site) -> None:
    dash = bundle_file(site, "dash-1")
    with (
        agent_process(site, heartbeat_interval_s="0.5", events_enabled="true"),
        live(site, "watch", "-c", dash, "--format", "lines") as lines,
        live(site, "watch", "-c", dash, "--format", "json") as jsons,
    ):
        lines.wait_for(lambda t: " presence  node-1 online session " in t)
        lines.wait_for(lambda t: " heartbeat node-1 running queued 0 running 0 outbox 0" in t)
        device = site.client("sensor-1")
        task = site.submit(device, "sensor-1", "stats", {"signal": [1.0, 2.0, 3.0]})
        lines.wait_for(lambda t: f" result    node-1 {task.id} stats completed " in t)
        lines.wait_for(lambda t: f" event     node-1 {task.id} running attempt 1 run 1" in t)

        forger = site.client("node-1", client_id="forger")
        forger.publish(
            "edge/results/node-1/forged-1", seal(result_body("forged-1"), generate_signer("node-1"))
        )
        forger.publish("edge/results/node-1/forged-2", seal(result_body("forged-2"), site.signer("node-2")))
        forger.publish("edge/heartbeat/node-1", b"\x93garbage")
        lines.wait_for(lambda t: "FORGED result node-1 forged-1 (bad_signature" in t)
        lines.wait_for(lambda t: "FORGED result node-1 forged-2 (wrong_role" in t)
        lines.wait_for(lambda t: "FORGED heartbeat node-1 (malformed" in t)
        jsons.wait_for(lambda t: '"forged-2"' in t and '"kind":"result"' in t)
        assert lines.stop() == "" and lines.proc.returncode == EXIT_OK
        assert jsons.stop() == "" and jsons.proc.returncode == EXIT_OK

    assert not any("forged" in t and "FORGED" not in t for t in lines.lines)  # never shown as valid
    docs = [json.loads(t) for t in jsons.lines]
    by_id = {d.get("id"): d for d in docs if d["kind"] == "result"}
    assert by_id[task.id]["verified"] is True and by_id[task.id]["body"]["result"]["mean"] == 2.0
    assert by_id[task.id]["body"]["kernel"] == "stats" and by_id[task.id]["node"] == "node-1"
    for forged_id, problem in (("forged-1", "bad_signature"), ("forged-2", "wrong_role")):
        doc = by_id[forged_id]
        assert doc["verified"] is False and doc["problem"] == problem, doc
        assert doc["body"]["id"] == forged_id  # what it claims, shown beside the flag
    kinds = {d["kind"] for d in docs if d["verified"]}
    assert {"presence", "heartbeat", "result", "event"} <= kinds
    assert all(isinstance(d["node"], str) and "topic" in d for d in docs)


def test_once_count_duration_and_an_operator_login(site: Site) -> None:
    dash, op = bundle_file(site, "dash-1"), bundle_file(site, "op-1")
    with site.agent():
        once = run(site, "watch", "-c", dash, "--format", "json", "--once")
        assert once.returncode == EXIT_OK, once.stderr
        [doc] = [json.loads(t) for t in once.stdout.splitlines()]
        assert doc["kind"] == "presence" and doc["retained"] is True and doc["body"]["state"] == "online"

        nothing = run(site, "watch", "-c", dash, "--node", "node-2", "--count", "1", "--duration", "1")
        assert nothing.returncode == EXIT_TIMEOUT and nothing.stdout == ""

        # an operator may read results and rejects only: the rest is refused by the ACL and said so
        operator = run(site, "watch", "-c", op, "--format", "lines", "--duration", "1")
        assert operator.returncode == EXIT_OK, operator.stderr
        assert "the broker refused edge/presence/+ (ACL)" in operator.stderr

        snapshot = run(site, "watch", "-c", dash, "--format", "table", "--once", "--duration", "1")
        assert snapshot.returncode == EXIT_OK, snapshot.stderr
        assert "\x1b[" not in snapshot.stdout  # not a terminal: no escape codes
        node_row = next(t for t in snapshot.stdout.splitlines() if t.startswith("node-1 "))
        assert node_row.split()[1] == "online"


# --- the table on recorded state ----------------------------------------------------------------------


def _agents() -> tuple[dict[str, Signer], TrustStore]:
    signers = {n: generate_signer(n) for n in ("node-1", "node-2")}
    keys = [TrustedKey(n, "ed25519", s.public_raw(), frozenset({"agent"})) for n, s in signers.items()]  # type: ignore[union-attr]
    return signers, TrustStore(keys)


def _incoming(topic: str, body: dict[str, Any], signer: Signer, at: float, retain: bool = False) -> Incoming:
    return Incoming(topic, seal(body, signer), retain, at)


def _presence(node: str, state: str, session: int) -> dict[str, Any]:
    return Presence(node, state, session, 0.0, "0.1.0", ["stats"]).to_body()


def _heartbeat(node: str, queued: int) -> dict[str, Any]:
    return Heartbeat(node, 7, 0.0, 60.0, "draining", queued, 2, 40, 1, 3, 5, 80 << 20, 12.0, 0.5, "native",
                     "0.1.0").to_body()  # fmt: skip


def test_table_renders_recorded_state() -> None:
    signers, trust = _agents()
    s1, s2 = signers["node-1"], signers["node-2"]
    now = 1_800_000_000.0
    recorded = [
        _incoming("edge/presence/node-1", _presence("node-1", "online", 3), s1, now - 30, retain=True),
        _incoming("edge/presence/node-2", _presence("node-2", "online", 5), s2, now - 30, retain=True),
        _incoming("edge/presence/node-2", _presence("node-2", "offline", 4), s2, now - 20),  # old Will
        _incoming("edge/heartbeat/node-1", _heartbeat("node-1", 17), s1, now - 2),
        _incoming("edge/heartbeat/node-2", _heartbeat("node-2", 1), s2, now - 100),
        _incoming("edge/results/node-1/t-1", result_body("t-1"), s1, now - 3),
        _incoming("edge/results/node-1/t-1", result_body("t-1"), s1, now - 2),  # re-published
        _incoming("edge/results/node-1/t-2", result_body("t-2", status="rejected"), s1, now - 1),
        _incoming("edge/results/node-1/t-3", result_body("t-3"), s2, now - 1),  # node-2 signs for node-1
        Incoming("edge/presence/node-3", b"", False, now - 1),  # a retained record deleted: not a forgery
    ]
    board = Board(last=5)
    observations = [observe(m, trust, TOPICS) for m in recorded]
    for obs in observations:
        board.update(obs)
    assert observations[2].stale and observations[6].duplicate
    assert "(stale session, ignored)" in line(observations[2]) and "(duplicate)" in line(observations[6])
    assert line(observations[-1]).endswith(
        "presence  node-3 cleared (an empty message (a retained record deleted), not signed)"
    )
    assert not observations[-1].verified

    table = render(board, now, color=False, stale_s=35.0, title="edge/ test")
    rows = {t.split()[0]: t.split() for t in table.splitlines() if t.startswith("node-")}
    assert rows["node-1"][:3] == ["node-1", "online", "3"] and rows["node-1"][3:5] == ["2", "s"]
    assert rows["node-1"][5:9] == ["draining", "17", "2", "5"]  # state, queued, running, outbox
    assert rows["node-2"][1:3] == ["online", "5"]  # the older session's Will was ignored
    assert "100 s !" in " ".join(rows["node-2"])  # heartbeat older than stale_s
    assert "RESULTS (last 10 s: 0.2/s)  completed 0.1/s, rejected 0.1/s" in table
    result_rows = [t for t in table.splitlines() if t.split()[1:2] == ["node-1"] and "stats" in t]
    assert [t.split()[2] for t in result_rows] == ["t-2", "t-1"]  # newest first, the duplicate once
    assert "invalid_params" in result_rows[0]
    assert "FORGED / UNVERIFIED: 1" in table and "FORGED result node-1 t-3  (wrong_role)" in table

    board.update(
        observe(_incoming("edge/presence/node-2", _presence("node-2", "offline", 5), s2, now), trust, TOPICS)
    )
    colored = render(board, now + 1, color=True)
    assert "\x1b[31moffline\x1b[0m" in colored and "\x1b[32monline\x1b[0m" in colored


def test_table_refreshes_in_place_on_a_terminal(site: Site) -> None:
    dash = bundle_file(site, "dash-1")
    controller, terminal = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's last writer closed it
                return
            if not data:
                return
            chunks.append(data)

    with site.agent():
        proc = subprocess.Popen(
            [*command("watch"), "-c", str(dash), "--duration", "3"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            env=tool_env(site),
        )
        os.close(terminal)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        _, err = proc.communicate(timeout=60)
        reader.join(60)
    os.close(controller)
    assert proc.returncode == EXIT_OK, err
    screen = b"".join(chunks).decode()
    assert screen.startswith("\x1b[?1049h") and screen.rstrip().endswith("\x1b[?1049l")  # alternate screen
    assert "\x1b[H" in screen and "NODES" in screen and "node-1" in screen
    assert "\x1b[32monline\x1b[0m" in screen  # coloured on a terminal


@pytest.mark.mosquitto
def test_submit_and_watch_on_mosquitto(tmp_path: Path) -> None:
    """The same tools against a real Mosquitto with the fleet's ACL (agent on MQTT 5, tools on 3.1.1)."""
    with _site("mosquitto", tmp_path) as site:
        dash, op = bundle_file(site, "dash-1"), bundle_file(site, "op-1")
        with (
            site.agent(heartbeat_interval_s="0.5"),
            live(site, "watch", "-c", dash, "--format", "lines") as watch,
        ):
            watch.wait_for(lambda t: " presence  node-1 online " in t)
            done = run(site, "submit", "-c", op, "--node", "node-1", "--kernel", "histogram", "--param",
                       "signal=[1,2,2,3]", "--param", "bins=3", "--json", "--id", "m-1")  # fmt: skip
            assert done.returncode == EXIT_OK, done.stderr
            assert json.loads(done.stdout)["result"]["counts"] == [1, 2, 1]
            watch.wait_for(lambda t: " result    node-1 m-1 histogram completed " in t)
            watch.wait_for(lambda t: " heartbeat node-1 running " in t)
            forger = site.client("node-1", client_id="forger")
            forger.publish("edge/results/node-1/m-2", seal(result_body("m-2"), site.signer("node-2")))
            watch.wait_for(lambda t: "FORGED result node-1 m-2 (wrong_role" in t)
            assert watch.stop() == "" and watch.proc.returncode == EXIT_OK


@pytest.mark.mosquitto
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_acl_refusals_are_reported_on_mosquitto(tmp_path: Path, protocol: str) -> None:
    """Mosquitto refuses a subscription outside the ACL with 0x80 on MQTT 3.1.1 and 0x87 (not
    authorized) on MQTT 5: edge-watch reports both. Before, only 0x80 counted as refused, so on
    MQTT 5 an operator's edge-watch said nothing about the topics it may not read."""
    with _site("mosquitto", tmp_path) as site:
        env = tool_env(site, EDGE_MQTT_PROTOCOL=protocol)
        operator = run(site, "watch", "-c", bundle_file(site, "op-1"), "--duration", "0.5", env=env)
        assert operator.returncode == EXIT_OK, operator.stderr
        assert "the broker refused edge/presence/+ (ACL)" in operator.stderr
