"""edge-submit end to end: a real broker, a real agent, the tool as a process with op-1's bundle.

Results are checked against numpy (PROTOCOL 9's tolerance); exit statuses against the tool's
documented ones (0 completed, 1 not completed or refused, 2 usage, 3 timeout, 4 broker).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from agent.protocol import generate_signer
from agent.tools.errors import EXIT_BROKER, EXIT_NOT_COMPLETED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from tests.agent.conftest import Site
from tests.agent.toolrun import bundle_file, command, run, tool_env
from tests.support.services import free_port

R = 1e-9


def close(out: object, ref: np.ndarray) -> bool:
    return bool(np.allclose(np.asarray(out), ref, rtol=R, atol=R * max(1.0, float(np.max(np.abs(ref))))))


def test_task_params_from_json_npy_and_csv(site: Site, tmp_path: Path) -> None:
    op = bundle_file(site, "op-1")
    rng = np.random.default_rng(7)
    signal, taps = rng.normal(size=50), np.array([0.25, 0.5, 0.25])
    np.save(tmp_path / "signal.npy", signal)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    np.savetxt(tmp_path / "a.csv", a, delimiter=",", fmt="%.17g")
    np.save(tmp_path / "b.npy", b.astype(np.float32))  # float32: sent as <f4, the kernel widens it
    with site.agent():
        # --params JSON, readable output
        done = run(site, "submit", "-c", op, "--node", "node-1", "--kernel", "stats", "--params",
                   '{"signal": [1, 2, 3, 4]}')  # fmt: skip
        assert done.returncode == EXIT_OK, done.stderr
        assert "stats completed" in done.stdout and "mean: 2.5" in done.stdout and "count: 4" in done.stdout

        # --param-file .npy and --param JSON value, --json checked against numpy
        done = run(site, "submit", "task", "-c", op, "--node", "node-1", "--kernel", "fir_filter",
                   "--param-file", f"signal={tmp_path / 'signal.npy'}", "--param", "taps=[0.25,0.5,0.25]",
                   "--json", "--priority", "8", "--id", "fir-1")  # fmt: skip
        assert done.returncode == EXIT_OK, done.stderr
        doc = json.loads(done.stdout)
        assert doc["id"] == "fir-1" and doc["status"] == "completed" and doc["verified"] is True
        assert close(doc["result"], np.convolve(signal, taps)[: signal.size])

        # CSV (2-D) and .npy float32 through matrix_multiply
        done = run(site, "submit", "-c", op, "--node", "node-1", "--kernel", "matrix_multiply",
                   "--param-file", f"matrix_a={tmp_path / 'a.csv'}",
                   "--param-file", f"matrix_b={tmp_path / 'b.npy'}", "--json")  # fmt: skip
        assert done.returncode == EXIT_OK, done.stderr
        product = np.asarray(json.loads(done.stdout)["result"])
        assert product.shape == (3, 2) and close(product, a @ b.astype(np.float32).astype(np.float64))

        # arrays are summarized for people: dtype, shape, first values
        done = run(site, "submit", "-c", op, "--node", "node-1", "--kernel", "moving_average",
                   "--param-file", f"signal={tmp_path / 'signal.npy'}", "--param", "window=5")  # fmt: skip
        assert done.returncode == EXIT_OK, done.stderr
        assert "float64 (46,) [" in done.stdout and "more)" in done.stdout


def test_rejected_task_exits_1_with_the_code(site: Site) -> None:
    op = bundle_file(site, "op-1")
    with site.agent():
        done = run(site, "submit", "-c", op, "--node", "node-1", "--kernel", "moving_average",
                   "--param", "signal=[1,2,3]", "--param", "window=9")  # fmt: skip
        assert done.returncode == EXIT_NOT_COMPLETED
        assert "rejected" in done.stdout and "invalid_params" in done.stdout and "window" in done.stdout

        done = run(site, "submit", "-c", op, "--node", "node-1", "--kernel", "no_such_kernel", "--json")
        assert done.returncode == EXIT_NOT_COMPLETED
        doc = json.loads(done.stdout)
        assert doc["status"] == "rejected" and doc["error"]["code"] == "unknown_kernel"


def test_unauthenticated_task_is_reported_from_the_rejects_topic(site: Site, tmp_path: Path) -> None:
    """Signed by a key the agent does not trust (but published with op-1's broker login): the agent
    answers on {p}/rejects/node-1 only; edge-submit matches the report by the payload's sha256."""
    stranger = generate_signer("op-1")
    key = tmp_path / "stranger.key"
    key.write_bytes(stranger.private_pem())  # type: ignore[union-attr]
    op = bundle_file(site, "op-1")
    with site.agent():
        done = run(site, "submit", "-c", op, "--signing-key", key, "--node", "node-1", "--kernel", "stats",
                   "--param", "signal=[1]", "--json")  # fmt: skip
    assert done.returncode == EXIT_NOT_COMPLETED, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "refused" and doc["error"]["code"] == "bad_signature"
    assert doc["report"]["kid"] == "op-1"


def test_wait_timeout_has_its_own_exit_status(site: Site) -> None:
    op = bundle_file(site, "op-1")  # node-2 is not running: nobody answers
    done = run(site, "submit", "-c", op, "--node", "node-2", "--kernel", "stats", "--param", "signal=[1]",
               "--wait-timeout", "1", "--id", "lost-1")  # fmt: skip
    assert done.returncode == EXIT_TIMEOUT
    assert "not every result for lost-1 came from node node-2 within 1 s" in done.stderr
    assert "sys.status --node node-2 --task lost-1" in done.stderr


def test_no_wait_publishes_and_prints_the_id(site: Site) -> None:
    op = bundle_file(site, "op-1")
    done = run(site, "submit", "-c", op, "--node", "node-2", "--kernel", "stats", "--param", "signal=[1]",
               "--no-wait", "--id", "fire-1")  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.strip() == "fire-1"


def test_errors_say_what_to_do(site: Site, tmp_path: Path) -> None:
    op = bundle_file(site, "op-1")
    args = ("--node", "node-1", "--kernel", "stats", "--param", "signal=[1]")
    unreachable = run(site, "submit", "-c", op, *args, env=tool_env(site, EDGE_MQTT_PORT=str(free_port())))
    assert unreachable.returncode == EXIT_BROKER
    assert "connection refused" in unreachable.stderr and "Is the broker running?" in unreachable.stderr

    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    login = run(site, "submit", "-c", op, "--password-file", wrong, *args)
    assert login.returncode == EXIT_BROKER
    assert "refused the login of user 'op-1'" in login.stderr and "mqtt.password_file" in login.stderr

    missing = run(site, "submit", "-c", op, "--node", "node-1", "--kernel", "stats", "--param-file",
                  f"signal={tmp_path / 'nope.npy'}")  # fmt: skip
    assert missing.returncode == EXIT_USAGE
    assert "--param-file signal: cannot read" in missing.stderr and "nope.npy" in missing.stderr

    invalid = run(site, "submit", "-c", op, "--node", "node-1", "--kernel", "stats", "--priority", "12")
    assert invalid.returncode == EXIT_USAGE and "'priority' must be between 0 and 9" in invalid.stderr

    no_target = run(site, "submit", "-c", op, "--kernel", "stats")
    assert no_target.returncode == EXIT_USAGE and "--node NODE, --all or --pool POOL" in no_target.stderr

    typo = run(site, "submit", "-c", op, *args, env=tool_env(site, EDGE_MQTT_PORTT="1"))
    assert typo.returncode == EXIT_USAGE and "mqtt.portt: unknown setting" in typo.stderr
    bad_port = run(site, "submit", "-c", op, *args, env=tool_env(site, EDGE_MQTT_PORT="eighty"))
    assert bad_port.returncode == EXIT_USAGE and "mqtt.port: must be an integer" in bad_port.stderr


def test_batch_with_progress_and_summary(site: Site, tmp_path: Path) -> None:
    np.save(tmp_path / "ramp.npy", np.arange(16, dtype=np.float64))
    lines = [
        {"kernel": "stats", "params": {"signal": [1.0, 2.0, 3.0]}, "id": "b-1"},
        {"kernel": "stats", "param_files": {"signal": "ramp.npy"}, "priority": 9, "id": "b-2"},
        {"kernel": "histogram", "params": {"signal": [1, 2, 2, 3], "bins": 3}, "id": "b-3"},
        {"kernel": "fft_magnitude", "params": {"signal": [0, 1, 0, -1]}, "target": "node-1", "id": "b-4"},
        {"kernel": "zscore_anomalies", "params": {"signal": [1, 1, 1, 9]}, "ttl_s": 600, "id": "b-5"},
        {"kernel": "not_a_kernel", "params": {}, "id": "b-6"},
    ]
    batch = tmp_path / "tasks.jsonl"
    batch.write_text("# six tasks\n" + "\n".join(json.dumps(doc) for doc in lines) + "\n\n")
    op = bundle_file(site, "op-1")
    with site.agent():
        done = run(site, "submit", "-c", op, "batch", batch, "--node", "node-1")
        assert done.returncode == EXIT_NOT_COMPLETED, done.stderr
        assert "published 6/6 (100%)" in done.stderr and "answered 6/6 (100%)" in done.stderr
        assert "6 tasks: 5 completed, 1 rejected" in done.stdout
        assert "rejected:unknown_kernel x1" in done.stdout and "tasks/s" in done.stdout

        good = tmp_path / "good.json"  # a JSON array, all completing: exit 0, --json summary
        good.write_text(json.dumps(lines[:3]).replace('"b-', '"g-'))
        done = run(site, "submit", "batch", "-c", op, "--node", "node-1", good, "--json")
        assert done.returncode == EXIT_OK, done.stderr
        summary = json.loads(done.stdout)
        assert summary["tasks"] == 3 and summary["by_status"] == {"completed": 3}
        assert sorted(r["id"] for r in summary["results"]) == ["g-1", "g-2", "g-3"]

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"kernel": "stats"}\n{"kernel": "stats", "prio": 3}\n')
    done = run(site, "submit", "-c", op, "batch", broken, "--node", "node-1")
    assert done.returncode == EXIT_USAGE and "line 2: unknown key 'prio'" in done.stderr


