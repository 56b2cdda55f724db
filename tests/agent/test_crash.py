"""Crash safety: kill -9 of the agent at random moments with tasks queued, running and in the
outbox; broker restarts with results pending; clean stops; damaged state files."""

from __future__ import annotations

import random
import re
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from agent.node.store import OUTBOX, TASKS, Op, Store
from agent.protocol import Result, open_envelope
from tests.agent.conftest import TIMEOUT, TOPICS, AgentProcess, Site, agent_process
from tests.support.mqtt import TestClient

RESULTS = TOPICS.prefix + "/results/node-1/#"


def _collect(site: Site, watcher: TestClient, until: float) -> list[tuple[Result, bytes]]:
    out = []
    while time.monotonic() < until:
        try:
            message = watcher.messages.get(timeout=0.05)
        except Exception:
            return out
        out.append((site.open(message), bytes(message.payload)))
    return out


def _wait_online(site: Site, presence: TestClient, proc: AgentProcess) -> None:
    """The agent's birth (its subscriptions are in its persistent session from the first start)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.proc.poll() is None, proc.output()
        try:
            message = presence.messages.get(timeout=0.1)
        except Exception:
            continue
        if site.open(message).state == "online":
            return
    raise AssertionError("the agent did not come online\n" + proc.output())


def test_kill_9_repeatedly_loses_nothing_and_repeats_nothing(any_site: Site) -> None:
    """Every acknowledged task ends with exactly one result per run (byte-identical if re-sent),
    and a task whose completion was published never runs again."""
    site = any_site
    rng = random.Random(11)
    marks = site.tmp / "executions.log"
    watcher = site.client("dash-1", client_id="watcher", clean=False)
    watcher.subscribe(RESULTS, 1)
    presence = site.watch(TOPICS.presence("node-1"))
    device = site.client("sensor-1")
    env = {"workers_count": 2, "scheduling_retry_base_s": 0.05, "store_compact_bytes": 65536}
    expected: set[str] = set()
    seen: list[tuple[Result, bytes]] = []
    with agent_process(site, **env) as proc:  # the first start creates the persistent session
        _wait_online(site, presence, proc)
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(TIMEOUT) == 0
    for round_ in range(4):
        for n in range(15):  # queued at the broker while the agent is down, then taken in one go
            tag = f"r{round_}-{n}"
            params = {"path": str(marks), "tag": tag, "seconds": rng.choice([0.0, 0.05, 0.2])}
            site.submit(device, "sensor-1", "test.mark", params, task_id=tag, max_retries=10)
            expected.add(tag)
        with agent_process(site, **env) as proc:
            _wait_online(site, presence, proc)
            seen += _collect(site, watcher, time.monotonic() + rng.uniform(0.2, 1.2))
            proc.proc.kill()  # SIGKILL at a random moment
            proc.proc.wait(TIMEOUT)
    with agent_process(site, **env) as proc:  # the last life: runs everything that is left
        _wait_online(site, presence, proc)
        deadline = time.monotonic() + 90
        while {r.id for r, _ in seen if r.status == "completed"} != expected and time.monotonic() < deadline:
            seen += _collect(site, watcher, time.monotonic() + 0.5)
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(TIMEOUT) == 0, proc.output()
    payloads: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    results: dict[str, Result] = {}
    for result, payload in seen:
        payloads[(result.id, result.run)].add(payload)
        results[result.id] = result
    assert set(results) == expected, f"missing results: {sorted(expected - set(results))}"
    assert all(len(p) == 1 for p in payloads.values()), "a result was re-sent with different bytes"
    assert all(r.status == "completed" and r.run == 1 for r in results.values())
    executions: dict[str, list[float]] = defaultdict(list)
    for line in marks.read_text().splitlines():
        tag, _, started = line.split()
        executions[tag].append(float(started))
    for tag, result in results.items():
        assert result.started_at is not None
        assert max(executions[tag]) <= result.started_at + 0.5, f"{tag} ran again after its completed run"
    store = Store.open(site.tmp / "data-node-1")
    assert store.count(TASKS) == 0 and store.count(OUTBOX) == 0
    store.close()


def test_a_full_disk_stops_the_agent_with_a_clear_error_and_loses_no_task(any_site: Site) -> None:
    """The journal cannot grow (a full disk, here RLIMIT_FSIZE): the agent stops with status 1 and
    says why; nothing it did not make durable was acknowledged, so after a start with space again
    every task ends with exactly one result (byte-identical if re-sent)."""
    site = any_site
    watcher = site.client("dash-1", client_id="watcher", clean=False)
    watcher.subscribe(RESULTS, 1)
    presence = site.watch(TOPICS.presence("node-1"))
    device = site.client("sensor-1")
    ids = [f"t{n}" for n in range(300)]
    seen: list[tuple[Result, bytes]] = []
    with agent_process(site, file_size_limit=64 << 10) as proc:
        _wait_online(site, presence, proc)
        for task_id in ids:
            site.submit(device, "sensor-1", "stats", {"signal": [float(len(task_id))] * 32}, task_id=task_id)
        assert proc.proc.wait(TIMEOUT) == 1, proc.output()
        seen += _collect(site, watcher, time.monotonic() + 1.0)
    output = proc.output()
    assert re.search(
        r"the store cannot write: appending \d+ bytes to \S+ failed: File too large; the file "
        r"was cut back to its last whole frame",
        output,
    ), output
    assert "File too large; the file was cut back to its last whole frame (byte" in output
    assert "): stopping. Tasks not yet stored were not acknowledged" in output
    assert len({r.id for r, _ in seen}) < len(ids), "the disk filled up too late to test anything"
    with agent_process(site) as proc:  # space again
        _wait_online(site, presence, proc)
        deadline = time.monotonic() + 60
        while {r.id for r, _ in seen} != set(ids) and time.monotonic() < deadline:
            seen += _collect(site, watcher, time.monotonic() + 0.5)
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(TIMEOUT) == 0, proc.output()
    payloads: dict[str, set[bytes]] = defaultdict(set)
    for result, payload in seen:
        assert (result.status, result.run, result.result["mean"]) == ("completed", 1, len(result.id))
        payloads[result.id].add(payload)
    assert set(payloads) == set(ids), f"lost: {sorted(set(ids) - set(payloads))}"
    assert all(len(p) == 1 for p in payloads.values()), "a result was re-sent with different bytes"


@pytest.mark.parametrize("transport", ["tls", "plain"])
def test_a_broker_restart_while_results_are_pending_loses_none(any_site: Site, transport: str) -> None:
    """Plain TCP too: there the store's writer writes each result itself (`publish_here`), and
    falls back to the network thread while the connection is down."""
    site = any_site
    watcher = site.client("dash-1", client_id="watcher", clean=False)
    watcher.subscribe(RESULTS, 1)
    device = site.client("sensor-1", client_id="device", clean=False)
    plain = {"mqtt_tls": "false", "mqtt_port": site.broker.port} if transport == "plain" else {}
    with site.agent(workers_count=2, **plain) as agent:
        ids = [
            site.submit(device, "sensor-1", "test.sleep", {"seconds": 0.4}, task_id=f"t{n}").id
            for n in range(8)
        ]
        _wait_until(lambda: agent.lifecycle.totals["completed"] >= 2)
        site.broker.restart()  # results keep coming while it is down and after
        _wait_until(lambda: agent.lifecycle.totals["completed"] == 8)
        _wait_until(lambda: agent.link.connected)
        assert agent.outbox.wait_empty(TIMEOUT), "results never acknowledged after the restart"
        got: set[str] = set()
        deadline = time.monotonic() + 60
        while got != set(ids) and time.monotonic() < deadline:  # at least once: duplicates may come
            got |= {r.id for r in site.results(watcher, 1, timeout=max(0.1, deadline - time.monotonic()))}
    assert got == set(ids)


@pytest.mark.parametrize("row", ["body", "payload"])
def test_a_restart_re_publishes_a_stored_result_with_the_bytes_it_had(any_site: Site, row: str) -> None:
    """The outbox stores a result's body and signs it on the way out: after a restart the stored
    body, signed again with the agent's key, must give the bytes first published (Ed25519 is
    deterministic). `payload`: a row as schema 1 stored it (signed), sent as it is."""
    site = any_site
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent() as agent:
        task = site.submit(device, "sensor-1", "stats", {"signal": [1.0, 2.0, 4.0]}, task_id="kept")
        [first] = watcher.expect(1)
        assert agent.outbox.wait_empty(TIMEOUT)
    assert site.open(first).status == "completed"
    sent = bytes(first.payload)
    # What a kill -9 between the commit and the PUBACK leaves: the result's row, still unsent.
    store = Store.open(site.tmp / "data-node-1")
    doc = {"body": open_envelope(sent).body} if row == "body" else {"payload": sent}
    store.commit_sync([Op(OUTBOX, f"sensor-1/{task.id}#1", {"topic": first.topic, "at": time.time(), **doc})])
    store.close()
    with site.agent() as agent:
        [again] = watcher.expect(1)
        assert agent.outbox.wait_empty(TIMEOUT), "the re-sent result was never acknowledged"
        assert agent.lifecycle.totals["completed"] == 0  # re-sent, not run again
    assert again.topic == first.topic
    assert bytes(again.payload) == sent


def _wait_until(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_clean_stop_keeps_queued_tasks_and_does_not_count_the_interrupted_attempt(site: Site) -> None:
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent(workers_count=1, workers_grace_s=0) as agent:
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 3.0}, task_id="long", max_retries=0)
        for n in range(3):
            site.submit(device, "sensor-1", "stats", {"signal": [1.0]}, task_id=f"q{n}")
        _wait_until(lambda: agent.pool.busy == 1 and agent.store.count(TASKS) == 4)
    with site.agent(workers_count=1):  # `long` is killed by the stop (grace 0) and runs again
        results = {r.id: r for r in site.results(watcher, 4, timeout=60)}
    assert {k: (r.status, r.attempt) for k, r in results.items()} == {
        "long": ("completed", 1),
        "q0": ("completed", 1),
        "q1": ("completed", 1),
        "q2": ("completed", 1),
    }


def test_a_clean_stop_lets_the_running_attempt_finish_and_starts_no_new_one(site: Site) -> None:
    """Within `grace_s` the attempt that was running completes; the queued tasks are not started
    (their attempts would count against them otherwise), they run at the next start."""
    watcher = site.watch(RESULTS)
    device = site.client("sensor-1")
    with site.agent(workers_count=1, workers_grace_s=10) as agent:
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 1.0}, task_id="long")
        for n in range(3):
            site.submit(device, "sensor-1", "stats", {"signal": [1.0]}, task_id=f"q{n}")
        _wait_until(lambda: agent.pool.busy == 1 and agent.store.count(TASKS) == 4)
    first = {r.id: r for r in site.results(watcher, 1)}
    assert {k: (r.status, r.attempt) for k, r in first.items()} == {"long": ("completed", 1)}
    stored = Store.open(site.tmp / "data-node-1")
    try:  # never started: still queued, no attempt counted
        left = {key.split("/")[-1]: (row["status"], row["attempt"]) for key, row in stored.rows(TASKS)}
    finally:
        stored.close()
    assert left == {"q0": ("queued", 0), "q1": ("queued", 0), "q2": ("queued", 0)}
    with site.agent(workers_count=1):
        rest = {r.id: r for r in site.results(watcher, 3, timeout=60)}
    assert {k: (r.status, r.attempt) for k, r in rest.items()} == {
        "q0": ("completed", 1),
        "q1": ("completed", 1),
        "q2": ("completed", 1),
    }


def test_damaged_state_stops_the_start_with_a_message(site: Site) -> None:
    with agent_process(site) as proc:
        pass  # killed at once: whatever it wrote is a valid state
    with site.agent():
        pass
    state = Path(site.tmp / "data-node-1" / "state")
    journal = next(state.glob("journal.*.log"))
    journal.write_bytes(b"\x10\x00\x00\x00garbage-garbage-" + b"x" * 64)
    with agent_process(site) as proc:
        assert proc.proc.wait(TIMEOUT) == 1
        assert "journal" in proc.output() and "checksum" in proc.output()
    journal.unlink()
    (state / "snapshot").write_bytes(b"not a snapshot")
    with agent_process(site) as proc:
        assert proc.proc.wait(TIMEOUT) == 1
        assert "snapshot: not a valid snapshot (too short to be a snapshot" in proc.output()
