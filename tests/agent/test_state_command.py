"""`edge-agent state DATA_DIR`: the task records of a data directory, read without writing, as
the console script run by an operator. Real state written by a real Store and by a real agent
process; the answer equals what sys.status / sys.list give; the files keep their bytes and times."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agent.common.journal import frames
from agent.node.store import HISTORY, JOBS, META, TASKS, Op, Store
from agent.node.store.readonly import ReadOnlyState
from agent.protocol import build_task, packb
from tests.agent.conftest import TOPICS, Site, agent_process
from tests.agent.test_control import Answers, Operator, wait_for, wait_online

FIXTURES = Path(__file__).parents[1] / "fixtures" / "legacy_stores"
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
GOOD = {"signal": [1.0, 2.0, 3.0]}
T0 = 1_764_900_000.0  # 2025-12-05 02:00 UTC: every record below is received after it, one second apart


def utc(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def state(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "state", *map(str, args)], capture_output=True, text=True, timeout=60
    )


def records(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def files(data_dir: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every file and directory under `data_dir`: its bytes (files) and its mtime."""
    found = {}
    for path in [data_dir, *sorted(data_dir.rglob("*"))]:
        found[str(path.relative_to(data_dir))] = (
            path.read_bytes() if path.is_file() else None,
            path.stat().st_mtime_ns,
        )
    return found


def record(n: int, task_id: str, status: str, **fields: Any) -> dict[str, Any]:
    """A live record as `Lifecycle.record_for` writes it, with a real task body."""
    body = packb(
        build_task("stats", GOOD, "node-1", task_id=task_id, trace=fields.pop("trace", None)).to_body()
    )
    doc = {
        "key": f"dev-1/{task_id}",
        "id": task_id,
        "kid": "dev-1",
        "kernel": "stats",
        "priority": n,
        "seq": n,
        "received_at": T0 + n,
        "body": body,
        "status": status,
        "wait": "start",
        "run": 1,
        "attempt": 0,
        "started_at": None,
        "last_error": None,
    }
    doc.update(fields)
    return doc


def final(n: int, task_id: str, status: str, finished_at: float, **fields: Any) -> dict[str, Any]:
    """A history record as `Lifecycle._finish` writes it."""
    doc = {k: v for k, v in record(n, task_id, status).items() if k != "body"}
    doc.update(finished_at=finished_at, body_sha256=b"\x00" * 32, attempt=1, started_at=T0 + n + 0.5)
    doc.update(fields)
    return doc


def write_state(data_dir: Path) -> None:
    """Live tasks queued, scheduled (with its timer row) and running (cancel requested); finished
    ones on two days; compacted once, so that the snapshot and the journal both hold tasks."""
    error = {"code": "kernel_error", "message": "no"}
    timer = {
        "next_run_time": T0 + 7200,
        "kwargs": {},
        "executor": "x",
        "misfire_grace_time": 1,
        "coalesce": True,
    }
    store = Store.open(data_dir)
    store.commit_sync(
        [
            Op(TASKS, "dev-1/q", record(1, "q", "queued", trace=TRACE)),
            Op(META, "agent", {"session": 1}),
            Op(HISTORY, "dev-1/old", final(2, "old", "abandoned", T0 + 100, last_error=error)),
        ]
    )
    store.compact()
    store.commit_sync(
        [
            Op(TASKS, "dev-1/s", record(3, "s", "scheduled")),
            Op(JOBS, "start:dev-1/s", timer),
            Op(TASKS, "dev-1/r", record(4, "r", "running", attempt=1, started_at=T0 + 5, cancel="by op-1")),
            Op(HISTORY, "dev-1/new", final(5, "new", "completed", T0 + 86400 + 100, trace=TRACE)),
        ]
    )
    store.close()


