"""`edge-provision` timings, as a user runs it: bulk add (target: 1,000 devices in at most 20 s), and more.

    .venv/bin/python benchmarks/provision.py [--rounds N] [--count N] [--check]

Every round makes a fresh fleet in a temporary directory and times, each as its own process
(wall clock, interpreter start-up included, as a user sees it):
  init, add device --count N, add agent (one more into the full fleet), bundle of that agent
  (its trust store holds the N device keys), bundle --archive of a device, broker-files, list --json.
The process start-up alone (`edge-provision --help`) is shown too, to tell start-up from work.
Figures are medians over the rounds, with every run listed. `--check` exits 1 when the bulk
add misses its target.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

TARGET_S = 20.0


def _command() -> list[str]:
    script = Path(sys.executable).parent / "edge-provision"
    return [str(script)] if script.exists() else [sys.executable, "-m", "provisioning"]


def timed(*args: str) -> float:
    """Seconds for one `edge-provision ARGS` process; fails loudly if the command fails."""
    start = time.perf_counter()
    proc = subprocess.run([*_command(), *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"edge-provision {shlex.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def one_round(count: int, workdir: Path) -> dict[str, float]:
    fleet = str(workdir / "fleet")
    figures = {
        "start-up (--help)": timed("--help"),
        "init": timed("init", fleet),
        f"add device --count {count}": timed(
            "add", "device", "--count", str(count), "--prefix", "d-", "--fleet", fleet
        ),
        "add agent (one, into the full fleet)": timed("add", "agent", "node-1", "--fleet", fleet),
        f"bundle agent (trust store of {count} keys)": timed(
            "bundle", "node-1", "--out", str(workdir / "node-1"), "--fleet", fleet
        ),
        "bundle device --archive": timed(
            "bundle", "d-0001", "--archive", str(workdir / "d-0001.tar.gz"), "--fleet", fleet
        ),
        "broker-files (mosquitto)": timed("broker-files", "--out", str(workdir / "broker"), "--fleet", fleet),
        "list --json": timed("list", "--json", "--fleet", fleet),
    }
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="fresh fleets to time (default 3)")
    parser.add_argument("--count", type=int, default=1000, help="devices in the bulk add (default 1000)")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 if the bulk add takes over {TARGET_S:g} s"
    )
    args = parser.parse_args(argv)

    runs: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        workdir = Path(tempfile.mkdtemp(prefix="edge-provision-bench-"))
        try:
            for name, seconds in one_round(args.count, workdir).items():
                runs.setdefault(name, []).append(seconds)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"edge-provision: {shlex.join(_command())}; {args.rounds} round(s), fresh fleet each")
    width = max(map(len, runs))
    for name, values in runs.items():
        listed = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:<{width}}  median {statistics.median(values):6.2f} s   runs: {listed}")
    bulk = statistics.median(runs[f"add device --count {args.count}"])
    rate = args.count / bulk
    verdict = "meets" if bulk <= TARGET_S else "MISSES"
    print(
        f"bulk add: {bulk:.2f} s for {args.count} devices ({rate:.0f}/s); {verdict} the {TARGET_S:g} s target"
    )
    return 1 if args.check and bulk > TARGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
