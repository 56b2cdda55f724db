"""Control commands (PROTOCOL 8) against a real agent and broker: status, list, cancel of every kind
of task, drain/resume under load (and across a restart), reload, and every refusal."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from agent.node.exec.pool import WorkerPool, WorkerSettings
from agent.node.intake.control import COMMANDS
from agent.node.store import TASKS
from agent.protocol import (
    Event,
    Heartbeat,
    Presence,
    RejectReport,
    Result,
    build_task,
    make_control,
    packb,
    sign_task,
)
from tests.agent.conftest import TIMEOUT, TOPICS, AgentProcess, Site, agent_process
from tests.support.fleet import edge_provision
from tests.support.mqtt import TestClient

RESULTS = TOPICS.prefix + "/results/node-1/#"
GOOD = {"signal": [1.0, 2.0, 3.0]}


def wait_for(condition: Any, timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached in time"
        time.sleep(0.01)


class Answers:
    """Verified results (and events, rejects reports) from a dashboard connection, by task id."""

    def __init__(self, site: Site, *filters: str) -> None:
        self.site = site
        self.watcher: TestClient = site.watch(RESULTS, *filters)
        self.results: dict[str, list[Result]] = {}
        self.others: list[Any] = []

    def _pump(self, timeout: float) -> None:
        message = self.watcher.expect(1, timeout)[0]
        opened = self.site.open(message)
        if isinstance(opened, Result):
            self.results.setdefault(opened.id, []).append(opened)
        else:
            self.others.append(opened)

    def result(self, task_id: str, count: int = 1, timeout: float = TIMEOUT) -> Result:
        """The `count`-th result of `task_id` (waiting for it)."""
        deadline = time.monotonic() + timeout
        while len(self.results.get(task_id, [])) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"no result {count} for {task_id}; have {sorted(self.results)}"
            self._pump(left)
        return self.results[task_id][count - 1]

    def drain(self) -> None:
        """Everything routed to the watcher so far."""
        self.watcher.sync()
        while not self.watcher.messages.empty():
            self._pump(1.0)


class Operator:
    """`op-1` (a `control` key) sending commands over its own broker login."""

    def __init__(self, site: Site, answers: Answers) -> None:
        self.site = site
        self.client = site.client("op-1")
        self.signer = site.signer("op-1")
        self.answers = answers
        self._n = 0

    def send(self, command: str, params: dict[str, Any] | None = None, **options: Any) -> str:
        self._n += 1
        options.setdefault("task_id", f"cmd-{self._n}-{command}")
        topic, payload, task = make_control(self.signer, "node-1", command, params or {}, **options)
        self.client.publish(topic, payload)
        return task.id

    def __call__(self, command: str, params: dict[str, Any] | None = None, **options: Any) -> Result:
        """Send and wait for the answer."""
        return self.answers.result(self.send(command, params, **options))


def rejected_with(result: Result, code: str, field: str) -> bool:
    return (
        result.status == "rejected"
        and result.error is not None
        and result.error["code"] == code
        and field in result.error["message"]
    )


def test_status_and_list_show_live_and_finished_tasks(site: Site) -> None:
    answers = Answers(site)
    op = Operator(site, answers)
    device, mcu = site.client("sensor-1"), site.client("mcu-1")
    with site.agent() as agent:
        trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        site.submit(device, "sensor-1", "stats", GOOD, task_id="done", priority=7, trace=trace)
        site.submit(device, "sensor-1", "test.fail", {"message": "no"}, task_id="fails", max_retries=0)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="later", run_at=time.time() + 120)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="shared")
        site.submit(mcu, "mcu-1", "stats", GOOD, task_id="shared")
        for task_id in ("done", "fails"):
            answers.result(task_id)
        answers.result("shared", 2)
        wait_for(lambda: agent.store.get(TASKS, "sensor-1/later") is not None)

        assert set(agent.control.handlers) == set(COMMANDS)  # what CLIs list is what is answered
        done = op("sys.status", {"task": "done"})
        assert (done.status, done.kernel, done.error) == ("completed", "sys.status", None)
        record = done.result
        assert (record["id"], record["kid"], record["kernel"], record["status"]) == (
            "done",
            "sensor-1",
            "stats",
            "completed",
        )
        assert (record["priority"], record["run"], record["attempts"], record["trace"]) == (7, 1, 1, trace)
        assert record["received_at"] <= record["started_at"] <= record["finished_at"]

        fails = op("sys.status", {"task": "fails"}).result
        assert (fails["status"], fails["attempts"]) == ("abandoned", 1)
        assert fails["last_error"]["code"] == "kernel_error" and fails["last_error"]["message"].endswith("no")

        later = op("sys.status", {"task": "later", "kid": "sensor-1"}).result
        assert (later["status"], later["waiting_for"], later["started_at"]) == ("scheduled", "start", None)
        assert later["next_at"] > time.time() + 100

        # the same id from two issuers: ambiguous without `kid`
        ambiguous = op("sys.status", {"task": "shared"})
        assert (
            rejected_with(ambiguous, "invalid_params", "sensor-1") and "mcu-1" in ambiguous.error["message"]
        )
        assert op("sys.status", {"task": "shared", "kid": "mcu-1"}).result["kid"] == "mcu-1"

        unknown = op("sys.status", {"task": "never-sent"})
        assert rejected_with(unknown, "invalid_params", "never-sent")
        assert rejected_with(op("sys.status", {}), "invalid_params", "'task'")
        assert rejected_with(op("sys.status", {"task": "a/b"}), "invalid_params", "'task'")
        assert rejected_with(op("sys.status", {"task": "done", "verbose": True}), "invalid_params", "verbose")

        everything = op("sys.list").result
        assert [t["id"] for t in everything["tasks"]] == ["shared", "shared", "later", "fails", "done"]
        assert everything["more"] is False
        completed = op("sys.list", {"status": "completed"}).result["tasks"]
        assert sorted(t["id"] for t in completed) == ["done", "shared", "shared"]
        scheduled = op("sys.list", {"status": "scheduled"}).result["tasks"]
        assert [t["id"] for t in scheduled] == ["later"]
        mine = op("sys.list", {"kid": "mcu-1"}).result["tasks"]
        assert [(t["id"], t["kid"]) for t in mine] == [("shared", "mcu-1")]
        newest = op("sys.list", {"limit": 2}).result
        assert (len(newest["tasks"]), newest["more"]) == (2, True)
        for params, field in (
            ({"limit": 0}, "limit"),
            ({"limit": 1001}, "limit"),
            ({"limit": "5"}, "limit"),
            ({"status": "finished"}, "status"),
            ({"order": "asc"}, "order"),
        ):
            assert rejected_with(op("sys.list", params), "invalid_params", field), params
        assert agent.run_until_idle()


def test_cancel_queued_scheduled_recurring_and_running_tasks(site: Site) -> None:
    answers = Answers(site)
    op = Operator(site, answers)
    device = site.client("sensor-1")
    with site.agent(workers_count=2) as agent:
        # a recurring task between two runs: its next run is the one cancelled, and no run follows
        site.submit(device, "sensor-1", "stats", GOOD, task_id="every", every_s=2.0)
        assert answers.result("every").run == 1
        cancel_every = op("sys.cancel", {"task": "every"}).result
        assert cancel_every["cancelled"] is True and cancel_every["was"] in ("scheduled", "queued", "running")
        every = answers.result("every", 2)
        assert (every.status, every.run, every.error["code"]) == ("cancelled", 2, "cancelled")
        assert "op-1" in every.error["message"]
        assert not agent.lifecycle.timers.has("run:sensor-1/every")

        # both workers busy, then a queued and a scheduled task behind them
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 60}, task_id="running", timeout_s=120)
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 60}, task_id="blocker", timeout_s=120)
        wait_for(lambda: agent.pool.busy == 2, what="both workers busy")
        pids = {w.index: w.pid for w in agent.pool.workers}
        site.submit(device, "sensor-1", "stats", GOOD, task_id="queued")
        site.submit(device, "sensor-1", "stats", GOOD, task_id="scheduled", run_at=time.time() + 60)
        wait_for(lambda: agent.store.get(TASKS, "sensor-1/scheduled") is not None)

        assert op("sys.cancel", {"task": "queued"}).result["was"] == "queued"
        assert op("sys.cancel", {"task": "scheduled"}).result["was"] == "scheduled"
        running_answer = op("sys.cancel", {"task": "running"}).result
        assert (running_answer["cancelled"], running_answer["was"]) == (True, "running")
        for task_id, started in (("queued", False), ("scheduled", False), ("running", True)):
            result = answers.result(task_id)
            assert (result.status, result.error["code"]) == ("cancelled", "cancelled"), task_id
            assert (result.started_at is not None) == started, task_id
        assert answers.result("running").attempt == 1
        assert not agent.lifecycle.timers.has("start:sensor-1/scheduled")

        # the killed worker was replaced: the pool keeps its size and runs new tasks
        site.submit(device, "sensor-1", "stats", GOOD, task_id="after")
        assert answers.result("after").status == "completed"
        assert len(agent.pool.workers) == 2
        assert sum(1 for w in agent.pool.workers if w.pid != pids[w.index]) == 1
        assert sum(w.restarts for w in agent.pool.workers) == 1

        again = op("sys.cancel", {"task": "running"}).result
        assert (again["cancelled"], again["was"], again["reason"]) == (
            False,
            "cancelled",
            "already cancelled",
        )
        assert rejected_with(op("sys.cancel", {"task": "nothing-like-it"}), "invalid_params", "task")
        assert op("sys.cancel", {"task": "blocker"}).result["was"] == "running"
        assert answers.result("blocker").status == "cancelled"
        assert agent.run_until_idle()
        time.sleep(2.5)  # `every` would have run again by now
        answers.drain()
        assert [r.status for r in answers.results["every"]] == ["completed", "cancelled"]
        for task_id in ("queued", "scheduled", "running", "blocker"):
            assert len(answers.results[task_id]) == 1, task_id  # one terminal result, not retried


def test_drain_refuses_new_tasks_while_queued_ones_finish_then_resume(site: Site) -> None:
    answers = Answers(site, TOPICS.heartbeat("node-1"))
    op = Operator(site, answers)
    device = site.client("sensor-1")
    with site.agent(workers_count=2, heartbeat_interval_s=0.5) as agent:
        gates = ["gate-1", "gate-2"]  # hold both workers until cancelled: 20 tasks stay queued
        for task_id in gates:
            site.submit(device, "sensor-1", "test.sleep", {"seconds": 60}, task_id=task_id, timeout_s=120)
        queued = [f"q-{n}" for n in range(20)]
        for task_id in queued:
            site.submit(device, "sensor-1", "stats", GOOD, task_id=task_id)
        wait_for(lambda: agent.intake.counts["accepted"] == 22 and agent.pool.busy == 2, what="22 accepted")
        drained = op("sys.drain").result
        assert drained == {"state": "draining", "changed": True, "queued": 20, "running": 2}
        refused = [f"r-{n}" for n in range(100)]
        for task_id in refused:
            site.submit(device, "sensor-1", "stats", GOOD, task_id=task_id)
        assert op("sys.status", {"task": "q-0"}).result["status"] == "queued"  # control still answered
        assert op("sys.drain").result["changed"] is False
        for task_id in refused:
            result = answers.result(task_id)
            assert (result.status, result.error["code"]) == ("rejected", "overloaded"), task_id
            assert "draining" in result.error["message"]
        for task_id in gates:
            assert op("sys.cancel", {"task": task_id}).result["cancelled"] is True
        for task_id in queued:  # accepted before the drain: they still run
            assert answers.result(task_id).status == "completed", task_id
        answers.drain()
        assert "draining" in [h.state for h in answers.others if isinstance(h, Heartbeat)]

        resumed = op("sys.resume").result
        assert (resumed["state"], resumed["changed"]) == ("running", True)
        for n in range(5):
            site.submit(device, "sensor-1", "stats", GOOD, task_id=f"after-{n}")
        for n in range(5):
            assert answers.result(f"after-{n}").status == "completed"
        assert agent.run_until_idle()
        answers.drain()
        assert agent.counts().state == "running"
    for task_id in gates + queued + refused:
        assert len(answers.results[task_id]) == 1, task_id  # answered exactly once, none lost


def test_a_drained_agent_stays_drained_after_a_restart(site: Site) -> None:
    answers = Answers(site)
    op = Operator(site, answers)
    device = site.client("sensor-1")
    topic, payload, drain = make_control(op.signer, "node-1", "sys.drain", {}, task_id="drain-before-restart")
    with site.agent():
        op.client.publish(topic, payload)
        assert answers.result(drain.id).result["changed"] is True
    with site.agent() as agent:
        assert agent.draining and agent.counts().state == "draining"
        op.client.publish(topic, payload)  # the same command after the restart: recognised, not run
        wait_for(lambda: agent.intake.counts["redelivered"] == 1, what="the redelivery recognised")
        site.submit(device, "sensor-1", "stats", GOOD, task_id="while-drained")
        assert answers.result("while-drained").error["code"] == "overloaded"
        assert op("sys.resume").result["changed"] is True
        site.submit(device, "sensor-1", "stats", GOOD, task_id="resumed")
        assert answers.result("resumed").status == "completed"
    with site.agent() as agent:
        assert not agent.draining
    answers.drain()
    assert len(answers.results[drain.id]) == 1


def test_a_draining_pool_member_leaves_the_pool_to_the_others(any_site: Site) -> None:
    site = any_site
    answers = Answers(site, TOPICS.prefix + "/results/node-2/#")
    op = Operator(site, answers)
    device = site.client("sensor-1")
    with site.agent("node-1"), site.agent("node-2"):
        # node-1 sends its UNSUBSCRIBE (then SUBSCRIBE at resume) before the command's answer, on
        # the same connection: once the answer is here, the broker has processed it
        assert op("sys.drain").result["changed"] is True
        drained = [f"drained-{n}" for n in range(12)]
        for task_id in drained:
            site.submit(device, "sensor-1", "stats", GOOD, task_id=task_id, target="pool:cams")
        for task_id in drained:  # none refused by the draining member: all went to node-2
            result = answers.result(task_id)
            assert (result.node, result.status) == ("node-2", "completed"), (task_id, result.error)
        assert op("sys.resume").result["changed"] is True
        resumed = [f"resumed-{n}" for n in range(12)]
        for task_id in resumed:
            site.submit(device, "sensor-1", "stats", GOOD, task_id=task_id, target="pool:cams")
        nodes = [answers.result(task_id).node for task_id in resumed]
        assert all(answers.result(t).status == "completed" for t in resumed)
        assert "node-1" in nodes  # back in the pool


def test_control_refusals_and_replay_on_both_brokers(any_site: Site) -> None:
    site = any_site
    answers = Answers(site, TOPICS.rejects("node-1"))
    op = Operator(site, answers)
    device = site.client("sensor-1")
    sensor = site.signer("sensor-1")
    with site.agent() as agent:
        # a control command signed by a `task` key: never run or answered, a rejects report
        topic, payload, _ = make_control(sensor, "node-1", "sys.drain", {}, task_id="not-an-operator")
        op.client.publish(topic, payload)
        # sys.* on a tasks topic, and a kernel on the control topic: unknown_kernel
        site.submit(device, "sensor-1", "sys.status", {"task": "x"}, task_id="sys-on-tasks")
        stats = build_task("stats", GOOD, "node-1", task_id="stats-on-control")
        op.client.publish(TOPICS.control("node-1"), sign_task(stats, op.signer))
        for task_id in ("sys-on-tasks", "stats-on-control"):
            result = answers.result(task_id)
            assert (result.status, result.error["code"]) == ("rejected", "unknown_kernel"), task_id
        assert "tasks topic" in answers.results["stats-on-control"][0].error["message"]
        assert rejected_with(op("sys.list", {"limit": -1}), "invalid_params", "limit")
        assert rejected_with(op("sys.drain", {"now": 1}), "invalid_params", "now")
        # the same command bytes twice: answered and executed once
        topic, payload, _ = make_control(op.signer, "node-1", "sys.drain", {}, task_id="drain-once")
        op.client.publish(topic, payload)
        op.client.publish(topic, payload)
        assert answers.result("drain-once").result["changed"] is True
        assert op("sys.resume").result["changed"] is True
        site.submit(device, "sensor-1", "stats", GOOD, task_id="still-serving")
        assert answers.result("still-serving").status == "completed"
        assert agent.run_until_idle()
        answers.drain()
        assert agent.intake.counts["redelivered"] == 1
    assert len(answers.results["drain-once"]) == 1
    assert "not-an-operator" not in answers.results
    reports = [r for r in answers.others if isinstance(r, RejectReport)]
    assert [(r.code, r.kid, r.topic) for r in reports] == [
        ("wrong_role", "sensor-1", TOPICS.control("node-1"))
    ]


def test_a_copy_on_the_wrong_topic_does_not_burn_the_nonce_of_the_real_message(any_site: Site) -> None:
    """A device that republishes an operator's signed command on a tasks topic gets it rejected
    `unknown_kernel`; the real command, sent on the control topic afterwards, still runs (its
    nonce was claimed first, and it counted as a redelivery that did nothing). The same for a
    task of the operator's copied to the control topic."""
    site = any_site
    answers = Answers(site)
    op = Operator(site, answers)
    device = site.client("sensor-1")
    with site.agent() as agent:
        task_payload = sign_task(build_task("stats", GOOD, "node-1", task_id="task-copied"), op.signer)
        op.client.publish(TOPICS.control("node-1"), task_payload)
        copy = answers.result("task-copied")
        assert (copy.status, copy.error and copy.error["code"]) == ("rejected", "unknown_kernel")
        op.client.publish(TOPICS.tasks("node-1"), task_payload)
        assert answers.result("task-copied", count=2).status == "completed"

        topic, payload, _ = make_control(op.signer, "node-1", "sys.drain", {}, task_id="drain-copied")
        device.publish(TOPICS.tasks("node-1"), payload)  # the operator's signed bytes, by a device
        copy = answers.result("drain-copied")
        assert (copy.status, copy.error and copy.error["code"]) == ("rejected", "unknown_kernel")
        assert "control topic" in copy.error["message"] and not agent.draining
        op.client.publish(topic, payload)
        real = answers.result("drain-copied", count=2)
        assert (real.status, real.result["changed"]) == ("completed", True)
        assert agent.draining
        assert agent.intake.counts["redelivered"] == 0


