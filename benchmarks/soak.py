"""Soak: the agent under steady load while it is killed (kill -9) and while its broker restarts.

    .venv/bin/python benchmarks/soak.py [--broker embedded|mosquitto|both] [--kills N] [--restarts N]
                                        [--rate R] [--check] [--json FILE] ...

Per broker (Mosquitto 2.0 and the embedded broker, each in a process of its own, from a fleet made
by `edge-provision`), the agent runs as `python -m agent run` from its bundle (plain TCP on
127.0.0.1, 2 workers, durable defaults); a device publishes signed tasks at a steady rate (QoS 1,
a mix of small kernels and 5 % `test.sleep` of 0.1-0.5 s so that kills also land on running
attempts); a dashboard receives the results in a persistent session (clean_session false, QoS 1).

  phase 1, kill -9   the agent's main process is killed with SIGKILL N times (default 100), each
                     time at a random age (uniform in --life, from its start: some before it is
                     even online), and started again at once. Its workers must end by themselves.
  phase 2, restarts  the agent lives on; the broker is restarted N times (default 10) at random
                     moments: the embedded broker by kill -9 (it journals what it acknowledged,
                     so a crash must lose nothing); Mosquitto by SIGTERM and a start (its
                     persistence is a snapshot written at exit and every `autosave_interval`,
                     1800 s by default: after a kill -9 it has forgotten what it acknowledged
                     since, by design, which would measure Mosquitto, not the agent).

After each phase the device stops and the run drains (--drain-timeout). Figures per broker and phase:

  lost             tasks the broker acknowledged to the device (PUBACK) with no result at the
                   dashboard after the drain, "of" all acknowledged tasks of the phase
  duplicate-bytes  (id, run) pairs whose result arrived more than once with different bytes
                   (a result re-published after a restart must be byte-identical)
  RSS growth       the agent main process's VmRSS (workers excluded), after a warm-up of
                   --warmup s (the replay cache reaches its steady size: it holds a task until
                   expires_at + clock skew, --ttl + 5 s). Phase 1: across process generations, the
                   RSS at the age --rss-age of every life that reaches it, the median of the first
                   8 such lives started after the warm-up against the median of the last 8 (what a
                   restarted agent costs as its state piles up). Phase 2: within the one agent
                   process, the median of 5 samples over 5 s at the end of the warm-up (before the
                   first restart) against the same at the end (--tail s after the last recovery).

Targets (issue 15): lost 0, duplicate-bytes 0, RSS growth < 5 %. `--check` exits 1 when one is
missed (an RSS growth that could not be measured counts as missed). RSS moves by 1-2 % between
samples on this shared VM. The work directory (fleet, data, logs) is kept when a target on lost or
duplicate-bytes is missed, or with --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _bootstrap  # noqa: F401 - before `agent`: benchmarks/agent.py must not shadow the package
import psutil
from _harness import PresenceWatch, agent_env, announce, progress, start_agent
from _soak import NODE, STOPS, BrokerProcess, Device, Tally, Watcher, group_leftovers, tally

from agent.protocol import TrustStore, load_signer
from tests.support.fleet import Fleet, edge_provision, provision

RSS_TARGET_PCT = 5.0
RSS_LIVES = 8  # lives on each side of the phase-1 comparison
MIX = {"stats": 0.4, "fir_filter": 0.2, "fft_magnitude": 0.2, "matrix_multiply": 0.15, "test.sleep": 0.05}
PROTOCOL = {"embedded": "3.1.1", "mosquitto": "5"}  # the embedded broker speaks 3.1.1 only


# --- the agent, life after life -------------------------------------------------------------------


@dataclass
class Life:
    """One agent process of phase 1."""

    age_s: float  # at its kill
    online: bool  # its birth (live online presence) arrived before the kill
    started: float  # perf_counter
    rss: int | None = None  # bytes at --rss-age, when it lived that long
    history_bytes: int = 0  # what it found at its start: today's history partition(s)
    journal_bytes: int = 0  # and the journal it replayed
    exited: int | None = None  # it ended by itself, with this status, before its kill
    leftovers: int = 0  # processes of its group still alive 5 s after the kill


class AgentRunner:
    """The agent as a process of its own: started, killed, stopped; its log in one file."""

    def __init__(self, bundle: Path, env: dict[str, str], log: Path) -> None:
        self.bundle, self.env, self.log = bundle, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.found = (0, 0)  # state_bytes() at the last start

    def start(self) -> None:
        self.found = self.state_bytes()
        self.started = time.perf_counter()
        self.proc = start_agent(self.bundle, self.env, self.log)

    def state_bytes(self) -> tuple[int, int]:
        """Bytes of the history partitions and of the journal in its data directory."""
        data = Path(self.env["EDGE_AGENT_DATA_DIR"])
        sizes = []
        for pattern in ("history/*.log", "state/journal.*.log"):
            sizes.append(sum(path.stat().st_size for path in data.glob(pattern) if path.exists()))
        return sizes[0], sizes[1]

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def kill9(self) -> int:
        """SIGKILL to the main process only (a crash, the OOM killer); its other processes must
        end by themselves: returns how many had not after 5 s."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        return group_leftovers(self.proc.pid)

    def stop(self) -> int:
        """A clean stop (SIGTERM); its exit status."""
        assert self.proc is not None
        self.proc.terminate()
        try:
            return self.proc.wait(60)
        finally:
            group_leftovers(self.proc.pid, grace_s=1.0)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join("    " + line for line in text)