def test_control_commands(site: Site) -> None:
    """status, list, cancel of a scheduled task; drain refuses new tasks until resume (PROTOCOL 8)."""
    op = bundle_file(site, "op-1")
    ctl = ("submit", "control")
    with site.agent():
        one = ("--node", "node-1", "--kernel", "stats", "--param", "signal=[1]")
        later = run(site, "submit", "-c", op, *one, "--run-at", "+1h", "--id", "sched-1", "--no-wait")
        assert later.returncode == EXIT_OK, later.stderr

        status = run(site, *ctl, "sys.status", "-c", op, "--node", "node-1", "--task", "sched-1", "--json")
        assert status.returncode == EXIT_OK, status.stderr
        answer = json.loads(status.stdout)
        assert answer["kernel"] == "sys.status" and answer["status"] == "completed"
        assert answer["result"]["id"] == "sched-1" and answer["result"]["status"] == "scheduled"

        listing = run(site, *ctl, "list", "-c", op, "--node", "node-1", "--status", "scheduled")
        assert listing.returncode == EXIT_OK, listing.stderr
        assert "sys.list completed" in listing.stdout and "sched-1" in listing.stdout

        cancel = run(site, *ctl, "cancel", "-c", op, "--node", "node-1", "--task", "sched-1", "--json")
        assert cancel.returncode == EXIT_OK, cancel.stderr
        assert json.loads(cancel.stdout)["result"]["cancelled"] is True

        drain = run(site, *ctl, "drain", "-c", op, "--node", "node-1", "--json")
        assert json.loads(drain.stdout)["result"]["state"] == "draining"
        refused = run(
            site, "submit", "-c", op, "--node", "node-1", "--kernel", "stats", "--param", "signal=[1]"
        )
        assert refused.returncode == EXIT_NOT_COMPLETED and "overloaded" in refused.stdout
        resume = run(site, *ctl, "sys.resume", "-c", op, "--node", "node-1")
        assert resume.returncode == EXIT_OK and "state: running" in resume.stdout
        again = run(
            site, "submit", "-c", op, "--node", "node-1", "--kernel", "stats", "--param", "signal=[1]"
        )
        assert again.returncode == EXIT_OK, again.stdout + again.stderr

        missing = run(site, *ctl, "status", "-c", op, "--node", "node-1")
        assert missing.returncode == EXIT_USAGE and "sys.status needs --task ID" in missing.stderr