def test_reload_reads_the_trust_store_and_configuration_and_keeps_them_when_broken(
    site: Site,
) -> None:
    answers = Answers(site, TOPICS.rejects("node-1"), TOPICS.prefix + "/events/node-1/#")
    op = Operator(site, answers)
    config_file = site.bundle()
    trust_file = config_file.parent / "trust.toml"
    # a device the agent does not know yet: its signed task arrives over the operator's login
    edge_provision("--fleet", site.fleet.root, "add", "device", "late-device")
    edge_provision("--fleet", site.fleet.root, "bundle", "node-1", "--out", site.tmp / "rebundle")
    newcomer = build_task("stats", GOOD, "node-1", task_id="from-newcomer")
    newcomer_payload = sign_task(newcomer, site.signer("late-device"))
    with site.agent() as agent:
        op.client.publish(TOPICS.tasks("node-1"), newcomer_payload)
        op.client.sync()
        wait_for(lambda: agent.intake.counts["unauthenticated"] == 1)

        trust_file.write_text((site.tmp / "rebundle" / "trust.toml").read_text())
        with config_file.open("a") as f:
            f.write("\n[events]\nenabled = true\n\n[store]\ncompact_bytes = 65536\n")
        report = op("sys.reload").result
        assert report["trusted_keys"] == len(agent.trust) and report["config_file"] == str(config_file)
        assert report["applied"] == ["events.enabled"]
        assert report["restart_needed"] == ["store.compact_bytes"]
        assert agent.config.events.enabled and agent.config.store.compact_bytes != 65536
        op.client.publish(TOPICS.tasks("node-1"), newcomer_payload)  # the same bytes: trusted now
        assert answers.result("from-newcomer").status == "completed"
        # events now flow (enabled by the reload)
        site.submit(site.client("sensor-1"), "sensor-1", "stats", GOOD, task_id="with-events")
        assert answers.result("with-events").status == "completed"

        keys = len(agent.trust)
        trust_file.write_text("format = 1\n[[keys]]\nkid = 'broken'\n")
        broken = op("sys.reload")
        assert (broken.status, broken.error["code"]) == ("abandoned", "kernel_error")
        assert "trust store not reloaded" in broken.error["message"] and "key #1" in broken.error["message"]
        assert len(agent.trust) == keys
        config_file.write_text(config_file.read_text() + "\n[workers]\ncount = 'many'\n")
        broken = op("sys.reload")
        assert broken.status == "abandoned" and "workers.count" in broken.error["message"]
        site.submit(site.client("sensor-1"), "sensor-1", "stats", GOOD, task_id="still-trusted")
        assert answers.result("still-trusted").status == "completed"
        assert agent.run_until_idle()
        answers.drain()
        audit = agent.config.audit_file.read_text()
    assert audit.count('"event":"reload_failed"') == 2 and audit.count('"event":"reload"') == 1
    events = [e for e in answers.others if isinstance(e, Event) and e.id == "with-events"]
    assert [e.status for e in events] == ["queued", "running", "completed"]