@dataclass
class Soak:
    """One broker's run: its processes and clients, and the options."""

    kind: str
    args: argparse.Namespace
    broker: BrokerProcess
    agent: AgentRunner
    device: Device
    watcher: Watcher
    presence: PresenceWatch
    trust: TrustStore
    rng: random.Random
    notes: list[str] = field(default_factory=list)

    def sleep_until(self, moment: float) -> None:
        while (left := moment - time.perf_counter()) > 0:
            time.sleep(min(left, 0.05))

    def wait_for_result_after(self, tag: str, timeout_s: float = 120.0) -> float:
        """Seconds until a task published from now on got its result: the whole path works again."""
        started = time.perf_counter()
        first = self.device.count(tag) + 1
        deadline = started + timeout_s
        while time.perf_counter() < deadline:
            published, _ = self.device.ids(tag)
            if any(int(t.rsplit("-", 1)[1]) >= first and self.watcher.has_result(t) for t in published):
                return time.perf_counter() - started
            time.sleep(0.1)
        raise RuntimeError(
            f"no result for a task published after {timeout_s:.0f} s; agent log:\n{self.agent.tail()}"
        )

    def drain(self, tag: str) -> float:
        """Stop the device; wait until every task of the phase has a result (or the timeout), then
        a little longer for late copies. Seconds it took."""
        self.device.end()
        started = time.perf_counter()
        deadline = started + self.args.drain_timeout
        published, _ = self.device.ids(tag)
        while self.watcher.missing(published) and time.perf_counter() < deadline:
            time.sleep(0.25)
        took = time.perf_counter() - started
        time.sleep(self.args.linger)
        return took

    def rss_median(self, samples: int = 5, every_s: float = 1.0) -> int:
        values = []
        for n in range(samples):
            if n:
                time.sleep(every_s)
            values.append(self.agent.rss())
        return int(statistics.median(values))

    def check_alive(self, phase: str) -> None:
        assert self.agent.proc is not None
        code = self.agent.proc.poll()
        if code is not None:
            self.notes.append(f"{phase}: the agent exited by itself with status {code}; restarted")
            progress(f"the agent exited by itself with status {code}; its log ends:\n{self.agent.tail()}")
            self.agent.start()


# --- phase 1: kill -9 of the agent ----------------------------------------------------------------


def one_life(soak: Soak) -> Life:
    """Let the current agent live to a random age, sampling its RSS at --rss-age, then kill -9 it."""
    args, agent = soak.args, soak.agent
    age = soak.rng.uniform(*args.life)
    life = Life(age, False, agent.started, history_bytes=agent.found[0], journal_bytes=agent.found[1])
    if age > args.rss_age:
        soak.sleep_until(agent.started + args.rss_age)
        assert agent.proc is not None
        if agent.proc.poll() is None:
            life.rss = agent.rss()
    soak.sleep_until(agent.started + age)
    assert agent.proc is not None
    life.exited = agent.proc.poll()
    life.online = soak.presence.online_since(agent.started)
    if life.exited is not None:
        progress(f"the agent had exited by itself with status {life.exited}; its log ends:\n{agent.tail()}")
    life.leftovers = agent.kill9()
    return life