def test_all_and_pool_targets(site: Site) -> None:
    op = bundle_file(site, "op-1")
    one = ("--kernel", "stats", "--param", "signal=[2,4]", "--json")
    with site.agent():
        everyone = run(site, "submit", "-c", op, "--all", "--expect", "1", *one)
        assert everyone.returncode == EXIT_OK, everyone.stderr
        assert json.loads(everyone.stdout)["node"] == "node-1"

        # without --expect the number of agents is unknown: every result until the wait ends
        unknown = run(site, "submit", "-c", op, "--all", "--wait-timeout", "2", *one)
        assert unknown.returncode == EXIT_OK, unknown.stderr
        assert [json.loads(t)["node"] for t in unknown.stdout.splitlines()] == ["node-1"]

        pool = run(site, "submit", "-c", op, "--pool", "cams", *one)
        assert pool.returncode == EXIT_OK, pool.stderr
        doc = json.loads(pool.stdout)
        assert doc["node"] == "node-1" and doc["result"]["mean"] == 3.0


def test_recurring_task_waits_for_its_runs(site: Site) -> None:
    op = bundle_file(site, "op-1")
    with site.agent():
        done = run(site, "submit", "-c", op, "--node", "node-1", "--kernel", "stats", "--param", "signal=[5]",
                   "--every", "1s", "--until", "+1m", "--runs", "2", "--json", "--id", "rec-1")  # fmt: skip
        assert done.returncode == EXIT_OK, done.stderr
        runs = [json.loads(t) for t in done.stdout.splitlines()]
        assert [(r["id"], r["run"], r["status"]) for r in runs] == [
            ("rec-1", 1, "completed"),
            ("rec-1", 2, "completed"),
        ]
        cancel = run(site, "submit", "control", "cancel", "-c", op, "--node", "node-1", "--task", "rec-1")
        assert cancel.returncode == EXIT_OK and "cancelled: True" in cancel.stdout

        # 5 runs cannot come within 2 s of a task that runs every second: a timeout, with its status
        one = ("--node", "node-1", "--kernel", "stats", "--param", "signal=[5]")
        short = run(site, "submit", "-c", op, *one, "--every", "1s", "--runs", "5", "--wait-timeout", "2",
                    "--id", "rec-2")  # fmt: skip
        assert short.returncode == EXIT_TIMEOUT, short.stdout + short.stderr
        assert "not every result for rec-2 came from node node-1 within 2 s" in short.stderr