def test_events_cover_every_transition_with_trace_and_can_be_off(site: Site) -> None:
    events_filter = TOPICS.prefix + "/events/node-1/#"
    answers = Answers(site, events_filter)
    op = Operator(site, answers)
    device = site.client("sensor-1")
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with site.agent(events_enabled=True, workers_count=1) as agent:
        site.submit(device, "sensor-1", "stats", GOOD, task_id="traced", trace=trace)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="later", run_at=time.time() + 1.5)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="cancel-me", run_at=time.time() + 60)
        site.submit(device, "sensor-1", "nope", {}, task_id="refused", trace=trace)
        for task_id in ("traced", "later", "refused"):
            answers.result(task_id)
        op("sys.cancel", {"task": "cancel-me"})
        answers.result("cancel-me")
        assert agent.run_until_idle()
        answers.drain()
    events: dict[str, list[Event]] = {}
    for e in answers.others:
        if isinstance(e, Event):
            events.setdefault(e.id, []).append(e)
    assert [e.status for e in events["traced"]] == ["queued", "running", "completed"]
    assert all(e.trace == trace and e.node == "node-1" and e.run == 1 for e in events["traced"])
    assert [e.status for e in events["later"]] == ["queued", "scheduled", "running", "completed"]
    assert events["later"][0].trace is None
    assert [(e.status, e.code) for e in events["cancel-me"]] == [
        ("queued", None),
        ("scheduled", None),
        ("cancelled", "cancelled"),
    ]
    [refused] = events["refused"]
    assert (refused.status, refused.code, refused.attempt, refused.trace) == (
        "rejected",
        "unknown_kernel",
        0,
        trace,
    )
    assert not any(isinstance(e, Event) and e.id.startswith("cmd-") for e in answers.others)

    quiet = Answers(site, events_filter)
    with site.agent(events_enabled=False) as agent:
        site.submit(device, "sensor-1", "stats", GOOD, task_id="quiet")
        assert quiet.result("quiet").status == "completed"
        assert agent.run_until_idle()
        quiet.drain()
    assert not any(isinstance(e, Event) for e in quiet.others)


