"""`edge-submit`: sign and publish tasks and control commands, wait for their verified results.

    edge-submit -c op-1/operator.toml --node node-1 --kernel stats --param 'signal=[1,2,3]'
    edge-submit task -c op-1/operator.toml --node node-1 --kernel fir_filter \\
        --param-file signal=readings.csv --param 'taps=[0.5,0.5]' --json
    edge-submit batch -c op-1/operator.toml --node node-1 tasks.jsonl
    edge-submit control sys.status -c op-1/operator.toml --node node-1 --task t-17

`task` is the default subcommand. Results are verified against the trust store before they
are shown; see `--help` of each subcommand for the flags and the exit status.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any

from .cli import add_config_options, load_config, run_tool
from .collect import Collector, Update
from .errors import EXIT_OK, EXIT_STATUS_HELP, UsageError
from .exchange import (
    answered,
    close_quietly,
    connect,
    exit_status,
    publish_all,
    subscribe_answers,
    wait_answers,
)
from .options import PROG, replies_for, resolve_target, trusted, wants_reply
from .params import build_params, parse_duration, parse_when
from .render import describe_result, dumps, jsonable, result_document
from .settings import ClientConfig
from .spec import TaskSpec, target_node

EXAMPLES = """examples:
  edge-submit -c op-1/operator.toml --node node-1 --kernel stats --param 'signal=[1,2,3]'
  edge-submit -c op-1/operator.toml --node node-1 --kernel fir_filter \\
      --param-file signal=readings.csv --param 'taps=[0.5,0.5]' --json
  edge-submit -c op-1/operator.toml --pool cams --kernel stats --params @params.json --no-wait
  edge-submit batch -c op-1/operator.toml --node node-1 tasks.jsonl
  edge-submit control sys.status -c op-1/operator.toml --node node-1 --task t-17
  edge-submit task --help     (every flag of a task: priority, timeout, retries, schedules, ...)
