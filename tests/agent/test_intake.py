"""Every rejection of PROTOCOL 4 and 5 with its exact code, the agent still serving afterwards;
rejects reports rate-limited and audited; a redelivery produces nothing new."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from agent.protocol import (
    Ed25519Signer,
    RejectReport,
    Result,
    Signer,
    build_task,
    make_control,
    open_envelope,
    packb,
    seal,
    sign_task,
)
from tests.agent.conftest import TIMEOUT, TOPICS, Site

NODE_TOPIC = TOPICS.tasks("node-1")
GOOD = {"signal": [1.0, 2.0, 3.0]}


def _body(**changes: Any) -> dict[str, Any]:
    body = build_task("stats", GOOD, "node-1").to_body()
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _signed(signer: Signer, body: dict[str, Any]) -> bytes:
    return seal(packb(body), signer)


def _task_cases(site: Site) -> list[tuple[str, str, bytes, str]]:
    """(code, topic, payload, task id) for every `rejected` result of PROTOCOL 4."""
    sensor, operator = site.signer("sensor-1"), site.signer("op-1")
    now = time.time()
    first = build_task("stats", GOOD, "node-1", task_id="first")
    replay = first.to_body() | {"id": "other-id"}  # the nonce of `first` again
    reused = build_task("stats", GOOD, "node-1", task_id="first")  # the id of `first`, another body
    cases = [
        ("malformed", NODE_TOPIC, _signed(sensor, _body(id="no-kernel", kernel=None)), "no-kernel"),
        ("malformed", NODE_TOPIC, _signed(sensor, _body(id="bad-priority", priority=12)), "bad-priority"),
        (
            "target_mismatch",
            NODE_TOPIC,
            _signed(sensor, _body(id="for-node-2", target="node-2")),
            "for-node-2",
        ),
        ("not_yet_valid", NODE_TOPIC, _signed(sensor, _body(id="future", issued_at=now + 600)), "future"),
        (
            "expired",
            NODE_TOPIC,
            _signed(sensor, _body(id="old", issued_at=now - 60, expires_at=now - 1)),
            "old",
        ),
        ("ttl_too_long", NODE_TOPIC, _signed(sensor, _body(id="long", expires_at=now + 3 * 86400)), "long"),
        ("unknown_kernel", NODE_TOPIC, _signed(sensor, _body(id="nope", kernel="nope")), "nope"),
        (
            "unknown_kernel",
            NODE_TOPIC,
            _signed(sensor, _body(id="sys-on-tasks", kernel="sys.status")),
            "sys-on-tasks",
        ),
        (
            "invalid_params",
            NODE_TOPIC,
            _signed(sensor, _body(id="bad-params", params={"signal": "x"})),
            "bad-params",
        ),
    ]
    stats_on_control = build_task("stats", GOOD, "node-1", task_id="stats-on-control")
    cases.append(
        (
            "unknown_kernel",
            TOPICS.control("node-1"),
            sign_task(stats_on_control, operator),
            "stats-on-control",
        )
    )
    topic, payload, control = make_control(
        operator, "node-1", "sys.frobnicate", {}, task_id="unknown-command"
    )
    cases.append(("unknown_kernel", topic, payload, control.id))
    cases += [
        ("completed", NODE_TOPIC, sign_task(first, sensor), "first"),
        ("replayed", NODE_TOPIC, _signed(sensor, replay), "other-id"),
        ("duplicate_id", NODE_TOPIC, sign_task(reused, sensor), "first"),
    ]
    return cases


def _auth_cases(site: Site) -> list[tuple[str, str, bytes]]:
    """(code, topic, payload) for every rejects report of PROTOCOL 5."""
    sensor = site.signer("sensor-1")
    good = _signed(sensor, _body())
    tampered = bytearray(good)
    tampered[-5] ^= 0x01  # inside the signature
    envelope_v2 = packb({"v": 2, "alg": "ed25519", "kid": "sensor-1", "body": b"x", "sig": b"y" * 64})
    return [
        ("malformed", NODE_TOPIC, b"\xc1 not msgpack"),
        ("malformed", NODE_TOPIC, envelope_v2),
        ("malformed", NODE_TOPIC, _signed(sensor, _body(id=None))),  # check 4 without a readable id
        ("too_large", NODE_TOPIC, os.urandom(70_000)),
        ("unknown_key", NODE_TOPIC, _signed(Ed25519Signer.generate("stranger"), _body())),
        ("revoked_key", NODE_TOPIC, _signed(site.signer("old-device"), _body())),
        ("wrong_role", TOPICS.control("node-1"), _signed(sensor, _body(kernel="sys.status"))),
        ("bad_signature", NODE_TOPIC, bytes(tampered)),
    ]


def test_every_rejection_has_its_code_and_the_agent_keeps_serving(any_site: Site) -> None:
    site = any_site
    site.env["EDGE_SECURITY_MAX_PAYLOAD"] = "65536"
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#", TOPICS.rejects("node-1"))
    device, operator = site.client("sensor-1"), site.client("op-1")
    with site.agent(rejects_rate_per_s=100) as agent:
        task_cases, auth_cases = _task_cases(site), _auth_cases(site)
        for _code, topic, payload, _ in task_cases:
            (operator if "/control/" in topic else device).publish(topic, payload)
        for _code, topic, payload in auth_cases:
            (operator if "/control/" in topic else device).publish(topic, payload)
        last = site.submit(device, "sensor-1", "stats", GOOD, task_id="still-serving")
        messages = []
        # Until every result and every rejects report: they are not ordered (a rejection leaves
        # when its batch is durable, a result when its own commit is; either may come first).
        reports_topic = TOPICS.rejects("node-1")
        while (
            not any(m.topic.endswith("/still-serving") for m in messages)
            or sum(m.topic == reports_topic for m in messages) < len(auth_cases)
            or sum(m.topic != reports_topic for m in messages) < len(task_cases) + 1
        ):
            messages += watcher.expect(1, TIMEOUT)
        opened = [site.open(m) for m in messages]
        assert agent.run_until_idle()
        audit = [json.loads(line) for line in agent.config.audit_file.read_text().splitlines()]
    results = [
        (r.status if r.status != "rejected" else r.error["code"], r.id)
        for r in opened
        if isinstance(r, Result)
    ]
    assert sorted(results) == sorted(
        [(code, task_id) for code, _, _, task_id in task_cases] + [("completed", last.id)]
    )
    reports = [r for r in opened if isinstance(r, RejectReport)]
    assert sorted(r.code for r in reports) == sorted(code for code, _, _ in auth_cases)
    by_code = {r.code: r for r in reports}
    assert by_code["unknown_key"].kid == "stranger" and by_code["revoked_key"].kid == "old-device"
    assert all(len(r.sha256) == 32 and r.topic.startswith("edge/") for r in reports)
    unauthenticated = [a for a in audit if a["event"] == "unauthenticated"]
    assert sorted(a["code"] for a in unauthenticated) == sorted(code for code, _, _ in auth_cases)
    audited_rejections = {a["code"] for a in audit if a["event"] == "task_rejected"}
    assert {"replayed", "duplicate_id", "target_mismatch", "not_yet_valid", "expired"} <= audited_rejections


def test_rejects_reports_are_rate_limited_but_all_audited(site: Site) -> None:
    watcher = site.watch(TOPICS.rejects("node-1"), TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    with site.agent(rejects_rate_per_s=2) as agent:
        for n in range(12):
            device.publish(NODE_TOPIC, b"garbage %d" % n)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="marker")
        messages = watcher.expect_until(TOPICS.results("node-1", "marker"), TIMEOUT)
        assert agent.run_until_idle()
        assert agent.intake.counts["unauthenticated"] == 12
        assert agent.intake.rejects_limit.refused >= 8
        lines = agent.config.audit_file.read_text().splitlines()
    reports = [m for m in messages if m.topic == TOPICS.rejects("node-1")]
    assert 2 <= len(reports) <= 4
    assert sum(1 for line in lines if '"unauthenticated"' in line) == 12


def test_a_redelivery_is_acknowledged_and_produces_nothing_new(site: Site) -> None:
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    with site.agent() as agent:
        topic, payload, task = site.task("sensor-1", "stats", GOOD)
        for _ in range(3):
            device.publish(topic, payload)  # acknowledged each time: publish() waits for the PUBACK
        site.submit(device, "sensor-1", "stats", GOOD, task_id="marker")
        messages = watcher.expect_until(TOPICS.results("node-1", "marker"), TIMEOUT)
        assert agent.run_until_idle()
        assert agent.intake.counts["redelivered"] == 2
    assert [m.topic for m in messages].count(TOPICS.results("node-1", task.id)) == 1


def test_a_stream_of_impossible_cron_expressions_is_refused_and_other_tasks_keep_flowing(site: Site) -> None:
    """`0 0 31 4,6,9,11 *` passed check 4, and working out its next run took 0.2-0.7 s on the
    intake thread under the lifecycle's lock: 40 of them stalled every task for 10-30 s."""
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    impossible = ["0 0 31 4,6,9,11 *", "0 0 30 2 *", "*/1 * 31 2,4,6,9,11 *", "0-59 0-23 30,31 2 *"]
    sensor = site.signer("sensor-1")
    with site.agent():
        started = time.monotonic()
        for n in range(40):  # signed as they are: the client library checks the expression too
            device.publish(NODE_TOPIC, _signed(sensor, _body(id=f"never-{n}", cron=impossible[n % 4])))
            site.submit(device, "sensor-1", "stats", GOOD, task_id=f"plain-{n}")
        results = {r.id: r for r in site.results(watcher, 80)}
        elapsed = time.monotonic() - started
    for n in range(40):
        never, plain = results[f"never-{n}"], results[f"plain-{n}"]
        assert (never.status, never.error and never.error["code"]) == ("rejected", "malformed"), never.error
        assert never.error is not None and never.error["message"].startswith("'cron'")
        assert "no fire time within the next 5 years" in never.error["message"]
        assert plain.status == "completed"
    assert elapsed < 15, f"80 tasks took {elapsed:.1f} s"