def wait_online(answers: Answers, proc: AgentProcess, births: int = 1) -> None:
    """Until the agent process published its `births`-th online presence."""
    deadline = time.monotonic() + TIMEOUT
    while sum(1 for p in answers.others if isinstance(p, Presence) and p.state == "online") < births:
        assert time.monotonic() < deadline and proc.proc.poll() is None, proc.output()
        answers.drain()
        time.sleep(0.05)


def test_an_agent_process_answers_control_commands_and_sighup_reloads(site: Site) -> None:
    """`python -m agent run` wires control in too; SIGHUP with a broken trust store keeps it running."""
    answers = Answers(site, TOPICS.presence("node-1"))
    op = Operator(site, answers)
    with agent_process(site) as proc:
        wait_online(answers, proc)
        assert op("sys.drain").result["state"] == "draining"
        (site.bundle().parent / "trust.toml").write_text("not toml [")
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in proc.output(), what="the failed reload in the log")
        assert op("sys.status", {"task": "never"}).error["code"] == "invalid_params"
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(TIMEOUT) == 0, proc.output()


def test_a_cancel_answered_before_a_kill_9_holds_after_the_restart(site: Site) -> None:
    """The cancel of a running attempt is on the record before it is answered: whenever the agent
    dies after the answer, the task ends `cancelled` once and never runs again."""
    answers = Answers(site, TOPICS.presence("node-1"))
    op = Operator(site, answers)
    device = site.client("sensor-1")
    marks = site.tmp / "marks.log"
    params = {"path": str(marks), "tag": "long", "seconds": 60}
    with agent_process(site, workers_count=1) as proc:
        wait_online(answers, proc)
        site.submit(device, "sensor-1", "test.mark", params, task_id="long", max_retries=5, timeout_s=120)
        wait_for(lambda: marks.exists() and "long 1" in marks.read_text(), what="the attempt started")
        assert op("sys.cancel", {"task": "long"}).result["was"] == "running"
        proc.proc.kill()
        proc.proc.wait(TIMEOUT)
    with agent_process(site, workers_count=1) as proc:
        wait_online(answers, proc, births=2)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="after-restart")
        assert answers.result("after-restart").status == "completed"
        assert answers.result("long").status == "cancelled"
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(TIMEOUT) == 0, proc.output()
    answers.drain()
    assert {(r.status, r.run, r.error["code"]) for r in answers.results["long"]} == {
        ("cancelled", 1, "cancelled")
    }
    assert marks.read_text().count("long ") == 1  # started once, never again