"""
SUBCOMMANDS = ("task", "batch", "control")
CONTROL_COMMANDS = ("status", "list", "cancel", "drain", "resume", "reload")
_VALUE_FLAGS = {
    "--config", "-c", "--host", "--port", "--prefix", "--ca-file", "--cert-file", "--key-file",
    "--username", "--password-file", "--mqtt-protocol", "--kid", "--signing-key", "--trust-store",
}  # fmt: skip


def _add_target(parser: argparse.ArgumentParser, required_help: str) -> None:
    group = parser.add_argument_group("target (one of; default submit.node / EDGE_SUBMIT_NODE)")
    one = group.add_mutually_exclusive_group()
    one.add_argument("--node", "-n", help=required_help)
    one.add_argument("--all", action="store_true", help="every agent ({p}/tasks/all)")
    one.add_argument("--pool", help="one agent of pool POOL ({p}/tasks/pool/POOL)")


def _add_wait(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("waiting and output")
    group.add_argument("--no-wait", action="store_true", help="publish, wait for the broker's PUBACK, exit")
    group.add_argument(
        "--wait-timeout",
        metavar="DURATION",
        help="how long to wait for results (submit.wait_timeout_s, 60 s)",
    )
    group.add_argument(
        "--reply",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask for `reply` and wait on {p}/replies/{kid}/{id} (default submit.reply; unset: yes with"
        " a device bundle, whose ACL lets it read only its replies, else results on {p}/results/...)",
    )
    group.add_argument("--json", action="store_true", help="JSON lines on stdout (arrays as lists)")
    group.add_argument("--full", action="store_true", help="print whole arrays, not a summary")


def _task_parser(sub: Any) -> None:
    p = sub.add_parser(
        "task",
        help="sign, publish and wait for one task (the default subcommand)",
        description="Sign a task with the operator's (or device's) key, publish it on {p}/tasks/..., wait"
        " for its result on {p}/results/{node}/{id} (or {p}/replies/{kid}/{id}: --reply) and print it once"
        " its signature verified.",
        epilog="Times: +10m (from now), ISO 8601 with an offset (2027-01-31T12:00:00Z) or epoch seconds."
        " Durations: 90, 45s, 30m, 1h30m. " + EXIT_STATUS_HELP,
    )
    add_config_options(p, suppress=True)
    _add_target(p, "the agent's node id ({p}/tasks/NODE)")
    t = p.add_argument_group("the task (PROTOCOL 4)")
    t.add_argument(
        "--kernel", "-k", required=True, help="kernel name, e.g. stats, fir_filter, matrix_multiply"
    )
    t.add_argument(
        "--params", metavar="JSON", help='parameters as a JSON object, or @file.json: {"signal": [1,2]}'
    )
    t.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one parameter; VALUE is JSON or text",
    )
    t.add_argument(
        "--param-file",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="one parameter from a .npy, .csv (1-D or 2-D floats) or .json file",
    )
    t.add_argument("--id", dest="task_id", help="task id (default: a random one)")
    t.add_argument("--priority", type=int, help="0 (least urgent) to 9; default 5")
    t.add_argument("--timeout", metavar="DURATION", help="limit of one attempt (timeout_s; default 30 s)")
    t.add_argument("--max-retries", type=int, help="extra attempts after a failure, 0-10 (default 2)")
    t.add_argument("--run-at", metavar="TIME", help="do not start before TIME")
    t.add_argument("--every", metavar="DURATION", help="run again every DURATION (>= 1 s)")
    t.add_argument("--cron", metavar="EXPR", help="5-field cron schedule, e.g. '*/5 * * * *'")
    t.add_argument("--tz", help="IANA time zone of --cron, e.g. Europe/Paris")
    t.add_argument("--until", metavar="TIME", help="last moment a recurring task may run")
    exp = t.add_mutually_exclusive_group()
    exp.add_argument("--ttl", metavar="DURATION", help="accept until now + DURATION (submit.ttl_s, 1 h)")
    exp.add_argument("--expires-at", metavar="TIME", help="accept until TIME")
    t.add_argument("--trace", metavar="TRACEPARENT", help="W3C traceparent copied into results and logs")
    t.add_argument("--runs", type=int, default=1, help="results to wait for (recurring tasks); default 1")
    t.add_argument("--expect", type=int, metavar="N", help="with --all: agents expected to answer")
    _add_wait(p)


def _batch_parser(sub: Any) -> None:
    p = sub.add_parser(
        "batch",
        help="publish many tasks from a file, wait for all, print a summary",
        description="Publish every task of FILE (JSON lines, or a JSON array; `-` reads stdin), with a"
        " progress bar on a terminal, then wait for every result and print a summary. Each object:"
        ' {"kernel": "stats", "params": {...}, "target": "node-1", "priority": 7, "param_files":'
        ' {"signal": "x.npy"}, "runs": 1, ...} with any optional field of PROTOCOL 4 by its wire name.',
        epilog=EXIT_STATUS_HELP,
    )
    add_config_options(p, suppress=True)
    p.add_argument("file", metavar="FILE", help="batch file (JSON lines or a JSON array; - for stdin)")
    _add_target(p, "default target of lines without 'target'")
    p.add_argument("--ttl", metavar="DURATION", help="default lifetime of each task (submit.ttl_s, 1 h)")
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="force the bar on/off"
    )
    _add_wait(p)


def _control_parser(sub: Any) -> None:
    p = sub.add_parser(
        "control",
        help="send a sys.* command to one agent and print its answer",
        description="Sign a control command with the operator's control key, publish it on"
        " {p}/control/NODE and print the agent's answer (PROTOCOL 8).",
        epilog="Examples: control sys.status --node node-1 --task t-17; control list --node node-1 --status"
        " queued --limit 20; control cancel --node node-1 --task t-17; control drain --node node-1. "
        + EXIT_STATUS_HELP,
    )
    add_config_options(p, suppress=True)
    p.add_argument(
        "control_command", metavar="COMMAND", help=f"sys.{{{','.join(CONTROL_COMMANDS)}}} (sys. optional)"
    )
    p.add_argument("--node", "-n", help="the agent (default submit.node / EDGE_SUBMIT_NODE)")
    p.add_argument("--task", help="task id (sys.status, sys.cancel)")
    p.add_argument("--issuer", dest="issuer", metavar="KID", help="the task's issuer when ids clash (kid)")
    p.add_argument("--status", help="sys.list: only records of this status")
    p.add_argument("--limit", type=int, help="sys.list: at most this many records")
    p.add_argument("--params", metavar="JSON", help="parameters as a JSON object (overrides the flags above)")
    p.add_argument("--ttl", metavar="DURATION", help="accept until now + DURATION (default 5 m)")
    _add_wait(p)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sign and publish tasks and control commands for edge agents; wait for their"
        " verified results. `task` is the default subcommand: `edge-submit -c operator.toml --node"
        " node-1 --kernel stats --param 'signal=[1,2,3]'`.",
        epilog=EXAMPLES + "\n" + textwrap.fill(EXIT_STATUS_HELP, 88),
    )
    add_config_options(top)
    sub = top.add_subparsers(dest="command", metavar="{task,batch,control}")
    _task_parser(sub)
    _batch_parser(sub)
    _control_parser(sub)
    return top


def with_default_command(argv: Sequence[str]) -> list[str]:
    """`argv` with `task` inserted when no subcommand is named (global flags may come first)."""
    args = list(argv)
    i = 0
    while i < len(args):
        tok = args[i]
        if tok in SUBCOMMANDS or tok in ("-h", "--help"):
            return args
        if tok.split("=", 1)[0] in _VALUE_FLAGS:
            i += 1 if "=" in tok else 2
        elif tok in ("--tls", "--no-tls"):
            i += 1
        else:
            break
    return ["task", *args] if args else args


# --- the commands -----------------------------------------------------------------------------------


def _wait_timeout(args: argparse.Namespace, config: ClientConfig, extra: float = 0.0) -> float:
    if args.wait_timeout is not None:
        return parse_duration(args.wait_timeout, "--wait-timeout")
    return config.submit.wait_timeout_s + extra


def _task_spec(args: argparse.Namespace, config: ClientConfig, target: str) -> TaskSpec:
    now = time.time()
    options: dict[str, Any] = {"priority": args.priority, "max_retries": args.max_retries, "cron": args.cron}
    options.update(tz=args.tz, trace=args.trace)
    if args.timeout is not None:
        options["timeout_s"] = parse_duration(args.timeout, "--timeout")
    if args.every is not None:
        options["every_s"] = parse_duration(args.every, "--every")
    for flag, key in (("run_at", "run_at"), ("until", "until")):
        if getattr(args, flag) is not None:
            options[key] = parse_when(getattr(args, flag), f"--{flag.replace('_', '-')}", now)
    if wants_reply(args, config):
        options["reply"] = True
    if args.runs < 1:
        raise UsageError("--runs must be >= 1")
    return TaskSpec(
        args.kernel,
        build_params(args.params, args.param, args.param_file),
        target,
        {k: v for k, v in options.items() if v is not None},
        task_id=args.task_id,
        ttl_s=parse_duration(args.ttl, "--ttl") if args.ttl else config.submit.ttl_s,
        expires_at=parse_when(args.expires_at, "--expires-at", now) if args.expires_at else None,
        runs=args.runs,
        where="task",
    )


class Printer:
    """Answers as they come: readable text, or one JSON object per line."""

    def __init__(self, as_json: bool, full: bool) -> None:
        self.as_json = as_json
        self.full = full

    def __call__(self, update: Update) -> None:
        if update.kind == "unverified":
            print(f"{PROG}: warning: ignored a message that does not verify on {update.topic}"
                  f" ({update.problem})", file=sys.stderr)  # fmt: skip
        elif update.kind == "result" and update.result is not None:
            r = update.result
            print(dumps(result_document(r)) if self.as_json else describe_result(r, self.full), flush=True)
        elif update.kind == "refused" and update.report is not None and update.pending is not None:
            rep = update.report
            text = f"the agent could not authenticate the message ({rep.code}); it was not run"
            if self.as_json:
                doc = {"id": update.pending.id, "node": rep.node, "status": "refused", "verified": True}
                doc.update(error={"code": rep.code, "message": text}, report=jsonable(rep.to_body()))
                print(dumps(doc), flush=True)
            else:
                print(
                    f"{rep.node} {update.pending.id} refused: {rep.code}: {text} (kid {rep.kid})", flush=True
                )

    def timeout(self, pending_ids: list[str], node: str | None, seconds: float) -> None:
        where = f"node {node}" if node else "any agent"
        print(
            f"{PROG}: error: not every result for {', '.join(pending_ids[:5])} came from {where} within"
            f" {seconds:g} s."
            f" The task may still be queued or running: ask `edge-submit control sys.status --node"
            f" {node or 'NODE'} --task {pending_ids[0]}`, and check that the agent is online (edge-watch)",
            file=sys.stderr,
        )
        if self.as_json:
            for task_id in pending_ids:
                print(dumps({"id": task_id, "status": "timeout", "error": {"code": "timeout"}}), flush=True)


def send_and_wait(
    config: ClientConfig,
    args: argparse.Namespace,
    signed: list[tuple[str, bytes, Any]],
    specs: list[TaskSpec],
    extra_wait: float = 0.0,
    expect: int | None = None,
) -> int:
    """Publish `signed` (topic, payload, task) and wait for every answer; the exit status."""
    printer = Printer(args.json, getattr(args, "full", False))
    trust = None if args.no_wait else trusted(config)  # before connecting: fail fast
    client = connect(config, "submit")
    try:
        if args.no_wait:
            publish_all(client, [(t, p) for t, p, _ in signed], None)
            for topic, _, task in signed:
                print(dumps({"id": task.id, "topic": topic, "published": True}) if args.json else task.id)
            return EXIT_OK
        assert trust is not None
        collector = Collector(trust, config.topics, replies_for(signed, config))
        for (_, payload, task), spec in zip(signed, specs, strict=True):
            collector.add(task, payload, target_node(spec.target), spec.runs, expect)
        subscribe_answers(client, collector)
        publish_all(client, [(t, p) for t, p, _ in signed], None)
        seconds = _wait_timeout(args, config, extra_wait)
        finished = wait_answers(client, collector, time.monotonic() + seconds, printer)
        status = exit_status(collector.pending.values())
        missing = [i.id for i in collector.pending.values() if not answered(i)]
        if not finished and missing:
            printer.timeout(missing, target_node(specs[0].target), seconds)
        return status
    finally:
        close_quietly(client)


def cmd_task(args: argparse.Namespace, config: ClientConfig) -> int:
    target = resolve_target(args, config)
    if target is None:
        raise UsageError("no target: give --node NODE, --all or --pool POOL (or set EDGE_SUBMIT_NODE)")
    spec = _task_spec(args, config, target)
    signed = spec.sign(config.signer(), config.topics)
    body = signed[1]
    if len(body) > 1 << 20:
        print(f"{PROG}: warning: the task is {len(body)} bytes; agents refuse more than 1 MiB by default",
              file=sys.stderr)  # fmt: skip
    task = signed[2]
    extra = 0.0
    if task.run_at is not None:
        extra += max(0.0, task.run_at - time.time())
    if task.every_s is not None:
        extra += task.every_s * args.runs
    return send_and_wait(config, args, [signed], [spec], extra, args.expect)


def cmd_control(args: argparse.Namespace, config: ClientConfig) -> int:
    name = args.control_command
    command = name if name.startswith("sys.") else f"sys.{name}"
    if command[4:] not in CONTROL_COMMANDS:
        print(
            f"{PROG}: warning: {command} is not a command of PROTOCOL 8; sending it anyway", file=sys.stderr
        )
    node = args.node or config.submit.node
    if node is None:
        raise UsageError("no node: give --node NODE (or set EDGE_SUBMIT_NODE)")
    params: dict[str, Any] = {
        k: v for k in ("task", "status", "limit") if (v := getattr(args, k)) is not None
    }
    if args.issuer is not None:
        params["kid"] = args.issuer
    if command in ("sys.status", "sys.cancel") and "task" not in params and args.params is None:
        raise UsageError(f"{command} needs --task ID")
    if args.params is not None:
        params = build_params(args.params)
    ttl = parse_duration(args.ttl, "--ttl") if args.ttl else 300.0
    spec = TaskSpec(command, params, node, {"reply": True} if wants_reply(args, config) else {}, ttl_s=ttl)
    topics = config.topics
    _, payload, task = spec.sign(config.signer(), topics)  # a control command is a signed task body
    return send_and_wait(config, args, [(topics.control(node), payload, task)], [spec])


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(with_default_command(raw))
    if args.command is None:
        parser().print_help(sys.stderr)
        return 2

    def body() -> int:
        config = load_config(args)
        if args.command == "batch":
            from .batch import cmd_batch

            return cmd_batch(args, config)
        if args.command == "control":
            return cmd_control(args, config)
        return cmd_task(args, config)

    return run_tool(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