def test_state_shows_a_stores_records_without_changing_a_byte(tmp_path: Path) -> None:
    write_state(tmp_path)
    [journal] = (tmp_path / "state").glob("journal.*.log")
    with journal.open("ab") as f:  # a batch torn by a crash: a start would cut it; this must not
        f.write(frames.frame([[TASKS, "dev-1/torn", {"id": "torn"}]])[:-3])
    (tmp_path / "state" / "LOCK").unlink()  # nor create the lock file
    before = files(tmp_path)

    shown = records(state(tmp_path, "--json"))
    assert [(r["id"], r["status"]) for r in shown] == [
        ("new", "completed"),
        ("r", "running"),
        ("s", "scheduled"),
        ("old", "abandoned"),
        ("q", "queued"),
    ]
    new, running, scheduled, old, queued = shown
    assert (new["trace"], new["finished_at"], new["attempts"]) == (TRACE, T0 + 86400 + 100, 1)
    assert (running["cancel_requested"], running["started_at"]) == ("by op-1", T0 + 5)
    assert (scheduled["waiting_for"], scheduled["next_at"]) == ("start", T0 + 7200)
    assert old["last_error"] == {"code": "kernel_error", "message": "no"} and "trace" not in old
    assert queued["trace"] == TRACE  # from the task's signed body, as the running agent's plan has it
    assert set(queued) == {
        "id", "kid", "kernel", "status", "priority", "run", "attempts", "received_at", "started_at",
        "finished_at", "last_error", "trace",
    }  # fmt: skip

    assert [r["id"] for r in records(state(tmp_path, "--json", "--status", "scheduled"))] == ["s"]
    assert records(state(tmp_path, "--json", "--id", "old")) == [old]
    assert records(state(tmp_path, "--json", "--id", "q", "--kid", "dev-1")) == [queued]
    limited = state(tmp_path, "--json", "--limit", "2")
    assert [r["id"] for r in records(limited)] == ["new", "r"] and "more tasks match" in limited.stderr
    text = state(tmp_path)
    assert text.returncode == 0 and text.stderr == ""
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["RECEIVED", "(UTC)", "STATUS"] and len(lines) == 6
    assert "running (cancel requested)" in lines[2] and f"start at {utc(T0 + 7200)}" in lines[3]
    assert "kernel_error: no" in lines[4] and f"finished {utc(T0 + 86400 + 100)}" in lines[1]
    assert lines[1].startswith(utc(T0 + 5)) and lines[5].startswith(utc(T0 + 1))
    missing = state(tmp_path, "--id", "torn")
    assert missing.returncode == 1 and "no task 'torn' of any issuer" in missing.stderr

    assert files(tmp_path) == before  # bytes and times: nothing cut, created or rewritten
    store = Store.open(tmp_path)  # what the agent would start with: the same tasks
    assert sorted(key for key, _ in store.rows(TASKS)) == ["dev-1/q", "dev-1/r", "dev-1/s"]
    store.close()


def test_state_beside_a_running_store_says_the_view_may_be_behind(tmp_path: Path) -> None:
    write_state(tmp_path)
    store = Store.open(tmp_path)
    try:
        store.commit_sync([Op(TASKS, "dev-1/q2", record(9, "q2", "queued"))])
        done = state(tmp_path, "--json", "--status", "queued")
        assert [r["id"] for r in records(done)] == ["q2", "q"]
        assert "the agent is running (state/LOCK is held)" in done.stderr and "may be behind" in done.stderr
        store.commit([Op(TASKS, "dev-1/q3", record(10, "q3", "queued"))])  # the lock is still the store's
    finally:
        store.close()
    store = Store.open(tmp_path)
    assert store.count(TASKS) == 5
    store.close()


def test_state_refuses_damage_naming_store_check_and_leaves_a_damaged_history_day_out(tmp_path: Path) -> None:
    write_state(tmp_path)
    [old_day, _] = sorted((tmp_path / "history").glob("*.log"))
    data = bytearray(old_day.read_bytes())
    old_day.write_bytes(bytes(data) + bytes(data[len(frames.MAGIC) :]))  # the frame twice...
    data = bytearray(old_day.read_bytes())
    data[len(frames.MAGIC) + 14] ^= 0xFF  # ...the first one damaged: a good frame after it
    old_day.write_bytes(bytes(data))
    day = state(tmp_path, "--json")
    assert [r["id"] for r in records(day)] == ["new", "r", "s", "q"]  # as sys.list: the day is left out
    assert f"history file {old_day} unreadable" in day.stderr and "edge-agent store check" in day.stderr

    [journal] = (tmp_path / "state").glob("journal.*.log")
    data = bytearray(journal.read_bytes())
    journal.write_bytes(bytes(data) + bytes(data[len(frames.MAGIC) :]))  # its one batch twice...
    data = bytearray(journal.read_bytes())
    data[len(frames.MAGIC) + 14] ^= 0xFF  # ...the first one damaged
    journal.write_bytes(bytes(data))
    damaged = state(tmp_path)
    assert damaged.returncode == 1 and damaged.stdout == ""
    assert f"{journal}: a frame with a wrong checksum at byte 8" in damaged.stderr
    assert f"`edge-agent store check {tmp_path}`" in damaged.stderr

    (tmp_path / "state" / "snapshot").write_bytes(b"EDGESNP2" + b"\x00" * 30)
    unreadable = state(tmp_path)
    assert unreadable.returncode == 1 and "not a valid snapshot" in unreadable.stderr
    assert f"`edge-agent store check {tmp_path}` lists every state file" in unreadable.stderr


