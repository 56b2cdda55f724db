"""The soak's short share (`benchmarks/soak.py`): a few kill -9 of the agent and a broker restart
under steady load, on each broker; nothing acknowledged lost, every re-sent result byte-identical.
And the soak's tally on results made here, so that its figures are known to count what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.protocol import Ed25519Signer, Result, Signer, Topics, TrustedKey, TrustStore, seal
from tests.support.services import require_tool

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "benchmarks"))  # last: benchmarks/agent.py must not shadow the package

from _soak import tally  # noqa: E402

SHORT = [
    "--kills", "3", "--restarts", "1", "--life", "0.3,4", "--gap", "1,3",
    "--warmup", "3", "--tail", "2", "--linger", "1", "--drain-timeout", "30",
]  # fmt: skip


@pytest.mark.parametrize("kind", ["embedded", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
def test_a_short_soak_loses_nothing_and_re_sends_the_same_bytes(kind: str, tmp_path: Path) -> None:
    """3 kill -9 of the agent at random ages (0.3-4 s after its start), then a broker
    restart (the embedded broker by kill -9, Mosquitto by SIGTERM), at 40 tasks/s: ~30 s a broker."""
    if kind == "mosquitto":
        require_tool("mosquitto")
    figures = tmp_path / "soak.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "soak.py"),
            "--broker",
            kind,
            *SHORT,
            "--json",
            str(figures),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    kills, restarts = json.loads(figures.read_text())
    for row in (kills, restarts):
        assert row["acked"] > 100, row
        assert (row["lost"], row["lost_ids"], row["unacked"]) == (0, [], 0), run.stdout
        assert (row["duplicate_bytes"], row["unverified"], row["other_runs"]) == (0, 0, 0), run.stdout
        assert set(row["statuses"]) == {"completed"}, run.stdout
        assert row["notes"] == [], run.stdout
    assert (kills["kills"], kills["exited_by_itself"], kills["leftovers"]) == (3, 0, 0), run.stdout
    assert restarts["restarts"] == 1


TOPICS = Topics()


def test_the_tally_counts_lost_unacknowledged_re_sent_and_differing_results() -> None:
    agent = Ed25519Signer.generate("node-1")
    trust = TrustStore([TrustedKey("node-1", "ed25519", agent.public_raw(), frozenset({"agent"}))])

    def copy(task_id: str, finished: float = 1.0, run: int = 1, signer: Signer = agent) -> tuple[str, bytes]:
        body = Result(task_id, "node-1", "stats", "completed", run, 1, 0.0, 0.0, finished, 1.5, {"mean": 1.0})
        return TOPICS.results("node-1", task_id), seal(body.to_body(), signer)

    copies = [
        copy("k-1"),
        copy("k-1"),  # re-sent with the same bytes: fine
        copy("k-2", finished=1.0),
        copy("k-2", finished=2.0),  # the same (id, run) with other bytes
        copy("k-3", signer=Ed25519Signer.generate("node-1")),  # forged: no result
        copy("k-5", run=2),
    ]
    published = {"k-1", "k-2", "k-3", "k-4", "k-5", "k-6"}
    acked = {"k-1", "k-2", "k-3", "k-5", "k-6"}  # k-4 published, never acknowledged
    got = tally(published, acked, copies, trust)
    assert (got.published, got.acked) == (6, 5)
    assert got.lost == ["k-3", "k-6"]
    assert got.unacked == ["k-4"]
    assert got.duplicate_bytes == ["k-2#1"]
    assert (got.resent, got.unverified, got.other_runs) == (1, 1, 1)
    assert dict(got.statuses) == {"completed": 4}