def test_batch_of_many_tasks_from_stdin(site: Site) -> None:
    """Past 20 tasks one wildcard subscription per node replaces one per task."""
    rng = np.random.default_rng(3)
    signals = [rng.normal(size=8) for _ in range(60)]
    text = "\n".join(json.dumps({"kernel": "stats", "params": {"signal": s.tolist()}}) for s in signals)
    op = bundle_file(site, "op-1")
    with site.agent():
        done = run(site, "submit", "batch", "-c", op, "--node", "node-1", "-", "--json", stdin=text)
    assert done.returncode == EXIT_OK, done.stderr
    summary = json.loads(done.stdout)
    assert summary["tasks"] == 60 and summary["by_status"] == {"completed": 60}
    assert summary["answered_per_s"] > 0 and all(r["nodes"] == ["node-1"] for r in summary["results"])


def test_a_device_bundle_waits_for_its_reply_and_an_operator_may_ask_for_one(site: Site) -> None:
    """A device may read only `{p}/replies/{its name}/#`: edge-submit asks for `reply` with its
    bundle by default and verifies the answer with the bundle's trust store (PROTOCOL 1 and 4)."""
    device = bundle_file(site, "sensor-1")
    op = bundle_file(site, "op-1")
    with site.agent():
        done = run(site, "submit", "-c", device, "--node", "node-1", "--kernel", "stats",
                   "--param", "signal=[1,2,3,4]", "--json")  # fmt: skip
        assert done.returncode == EXIT_OK, done.stderr
        doc = json.loads(done.stdout)
        assert doc["status"] == "completed" and doc["verified"] is True and doc["result"]["mean"] == 2.5

        refused = run(site, "submit", "-c", device, "--no-reply", "--node", "node-1", "--kernel", "stats",
                      "--param", "signal=[1]")  # fmt: skip
        assert refused.returncode == EXIT_USAGE
        assert "does not let this identity read edge/results/node-1/" in refused.stderr
        assert "--reply" in refused.stderr

        done = run(site, "submit", "-c", op, "--reply", "--node", "node-1", "--kernel", "stats",
                   "--param", "signal=[2,4]", "--json")  # fmt: skip
        assert done.returncode == EXIT_OK, done.stderr
        assert json.loads(done.stdout)["result"]["mean"] == 3.0


def test_a_shell_that_sources_device_env_runs_edge_submit_without_a_config_file(site: Site) -> None:
    """device.env names its settings like the tools' EDGE_* variables: sourced in the bundle's
    directory, it configures edge-submit as device.toml does."""
    bundle = bundle_file(site, "sensor-1").parent
    env = tool_env(site)
    env.pop("EDGE_MQTT_PORT")
    script = (
        "set -a; . ./device.env; set +a; EDGE_MQTT_PORT="
        + str(site.broker.tls_port)
        + "; "
        + " ".join(command("submit"))
        + " --node node-1 --kernel stats"
        " --param 'signal=[1,2,3]' --json"
    )
    with site.agent():
        done = subprocess.run(["bash", "-c", script], cwd=bundle, env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["result"]["mean"] == 2.0
