"""`edge-submit batch FILE`: publish many tasks with progress, wait for every answer, summarize.

The summary counts answers by status (`completed`, `rejected`, ... from results; `refused` for
rejects reports; `no result` for tasks still unanswered at the deadline), error codes of the
others, and the rates: tasks published per second, tasks answered per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .collect import Collector, Pending, Update
from .exchange import close_quietly, connect, exit_status, publish_all, subscribe_answers, wait_answers
from .options import PROG, replies_for, resolve_target, trusted, wants_reply
from .params import parse_duration
from .progress import Progress
from .render import dumps
from .settings import ClientConfig
from .spec import load_batch, target_node


def _outcome(item: Pending) -> tuple[str, str | None]:
    """(status, error code) of one task: its worst result, a refusal, or no result."""
    if item.refused is not None:
        return "refused", item.refused.code
    if not item.results:
        return "no result", None
    bad = [r for r in item.results if not r.ok]
    if bad:
        return bad[0].status, (bad[0].error or {}).get("code")
    return "completed", None


def summarize(pendings: list[Pending], publish_s: float, total_s: float) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    tasks = []
    for item in pendings:
        status, code = _outcome(item)
        statuses[status] += 1
        if code:
            codes[f"{status}:{code}"] += 1
        nodes = sorted({r.node for r in item.results})
        tasks.append(
            {"id": item.id, "kernel": item.task.kernel, "status": status, "code": code, "nodes": nodes}
        )
    answered = len(pendings) - statuses["no result"]
    return {
        "tasks": len(pendings),
        "by_status": dict(statuses),
        "codes": dict(codes),
        "publish_s": round(publish_s, 3),
        "total_s": round(total_s, 3),
        "published_per_s": round(len(pendings) / publish_s, 1) if publish_s > 0 else None,
        "answered_per_s": round(answered / total_s, 1) if total_s > 0 else None,
        "results": tasks,
    }


def summary_text(summary: dict[str, Any]) -> str:
    parts = ", ".join(f"{count} {status}" for status, count in sorted(summary["by_status"].items()))
    lines = [f"{summary['tasks']} tasks: {parts}"]
    if summary["codes"]:
        lines.append("  codes: " + ", ".join(f"{k} x{v}" for k, v in sorted(summary["codes"].items())))
    lines.append(
        f"published in {summary['publish_s']:.2f} s ({summary['published_per_s']}/s);"
        f" answered in {summary['total_s']:.2f} s ({summary['answered_per_s']} tasks/s)"
    )
    missing = [t["id"] for t in summary["results"] if t["status"] == "no result"]
    if missing:
        lines.append(f"  no result for: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    return "\n".join(lines)


def cmd_batch(args: argparse.Namespace, config: ClientConfig) -> int:
    ttl = parse_duration(args.ttl, "--ttl") if args.ttl else config.submit.ttl_s
    specs = load_batch(Path(args.file), resolve_target(args, config), ttl)
    if wants_reply(args, config):
        for spec in specs:
            spec.options.setdefault("reply", True)
    signer, topics = config.signer(), config.topics
    signed = [spec.sign(signer, topics) for spec in specs]
    trust = None if args.no_wait else trusted(config)
    client = connect(config, "batch")
    try:
        messages = [(topic, payload) for topic, payload, _ in signed]
        if args.no_wait:
            started = time.monotonic()
            publish_all(client, messages, Progress("published", len(signed), tty=args.progress))
            print(f"published {len(signed)} tasks in {time.monotonic() - started:.2f} s", file=sys.stderr)
            return 0
        assert trust is not None
        collector = Collector(trust, topics, replies_for(signed, config))
        for (_, payload, task), spec in zip(signed, specs, strict=True):
            collector.add(task, payload, target_node(spec.target), spec.runs)
        subscribe_answers(client, collector)
        started = time.monotonic()
        publish_all(client, messages, Progress("published", len(signed), tty=args.progress))
        publish_s = time.monotonic() - started
        answers = Progress("answered", len(signed), tty=args.progress)

        def on_update(update: Update) -> None:
            if update.kind == "unverified":
                print(f"{PROG}: warning: ignored a message that does not verify on {update.topic}"
                      f" ({update.problem})", file=sys.stderr)  # fmt: skip
            elif update.kind in ("result", "refused") and update.pending is not None and update.pending.done:
                answers.advance()

        seconds = parse_duration(args.wait_timeout, "--wait-timeout") if args.wait_timeout else None
        deadline = time.monotonic() + (seconds or config.submit.wait_timeout_s)
        wait_answers(client, collector, deadline, on_update)
        answers.finish()
        summary = summarize(list(collector.pending.values()), publish_s, time.monotonic() - started)
        print(dumps(summary) if args.json else summary_text(summary), flush=True)
        return exit_status(collector.pending.values())
    finally:
        close_quietly(client)