def kill_phase(soak: Soak, tag: str = "k") -> dict[str, Any]:
    args = soak.args
    progress(f"{soak.kind}: phase 1, {args.kills} kill -9 of the agent at {args.rate:g} tasks/s")
    phase_start = time.perf_counter()
    soak.device.begin(tag)
    lives = []
    for n in range(args.kills):
        lives.append(one_life(soak))
        soak.agent.start()
        if (n + 1) % 10 == 0 or n + 1 == args.kills:
            progress(f"{soak.kind}: {n + 1} of {args.kills} kills, {soak.device.count(tag)} tasks sent")
    soak.presence.wait_online(soak.agent.started)
    soak.sleep_until(time.perf_counter() + args.tail)
    drained = soak.drain(tag)
    figures = _figures(soak, tag, time.perf_counter() - phase_start, drained)
    figures.update(_rss_across_lives(lives, phase_start + args.warmup, args.rss_age))
    figures.update(
        kills=len(lives),
        kills_before_online=sum(not life.online for life in lives),
        exited_by_itself=sum(life.exited is not None for life in lives),
        leftovers=sum(life.leftovers for life in lives),
    )
    return figures


def _rss_across_lives(lives: list[Life], since: float, age: float) -> dict[str, Any]:
    """RSS at `age` of the first and of the last RSS_LIVES lives started after `since` (medians),
    with what those lives found on disk at their start (medians): what a start costs as it grows."""
    measured = [life for life in lives if life.rss is not None and life.started >= since]
    side = min(RSS_LIVES, len(measured) // 2)
    if side < 1:
        return {}
    ends = {"early": measured[:side], "late": measured[-side:]}
    out: dict[str, Any] = {"rss_lives": side, "rss_age": age}
    for end, group in ends.items():
        out[f"rss_{end}"] = statistics.median(life.rss or 0 for life in group)
        out[f"history_{end}"] = statistics.median(life.history_bytes for life in group)
        out[f"journal_{end}"] = statistics.median(life.journal_bytes for life in group)
    return out


# --- phase 2: broker restarts ---------------------------------------------------------------------


def restart_phase(soak: Soak, tag: str = "b") -> dict[str, Any]:
    args = soak.args
    how = args.stop[soak.kind]
    progress(
        f"{soak.kind}: phase 2, {args.restarts} broker restarts "
        f"({'kill -9' if how == 'kill' else 'SIGTERM'}) after a warm-up of {args.warmup:g} s"
    )
    phase_start = time.perf_counter()
    soak.device.begin(tag)
    soak.sleep_until(phase_start + args.warmup)
    soak.check_alive("phase 2")
    early = soak.rss_median()
    recoveries = []
    for n in range(args.restarts):
        time.sleep(soak.rng.uniform(*args.gap))
        soak.broker.restart(how)
        recoveries.append(soak.wait_for_result_after(tag))
        soak.check_alive("phase 2")
        progress(
            f"{soak.kind}: restart {n + 1} of {args.restarts}, results again after {recoveries[-1]:.1f} s"
        )
    time.sleep(args.tail)
    late = soak.rss_median()
    drained = soak.drain(tag)
    figures = _figures(soak, tag, time.perf_counter() - phase_start, drained)
    figures.update(rss_early=early, rss_late=late, restarts=len(recoveries), stop=how)
    if recoveries:
        figures["recovery_s"] = statistics.median(recoveries)
    return figures


def _figures(soak: Soak, tag: str, seconds: float, drained: float) -> dict[str, Any]:
    t: Tally = tally(*soak.device.ids(tag), soak.watcher.results_of(tag), soak.trust)
    return {
        "broker": soak.kind,
        "phase": tag,
        "seconds": seconds,
        "drain_s": drained,
        "acked": t.acked,
        "published": t.published,
        "lost": len(t.lost),
        "lost_ids": t.lost[:20],
        "unacked": len(t.unacked),
        "duplicate_bytes": len(t.duplicate_bytes),
        "duplicate_bytes_ids": t.duplicate_bytes[:20],
        "resent": t.resent,
        "statuses": dict(t.statuses),
        "unverified": t.unverified,
        "other_runs": t.other_runs,
    }


# --- one broker -----------------------------------------------------------------------------------


def run_broker(kind: str, workdir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True)
    with contextlib.redirect_stdout(sys.stderr):  # what edge-provision says is progress, not figures
        fleet = provision(workdir, [["agent", NODE], ["device", "sensor-1"], ["dashboard", "dash-1"]])
        for name in (NODE, "dash-1"):
            edge_provision("--fleet", fleet.root, "bundle", name, "--out", workdir / name)
    broker = BrokerProcess(kind, fleet, workdir)
    broker.start()
    try:
        return _with_broker(kind, workdir, fleet, broker, args)
    finally:
        if broker.proc is not None and broker.proc.poll() is None:
            broker.stop("term")


def _with_broker(
    kind: str, workdir: Path, fleet: Fleet, broker: BrokerProcess, args: argparse.Namespace
) -> list[dict[str, Any]]:
    trust = TrustStore.load(workdir / "dash-1" / "trust.toml")
    signer = load_signer(next((fleet.root / "identities" / "sensor-1").glob("signing-*.key")), "sensor-1")
    env = agent_env(
        broker.port,
        workdir / "data",
        mqtt_protocol=PROTOCOL[kind],
        mqtt_reconnect_min_s=0.2,
        mqtt_reconnect_max_s=2,  # the default 30 s back-off would only stretch the phase
        security_clock_skew_s=5,  # replay rows live until expires_at + 5 s: a sooner plateau
        workers_count=2,
        testing_test_kernels="true",  # test.sleep
        log_level="info",
    )
    mix = dict(MIX) if args.sleep_share else {k: w for k, w in MIX.items() if k != "test.sleep"}
    watcher = Watcher(broker.port, fleet.password("dash-1"))  # its session first: no result may pass it by
    presence = PresenceWatch(broker.port, "dash-1", fleet.password("dash-1"), trust, NODE, "soak-presence")
    device = Device(broker.port, fleet.password("sensor-1"), signer, rate=args.rate, mix=mix, ttl_s=args.ttl)
    agent = AgentRunner(workdir / NODE / "agent.toml", env, workdir / "agent.log")
    soak = Soak(kind, args, broker, agent, device, watcher, presence, trust, random.Random(args.seed))
    agent.start()  # its first start makes its persistent session: tasks wait there from now on
    presence.wait_online(agent.started)
    rows = []
    try:
        if args.kills:
            rows.append(kill_phase(soak))
        if args.restarts:
            rows.append(restart_phase(soak))
        code = agent.stop()
        if code != 0:
            soak.notes.append(f"the agent's clean stop at the end exited with status {code}")
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
        for client in (device, watcher, presence):
            client.close()
    for row in rows:
        row["notes"] = soak.notes
    return rows


# --- report ---------------------------------------------------------------------------------------


PHASES = {"k": "kill -9 agent", "b": "broker restarts"}


def growth(row: dict[str, Any]) -> float | None:
    if "rss_early" not in row:
        return None
    return float(row["rss_late"] / row["rss_early"] - 1) * 100


def met(row: dict[str, Any]) -> dict[str, bool]:
    g = growth(row)
    return {
        "lost": row["lost"] == 0 and row["unacked"] == 0,
        "duplicate_bytes": row["duplicate_bytes"] == 0,
        "rss": g is not None and g < RSS_TARGET_PCT,
    }


def report(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        count = row["kills"] if row["phase"] == "k" else row["restarts"]
        g = growth(row)
        ok = met(row)
        rss = "n/a" if g is None else f"{g:+.1f} %"
        print(
            f"{row['broker']:9} {PHASES[row['phase']]:16} x{count:<4} lost {row['lost']} of {row['acked']}, "
            f"duplicate-bytes {row['duplicate_bytes']}, RSS growth {rss}   "
            f"(targets: lost 0 {_yes(ok['lost'])}, duplicate-bytes 0 {_yes(ok['duplicate_bytes'])}, "
            f"RSS growth < {RSS_TARGET_PCT:g} % {_yes(ok['rss'])})"
        )
        for line in _details(row):
            print("    " + line)


def _yes(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _details(row: dict[str, Any]) -> list[str]:
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(row["statuses"].items()))
    lines = [
        f"{row['seconds']:.0f} s, {row['published']} tasks published, {row['unacked']} never acknowledged "
        f"nor answered; results: {statuses}; {row['resent']} identical copies re-sent; drained in "
        f"{row['drain_s']:.1f} s; {row['unverified']} copies that do not verify, "
        f"{row['other_runs']} with run != 1",
    ]
    if "rss_early" in row:
        mib = 2**20
        how = (
            f"median of {row['rss_lives']} lives at each end, at age {row['rss_age']:g} s"
            if row["phase"] == "k"
            else "one process, 5 samples at each end"
        )
        lines.append(f"RSS {row['rss_early'] / mib:.1f} MiB -> {row['rss_late'] / mib:.1f} MiB ({how})")
    if "history_early" in row:
        mb = 1e6
        lines.append(
            f"those lives found at their start: history partitions {row['history_early'] / mb:.1f} -> "
            f"{row['history_late'] / mb:.1f} MB, journal {row['journal_early'] / mb:.1f} -> "
            f"{row['journal_late'] / mb:.1f} MB (medians)"
        )
    if row["phase"] == "k":
        lines.append(
            f"kills before the agent was online: {row['kills_before_online']}; agent exits by itself: "
            f"{row['exited_by_itself']}; processes left 5 s after a kill: {row['leftovers']}"
        )
    else:
        lines.append(
            f"broker stopped by {row['stop']}; median time to a new result: {row.get('recovery_s', 0):.1f} s"
        )
    if row["lost_ids"]:
        lines.append(f"lost: {', '.join(row['lost_ids'])}")
    if row["duplicate_bytes_ids"]:
        lines.append(f"results with differing copies: {', '.join(row['duplicate_bytes_ids'])}")
    lines += [f"note: {note}" for note in row["notes"]]
    return lines


# --- main -----------------------------------------------------------------------------------------


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    try:
        pair = (float(low), float(high))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH (seconds)") from None
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= LOW <= HIGH")
    return pair


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--broker", choices=("embedded", "mosquitto", "both"), default="both", help="default: both"
    )
    p.add_argument(
        "--kills", type=int, default=100, help="phase 1: kill -9 of the agent (default 100; 0 skips)"
    )
    p.add_argument("--restarts", type=int, default=10, help="phase 2: broker restarts (default 10; 0 skips)")
    p.add_argument("--rate", type=float, default=40.0, help="tasks/s the device sends (default 40)")
    p.add_argument(
        "--life",
        type=_pair,
        default=(0.3, 8.0),
        metavar="LOW,HIGH",
        help="an agent's age at its kill (0.3,8)",
    )
    p.add_argument(
        "--gap", type=_pair, default=(3.0, 10.0), metavar="LOW,HIGH",
        help="phase 2: seconds of load between a recovery and the next restart (default 3,10)",
    )  # fmt: skip
    p.add_argument("--warmup", type=float, default=90.0, help="seconds before RSS counts (default 90)")
    p.add_argument(
        "--rss-age", type=float, default=5.0, help="phase 1: the age at which RSS is read (default 5)"
    )
    p.add_argument(
        "--tail", type=float, default=20.0, help="seconds of load after the last kill/restart (20)"
    )
    p.add_argument("--ttl", type=float, default=60.0, help="the tasks' lifetime in seconds (default 60)")
    p.add_argument(
        "--drain-timeout", type=float, default=120.0, help="seconds to wait for every result (120)"
    )
    p.add_argument(
        "--linger", type=float, default=2.0, help="seconds to wait for late copies after the drain (2)"
    )
    p.add_argument(
        "--no-sleep", dest="sleep_share", action="store_false", help="no test.sleep tasks in the mix"
    )
    p.add_argument(
        "--mosquitto-stop", choices=STOPS, default="term", help="how Mosquitto is restarted (default term)"
    )
    p.add_argument(
        "--embedded-stop",
        choices=STOPS,
        default="kill",
        help="how the embedded broker is restarted (default kill)",
    )
    p.add_argument("--seed", type=int, default=15, help="seed of the kill moments (default 15)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    p.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR (must not exist) and keep it")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    args.stop = {"mosquitto": args.mosquitto_stop, "embedded": args.embedded_stop}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    announce()
    kinds = ["mosquitto", "embedded"] if args.broker == "both" else [args.broker]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="edge-soak-"))
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        rows += run_broker(kind, workdir / kind, args)
    report(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    broken = any(not (m := met(r))["lost"] or not m["duplicate_bytes"] for r in rows)
    if args.keep or broken:
        print(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    missed = any(not all(met(r).values()) for r in rows)
    print("targets met" if not missed else "targets NOT met")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