def test_a_queue_full_of_bytes_answers_overloaded_and_the_same_bytes_are_accepted_later(site: Site) -> None:
    """Check 9's second bound: the bodies the agent holds (in memory and in every snapshot), not
    their number. Three tasks of 20 KB wait for their `run_at`; a fourth would pass 64 KiB, before
    and after a restart. Once they have run, the same bytes are accepted."""
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    big = {"signal": np.linspace(0.0, 1.0, 2500)}  # 20 KB as an ext array
    limits = {"limits_queue_bytes": 1 << 16, "security_max_payload": 1 << 16}
    run_at = time.time() + 10
    waiting = [site.task("sensor-1", "stats", big, task_id=f"big-{n}", run_at=run_at) for n in range(3)]
    topic, payload, _task = site.task("sensor-1", "stats", big, task_id="one-too-many")
    held = sum(len(open_envelope(p).body) for _, p, _ in waiting)
    for life in range(2):
        with site.agent(**limits) as agent:
            if life == 0:
                for task_topic, task_payload, _ in waiting:
                    device.publish(task_topic, task_payload)
            device.publish(topic, payload)
            [overloaded] = site.results(watcher, 1)
            assert (overloaded.id, overloaded.status, overloaded.error["code"]) == (
                "one-too-many",
                "rejected",
                "overloaded",
            )
            assert overloaded.error["message"] == f"the queue is full ({1 << 16} bytes of task bodies)"
            assert agent.lifecycle.active_bytes() == held  # restored with the tasks in the second life
    with site.agent(**limits) as agent:
        done = site.results(watcher, 3, timeout=run_at - time.time() + TIMEOUT)
        assert sorted((r.id, r.status) for r in done) == [(f"big-{n}", "completed") for n in range(3)]
        assert agent.run_until_idle() and agent.lifecycle.active_bytes() == 0
        device.publish(topic, payload)  # not claimed when refused: evaluated again, accepted now
        [late] = site.results(watcher, 1)
        assert (late.id, late.status, late.result["mean"]) == ("one-too-many", "completed", 0.5)
        assert agent.run_until_idle() and agent.lifecycle.active_bytes() == 0


def test_a_full_queue_answers_overloaded_and_the_same_bytes_are_accepted_later(site: Site) -> None:
    watcher = site.watch(TOPICS.prefix + "/results/node-1/#")
    device = site.client("sensor-1")
    with site.agent(limits_queue_capacity=1, workers_count=1) as agent:
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 1.0}, task_id="sleeper")
        topic, payload, _task = site.task("sensor-1", "stats", GOOD, task_id="late")
        device.publish(topic, payload)
        [overloaded] = site.results(watcher, 1)
        assert (overloaded.id, overloaded.status, overloaded.error["code"]) == (
            "late",
            "rejected",
            "overloaded",
        )
        assert [r.id for r in site.results(watcher, 1)] == ["sleeper"]
        device.publish(topic, payload)  # the claim was released: evaluated again, accepted now
        [done] = site.results(watcher, 1)
        assert (done.id, done.status) == ("late", "completed")
        assert agent.run_until_idle()
