"""The demo device: signs and publishes the opening mix of tasks, two forged ones, then a trickle.

    python -m demo.device --config .demo/demo-sensor/device.toml [--interval 2]

It is what a sensor gateway running Python would do with the protocol library (`make_task` builds
and signs with the device's own key from its bundle), and it prints one line per task sent. The
forged tasks are signed by keys the agent does not trust: one by a kid it has never heard of
(the agent reports `unknown_key` on its rejects topic), one under the device's own kid with a
key that is not the device's (`bad_signature`). SIGTERM or SIGINT: disconnect, exit 0.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import numpy as np
import paho.mqtt.client as paho

from agent.common import tomlio
from agent.common.errors import EdgeError
from agent.protocol import Signer, generate_signer, make_task
from agent.tools.connection import ToolClient
from agent.tools.settings import ClientConfig, load_client_config
from demo import mix

from .errors import DemoError

PUBLISH_TIMEOUT_S = 30.0
INTRUDER_KID = "intruder"


class Device:
    """One connection, one signing key, a counter for readable task ids."""

    def __init__(self, config: ClientConfig, target: str, client: ToolClient, id_prefix: str = "") -> None:
        self.config = config
        self.target = target
        self.client = client
        self.signer = config.signer()
        self.id_prefix = id_prefix
        self.sent = 0

    def publish(
        self, planned: mix.Planned, signer: Signer | None = None, note: str = ""
    ) -> paho.MQTTMessageInfo:
        """Sign (with `signer`, default the device's key) and publish at QoS 1; prints one line."""
        self.sent += 1
        task_id = f"{self.id_prefix}{planned.label}-{self.sent:04d}"
        topic, payload, _ = make_task(
            signer or self.signer,
            self.target,
            planned.kernel,
            planned.params,
            topics=self.config.topics,
            task_id=task_id,
            **planned.options,
        )
        info = self.client.publish(topic, payload)
        options = "".join(f" {k}={v}" for k, v in planned.options.items())
        size = f"{len(payload) / 1024:.1f} KiB"
        print(
            f"{time.strftime('%H:%M:%S')} sent {task_id} {planned.kernel}{options} ({size}){note}", flush=True
        )
        return info

    def forged(self, rng: np.random.Generator, unknown_key: bool) -> paho.MQTTMessageInfo:
        """A task signed by a kid the agent never heard of, or under our kid with another key."""
        if unknown_key:
            signer, note = generate_signer(INTRUDER_KID), " [forged: unknown key]"
        else:
            signer, note = generate_signer(self.signer.kid), " [forged: right kid, wrong key]"
        return self.publish(mix.Planned("forged", "stats", mix.params_for("stats", rng)), signer, note)

    def opening(self, rng: np.random.Generator) -> None:
        """The opening mix in one burst, so that the agent takes it in one batch and priorities
        decide the order; then the two forged tasks. Waits for every PUBACK."""
        infos = [self.publish(planned) for planned in mix.opening(rng)]
        infos += [self.forged(rng, unknown_key=True), self.forged(rng, unknown_key=False)]
        for info in infos:
            _wait(info)

    def trickle(self, rng: np.random.Generator, n: int) -> None:
        planned = mix.trickle(rng, n)
        _wait(self.forged(rng, unknown_key=n % 2 == 0) if planned is None else self.publish(planned))


def _wait(info: paho.MQTTMessageInfo) -> None:
    try:
        info.wait_for_publish(PUBLISH_TIMEOUT_S)
    except (RuntimeError, ValueError) as exc:  # paho: not connected now; it is queued and resent
        print(f"{time.strftime('%H:%M:%S')} not acknowledged yet: {exc}", flush=True)


def seconds_arg(text: str) -> float:
    """argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo.device",
        description="The demo device of `make run`: every kernel, several priorities, a recurring task, "
        "an invalid and two forged tasks, then one task every --interval seconds (the kernels in turn, "
        "now and then an invalid or a forged one).",
    )
    parser.add_argument("--config", required=True, type=Path, help="device.toml from `edge-provision bundle`")
    parser.add_argument("--target", help="node id to task (default: the bundle's first target)")
    parser.add_argument(
        "--interval", type=seconds_arg, default=2.0, help="seconds between trickle tasks; 0: none"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for the sensor data")
    parser.add_argument("--id-prefix", default="", help="prefix of every task id (to run it twice)")
    return parser


def _target(path: Path, given: str | None) -> str:
    if given:
        return given
    targets = tomlio.loads(path.read_text(encoding="utf-8")).get("device", {}).get("targets") or []
    nodes = [t for t in targets if t != "all" and not str(t).startswith("pool:")]
    if not nodes:
        raise DemoError(f"{path}: the device has no node target; pass --target NODE")
    return str(nodes[0])


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        config = load_client_config(args.config)
        client = ToolClient.from_config(config, "demo")
        client.connect()
        device = Device(config, _target(args.config, args.target), client, args.id_prefix)
        rng = np.random.default_rng(args.seed)
        device.opening(rng)
        n = 0
        while args.interval > 0 and not stop.wait(args.interval):
            device.trickle(rng, n)
            n += 1
    except EdgeError as exc:  # DemoError, the tools' ToolError and ConfigError
        print(f"demo device: error: {exc}", file=sys.stderr)
        return 1
    stop.wait()
    client.close()
    print(f"{time.strftime('%H:%M:%S')} stopped after {device.sent} tasks", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