def test_state_says_what_is_wrong_with_its_arguments(tmp_path: Path) -> None:
    nothing = state(tmp_path)
    assert nothing.returncode == 2 and "holds no agent state (no state/ directory" in nothing.stderr
    assert not (tmp_path / "state").exists()
    for args, message in (
        (["--id", "a", "--status", "queued"], "--id shows one task"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--id", "a/b"], "not a task id"),
        (["--status", "finished"], "invalid choice"),
    ):
        done = state(tmp_path, *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    helped = subprocess.run(
        [sys.executable, "-m", "agent", "state", "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "writes nothing" in helped.stdout and "store check" in helped.stdout


def test_state_of_the_old_format_is_read_as_it_is(tmp_path: Path) -> None:
    """No migration: the files a start would rewrite stay as they are, and hold the same tables."""
    shutil.copytree(FIXTURES / "agent", tmp_path / "old")
    shutil.copytree(FIXTURES / "agent", tmp_path / "opened")
    before = files(tmp_path / "old")
    offline = ReadOnlyState.read(tmp_path / "old")
    assert files(tmp_path / "old") == before and not offline.agent_running
    store = Store.open(tmp_path / "opened")
    assert offline.tables == store.tables and offline.history_days()[0].name == store.history_days()[0].name
    store.close()


# -- against a real agent process ----------------------------------------------------------------------


def test_state_of_an_agent_process_equals_its_sys_list_and_sys_status_answers(site: Site) -> None:
    answers = Answers(site, TOPICS.presence("node-1"))
    op = Operator(site, answers)
    device, mcu = site.client("sensor-1"), site.client("mcu-1")
    data_dir = Path(site.agent_env()["EDGE_AGENT_DATA_DIR"])
    with agent_process(site, workers_count=1) as proc:
        wait_online(answers, proc)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="done", priority=7, trace=TRACE)
        site.submit(device, "sensor-1", "test.fail", {"message": "no"}, task_id="fails", max_retries=0)
        site.submit(device, "sensor-1", "stats", GOOD, task_id="shared")
        site.submit(mcu, "mcu-1", "stats", GOOD, task_id="shared")
        for task_id, count in (("done", 1), ("fails", 1), ("shared", 2)):
            answers.result(task_id, count)
        site.submit(
            device, "sensor-1", "stats", GOOD, task_id="later", run_at=time.time() + 3600, trace=TRACE
        )
        site.submit(mcu, "mcu-1", "stats", GOOD, task_id="yearly", cron="0 0 1 1 *")
        site.submit(device, "sensor-1", "stats", GOOD, task_id="later-2", run_at=time.time() + 3600)
        for task_id in ("later", "yearly", "later-2"):  # accepted (tasks and commands may cross)
            wait_for(lambda task_id=task_id: op("sys.status", {"task": task_id}).status == "completed")
        assert op("sys.cancel", {"task": "later"}).result["cancelled"] is True
        listed = op("sys.list", {"limit": 1000}).result["tasks"]
        assert {t["status"] for t in listed} == {"completed", "abandoned", "cancelled", "scheduled"}
        statuses = {
            task_id: op("sys.status", {"task": task_id, "kid": kid}).result
            for task_id, kid in (("done", "sensor-1"), ("yearly", "mcu-1"), ("shared", "mcu-1"))
        }
        completed = op("sys.list", {"status": "completed", "limit": 2}).result

        beside = state(data_dir, "--json", "--limit", "1000")  # the agent running
        assert records(beside) == listed and "the agent is running" in beside.stderr
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(30) == 0, proc.output()

    before = files(data_dir)
    assert records(state(data_dir, "--json", "--limit", "1000")) == listed
    for task_id, answer in statuses.items():
        assert records(state(data_dir, "--json", "--id", task_id, "--kid", answer["kid"])) == [answer]
    shown = state(data_dir, "--json", "--status", "completed", "--limit", "2")
    assert records(shown) == completed["tasks"] and completed["more"] and "more tasks match" in shown.stderr
    ambiguous = records(state(data_dir, "--json", "--id", "shared"))
    assert sorted(r["kid"] for r in ambiguous) == ["mcu-1", "sensor-1"]
    assert state(data_dir).stdout.count("\n") == len(listed) + 1
    assert files(data_dir) == before


def test_reading_beside_a_store_that_compacts_all_the_time_gives_whole_states(tmp_path: Path) -> None:
    """Each reading is a state the store was in (tasks 0..m, none missing), also while compactions
    replace the snapshot and remove journals under it (read again)."""
    store = Store.open(tmp_path, compact_bytes=2048, fsync=False)
    done = threading.Event()

    def write() -> None:
        n = 0
        while not done.is_set():
            store.commit_sync([Op(TASKS, f"k/{n:05d}", {"n": n, "pad": "x" * 200})])
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        seen = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            offline = ReadOnlyState.read(tmp_path)
            keys = sorted(offline.tables[TASKS])
            assert offline.agent_running and keys == [f"k/{n:05d}" for n in range(len(keys))]
            seen.append(len(keys))
    finally:
        done.set()
        writer.join()
        compactions = store.stats().compactions
        store.close()
    assert compactions > 20 and len(seen) > 20 and seen == sorted(seen) and seen[-1] > seen[0]
