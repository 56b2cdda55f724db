"""The task queries of `sys.status` / `sys.list` give what they gave before they went through
TinyDB (tests/agent/legacy_queries.py, frozen): a real agent with live tasks of every status, the
history over several days (one damaged, one in the old framing), every id, issuer, status and
limit, order and ties included."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

from agent.common.journal import MAGIC, frames
from agent.node.intake.queries import STATUSES, StoredDetails, TaskQueries
from agent.node.store import HISTORY, TASKS, Op, Store
from agent.node.store.history import DAY, day_of
from agent.node.store.readonly import ReadOnlyState
from agent.node.tasks.lifecycle import task_key
from tests.agent.conftest import Site
from tests.agent.legacy_queries import LegacyQueries
from tests.agent.test_control import wait_for

GOOD = {"signal": [1.0, 2.0, 3.0]}
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
KIDS = (None, "sensor-1", "mcu-1", "nobody")
LIMITS = (*range(1, 46), 100, 1000)  # every count a day boundary can fall on


def _status(store: Store, key: str) -> Any:
    record = store.get(TASKS, key)
    return None if record is None else (record["status"], record["wait"])


def _past(template: dict[str, Any], days_ago: float, task_id: str, kid: str, **fields: Any) -> dict[str, Any]:
    """A final record as `Lifecycle._finish` writes it, finished `days_ago` days ago."""
    finished = time.time() - days_ago * DAY
    record = {**template, "key": task_key(kid, task_id), "id": task_id, "kid": kid, "finished_at": finished}
    record.setdefault("trace", None)
    record.update(fields)
    if record["trace"] is None:
        del record["trace"]
    return record


def _write_partition(directory: Path, days_ago: float, content: bytes) -> Path:
    path = directory / f"{day_of(time.time() - days_ago * DAY)}.log"
    path.write_bytes(content)
    return path


def live_tasks_of_every_status(site: Site, agent: Any) -> None:
    """Finished today: completed (traced), abandoned, expired, cancelled, one id of two issuers;
    live: running (two), queued, scheduled for a start, a retry, the next run (every_s, cron),
    and an id that is live and also finished (`again`: the history below holds older ones)."""
    device, mcu = site.client("sensor-1"), site.client("mcu-1")
    store = agent.store
    site.submit(device, "sensor-1", "stats", GOOD, task_id="done", priority=7, trace=TRACE)
    site.submit(device, "sensor-1", "test.fail", {"message": "no"}, task_id="fails", max_retries=0)
    site.submit(device, "sensor-1", "test.fail", {"message": "again"}, task_id="retrying", max_retries=3)
    site.submit(device, "sensor-1", "stats", GOOD, task_id="shared")
    site.submit(mcu, "mcu-1", "stats", GOOD, task_id="shared")
    site.submit(mcu, "mcu-1", "stats", GOOD, task_id="every", every_s=3600.0, trace=TRACE)
    wait_for(
        lambda: (
            len(list(store.history())) == 4
            and _status(store, "sensor-1/retrying") == ("scheduled", "retry")
            and _status(store, "mcu-1/every") == ("scheduled", "next")
        ),
        what="four finished, one waiting for a retry, one for its next run",
    )
    for n in range(2):  # both workers busy from here on: what follows stays queued
        site.submit(device, "sensor-1", "test.sleep", {"seconds": 60}, task_id=f"running-{n}", timeout_s=120)
    wait_for(lambda: agent.pool.busy == 2, what="both workers busy")
    site.submit(device, "sensor-1", "stats", GOOD, task_id="expiring")
    wait_for(lambda: _status(store, "sensor-1/expiring") is not None)
    assert agent.lifecycle.expire_due(time.time() + 2 * DAY) == 1
    for n, (client, issuer, priority) in enumerate(
        ((device, "sensor-1", 1), (mcu, "mcu-1", 9), (device, "sensor-1", 5))
    ):
        site.submit(client, issuer, "stats", GOOD, task_id=f"queued-{n}", priority=priority)
    site.submit(device, "sensor-1", "stats", GOOD, task_id="cancel-me")
    site.submit(device, "sensor-1", "stats", GOOD, task_id="later", run_at=time.time() + 3600, trace=TRACE)
    site.submit(mcu, "mcu-1", "stats", GOOD, task_id="yearly", cron="0 0 1 1 *")
    site.submit(device, "sensor-1", "stats", GOOD, task_id="again", run_at=time.time() + 7200)
    for key in ("sensor-1/queued-0", "mcu-1/queued-1", "sensor-1/queued-2", "sensor-1/later", "mcu-1/yearly"):
        wait_for(lambda key=key: _status(store, key) is not None, what=key)
    wait_for(lambda: _status(store, "sensor-1/again") == ("scheduled", "start"), what="again, live again")
    wait_for(lambda: _status(store, "sensor-1/cancel-me") is not None)
    assert agent.lifecycle.cancel("sensor-1/cancel-me", "cancelled by the test") == "queued"


def history_over_several_days(store: Store) -> list[str]:
    """Days -1..-3 written through the store; day -4 damaged, day -5 in the old framing (by hand).

    Chosen to show the rules: the newest record of an id wins (`done`, `again`); a day holding more
    than `limit` matches ends the reading (`late-receipt`, received after day -1's records but
    finished before them, is then not listed); ties of `received_at` keep their order."""
    store.flush()
    [template] = [r for r in store.history() if r["id"] == "done"]
    live_later = store.get(TASKS, "sensor-1/later")["received_at"]
    finished = ("completed", "abandoned", "expired", "cancelled")
    ops = []
    for n in range(30):
        kid = ("sensor-1", "mcu-1")[n % 2]
        received = time.time() - DAY - 60 * (n // 3)  # three of each received_at: ties
        error = None if n % 4 == 0 else {"code": "kernel_error", "message": f"bulk {n}"}
        fields = {"status": finished[n % 4], "received_at": received, "last_error": error, "seq": n}
        ops.append(Op(HISTORY, "", _past(template, 1, f"bulk-{n}", kid, **fields)))
    ops.append(Op(HISTORY, "", _past(template, 1.1, "tie-live", "sensor-1", received_at=live_later)))
    for days_ago, task_id, kid, received in (
        (2, "done", "sensor-1", time.time() - 2.5 * DAY),
        (2, "old-only", "sensor-1", time.time() - 2.2 * DAY),
        (2, "late-receipt", "mcu-1", time.time() - 0.5 * DAY),
        (2, "shared", "sensor-1", time.time() - 2.1 * DAY),
        (3, "old-only", "mcu-1", time.time() - 3.2 * DAY),
        (1, "again", "sensor-1", time.time() - 1.3 * DAY),  # an issuer may use an id again once
        (3, "again", "sensor-1", time.time() - 3.3 * DAY),  # its replay row expired
        (3, "again", "sensor-1", time.time() - 3.4 * DAY),
    ):
        ops.append(Op(HISTORY, "", _past(template, days_ago, task_id, kid, received_at=received, trace=None)))
    store.commit_sync(ops)
    ids = {record["id"] for _, record in store.rows(TASKS)} | {r["id"] for r in store.history()}
    good = frames.frame(_past(template, 4, "in-damaged", "sensor-1", received_at=time.time() - 4 * DAY))
    damaged = bytearray(good)
    damaged[14] ^= 0xFF  # a wrong checksum with a good frame after it: damage, not a torn tail
    _write_partition(store.history_dir, 4, MAGIC + good + bytes(damaged) + good)
    old = _past(template, 5, "legacy", "mcu-1", received_at=time.time() - 5 * DAY, status="expired")
    _write_partition(store.history_dir, 5, frames.legacy_frame(old, frames.LEGACY_AGENT) + b"\x07")
    return sorted(ids | {"in-damaged", "legacy", "never-sent", "bulk"})


def compare(new: TaskQueries, old: TaskQueries | LegacyQueries, ids: list[str]) -> int:
    """Every find and every list: equal answers. Returns how many were compared."""
    compared = 0
    for task_id in ids:
        for kid in KIDS:
            assert new.find(task_id, kid) == old.find(task_id, kid), (task_id, kid)
            compared += 1
    for status in (None, *STATUSES):
        for kid in KIDS:
            for limit in LIMITS:
                assert new.matching(status, kid, limit) == old.matching(status, kid, limit), (
                    status,
                    kid,
                    limit,
                )
                compared += 1
    return compared


def test_tinydb_queries_answer_as_the_dict_scans_did(site: Site) -> None:
    with site.agent(workers_count=2, scheduling_retry_base_s=600, scheduling_retry_jitter=0) as agent:
        live_tasks_of_every_status(site, agent)
        ids = history_over_several_days(agent.store)
        new, old = agent.control.queries, LegacyQueries(agent.store, agent.lifecycle)
        statuses = {record["status"] for _, record in agent.store.rows(TASKS)}
        assert statuses == {"queued", "scheduled", "running"}
        assert len(agent.store.history_days()) == 6

        assert compare(new, old, ids) == len(ids) * len(KIDS) + (1 + len(STATUSES)) * len(KIDS) * len(LIMITS)

        # what the rules above give, spelled out (so that the comparison cannot pass on two wrong answers)
        [again] = new.find("again")
        assert (again["status"], again["waiting_for"]) == ("scheduled", "start")  # live wins
        assert (
            new.find("done")[0]["trace"] == TRACE and new.find("done")[0]["finished_at"] > time.time() - DAY
        )
        assert [v["kid"] for v in new.find("shared")] == ["mcu-1", "sensor-1"]
        assert [v["kid"] for v in new.find("old-only")] == ["sensor-1", "mcu-1"]
        assert new.find("in-damaged") == [] and new.find("legacy")[0]["status"] == "expired"
        assert new.find("every", "mcu-1")[0]["trace"] == TRACE
        everything, more = new.matching(None, None, 1000)
        received = [v["received_at"] for v in everything]
        assert received == sorted(received, reverse=True) and more is False
        assert [v["id"] for v in everything].count("again") == 4  # live, and each finished one
        assert "late-receipt" in [v["id"] for v in everything]
        few, more = new.matching(None, None, 8)
        assert len(few) == 8 and more and "late-receipt" not in [v["id"] for v in few]
        assert "late-receipt" not in [v["id"] for v in new.matching("completed", None, 2)[0]]
        assert {v["status"] for v in new.matching("queued", None, 1000)[0]} == {"queued"}
        assert [v["id"] for v in new.matching("queued", "mcu-1", 5)[0]] == ["queued-1"]

        # `edge-agent state`'s reading of the files (the agent running) answers as the agent does:
        # traces from the stored bodies, next_at from the stored timers
        assert agent.store.flush()
        offline = ReadOnlyState.read(agent.config.agent.data_dir)
        assert offline.agent_running and offline.tables[TASKS] == agent.store.tables[TASKS]
        assert compare(TaskQueries(offline, StoredDetails(offline.tables)), new, ids)


def test_a_large_history_day_is_never_held_whole(tmp_path: Path) -> None:
    """A day of ~6 MB: sys.list and sys.status hold a record at a time (and `limit` of them), not
    the day; the dict scans read it whole and decoded it all."""
    store = Store.open(tmp_path)
    now = time.time()
    pad = "x" * 1000

    def finished(n: int) -> dict[str, Any]:
        record = {"key": f"dev-1/t-{n}", "id": f"t-{n}", "kid": "dev-1", "kernel": "stats", "priority": 5}
        record.update(status="completed", run=1, attempt=1, started_at=now, finished_at=now)
        record.update(received_at=now - 1000 + n * 0.01, last_error={"code": "none", "message": pad})
        return record

    ops = [Op(HISTORY, "", finished(n)) for n in range(6000)]
    store.commit_sync(ops)
    [day] = store.history_days()
    size = day.stat().st_size
    assert size > 6_000_000
    new = TaskQueries(store, StoredDetails(store.tables))
    old = LegacyQueries(store, None)  # type: ignore[arg-type]  # no live task: the lifecycle is not asked

    def peak(call: Any) -> tuple[Any, int]:
        tracemalloc.start()
        try:
            return call(), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    listed, new_peak = peak(lambda: new.matching(None, None, 10))
    assert [v["id"] for v in listed[0]] == [f"t-{n}" for n in range(5999, 5989, -1)] and listed[1] is True
    assert listed == old.matching(None, None, 10)
    assert new_peak < size / 20, (new_peak, size)
    found, find_peak = peak(lambda: new.find("t-4321"))
    assert [v["id"] for v in found] == ["t-4321"] and find_peak < size / 20, (find_peak, size)
    _, old_peak = peak(lambda: old.matching(None, None, 10))
    assert old_peak > size  # what the dict scans cost
    store.close()