def test_a_worker_cancel_names_its_attempt_and_waits_for_one_not_started_yet() -> None:
    """The window between a task being taken and its worker starting it: the cancel is kept for
    that attempt (never lost, never applied to another one)."""
    pool = WorkerPool(WorkerSettings(count=1, test_kernels=True))
    pool.start()
    try:
        [worker] = pool.workers
        body = packb(build_task("test.sleep", {"seconds": 0.2}, "node-1").to_body())
        assert worker.cancel(("k", 1, 1)) is False  # not running yet: kept for that attempt
        early = worker.run("test.sleep", body, 1, 30.0, tag=("k", 1, 1))
        assert (early.ok, early.code) == (False, "cancelled")
        assert worker.restarts == 0  # nothing was running: nothing killed
        worker.cancel(("other", 1, 1))  # a stale cancel of another attempt
        assert worker.run("test.sleep", body, 1, 30.0, tag=("k2", 1, 1)).ok

        hang = packb(build_task("test.hang", {}, "node-1").to_body())
        done: list[Any] = []
        runner = threading.Thread(target=lambda: done.append(worker.run("test.hang", hang, 1, 60.0, tag="h")))
        runner.start()
        wait_for(lambda: worker.busy, what="the attempt running")
        assert worker.cancel("not-this-one") is False and worker.busy
        assert worker.cancel("h") is True
        runner.join(TIMEOUT)
        assert (done[0].code, worker.restarts) == ("cancelled", 1)
        assert worker.run("test.sleep", body, 1, 30.0, tag="after").ok  # its successor serves
    finally:
        pool.stop()
