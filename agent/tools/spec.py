"""What one task to submit is, before it is signed: from flags or from a line of a batch file.

    spec = TaskSpec("stats", {"signal": [1, 2]}, target="node-1", options={"priority": 7})
    topic, payload, task = spec.sign(signer, topics)      # UsageError naming the field if invalid

Batch files: JSON lines (one object per line; blank lines and lines starting with `#` skipped) or
one JSON array of objects. Each object has `kernel`, `params` (default `{}`), optionally `target`
(a node id, `all` or `pool:P`; default from the command line), `param_files` ({name: file},
relative to the batch file), `runs` (results to wait for), `ttl_s`, and any optional field of
PROTOCOL 4 by its wire name (`id`, `priority`, `timeout_s`, `max_retries`, `run_at`, `every_s`,
`cron`, `tz`, `until`, `expires_at`, `trace`); times as epoch seconds or ISO 8601 text.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.protocol import BodyError, EncodeError, Signer, Task, TopicError, Topics, make_task
from agent.protocol.task import OPTIONAL_FIELDS

from .errors import UsageError
from .params import load_param_file, parse_when

_TIME_FIELDS = ("run_at", "until", "expires_at")
_BATCH_KEYS = {
    "kernel",
    "params",
    "target",
    "param_files",
    "runs",
    "ttl_s",
    "id",
    "expires_at",
    *OPTIONAL_FIELDS,
}


def target_node(target: str) -> str | None:
    """The node whose results topic answers a task for `target` (None: any node)."""
    return None if target == "all" or target.startswith("pool:") else target


@dataclass
class TaskSpec:
    kernel: str
    params: dict[str, Any]
    target: str
    options: dict[str, Any] = field(default_factory=dict)  # optional fields of PROTOCOL 4
    task_id: str | None = None
    ttl_s: float = 3600.0
    expires_at: float | None = None
    runs: int = 1
    where: str = "the command line"  # named in errors

    def sign(self, signer: Signer, topics: Topics, now: float | None = None) -> tuple[str, bytes, Task]:
        issued = time.time() if now is None else now
        ttl = self.ttl_s if self.expires_at is None else self.expires_at - issued
        run_at = self.options.get("run_at")
        if self.expires_at is None and isinstance(run_at, (int, float)) and run_at > issued:
            ttl += run_at - issued  # the lifetime starts when the task may first start
        if ttl <= 0:
            raise UsageError(f"{self.where}: expires_at is in the past")
        try:
            return make_task(
                signer,
                self.target,
                self.kernel,
                self.params,
                topics=topics,
                task_id=self.task_id,
                ttl_s=ttl,
                now=issued,
                **self.options,
            )
        except BodyError as exc:
            raise UsageError(f"{self.where}: the task is not valid: {exc.message}") from None
        except TopicError as exc:
            raise UsageError(f"{self.where}: {exc}") from None
        except EncodeError as exc:
            raise UsageError(f"{self.where}: a parameter cannot be sent: {exc.message}") from None


def _batch_item(doc: object, where: str, base: Path, default_target: str | None, ttl_s: float) -> TaskSpec:
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: must be a JSON object with at least 'kernel'")
    unknown = sorted(set(doc) - _BATCH_KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_BATCH_KEYS))})")
    kernel, params = doc.get("kernel"), doc.get("params", {})
    if not isinstance(kernel, str) or not kernel:
        raise UsageError(f"{where}: 'kernel' is required (a kernel name such as \"stats\")")
    if not isinstance(params, dict):
        raise UsageError(f"{where}: 'params' must be an object")
    params = dict(params)
    files = doc.get("param_files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise UsageError(f"{where}: 'param_files' must map names to file paths")
    for name, rel in files.items():
        path = Path(rel).expanduser()
        params[name] = load_param_file(path if path.is_absolute() else base / path, f"{where}: {name}")
    target = doc.get("target", default_target)
    if not isinstance(target, str):
        raise UsageError(f'{where}: no target: add "target" or give --node, --all or --pool')
    options = {k: doc[k] for k in OPTIONAL_FIELDS if doc.get(k) is not None}
    for key in _TIME_FIELDS:
        if isinstance(options.get(key), str):
            options[key] = parse_when(options[key], f"{where}: {key}")
    expires = doc.get("expires_at")
    if isinstance(expires, str):
        expires = parse_when(expires, f"{where}: expires_at")
    runs = doc.get("runs", 1)
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise UsageError(f"{where}: 'runs' must be an integer >= 1")
    return TaskSpec(
        kernel,
        params,
        target,
        options,
        task_id=doc.get("id"),
        ttl_s=float(doc.get("ttl_s", ttl_s)),
        expires_at=expires,
        runs=runs,
        where=where,
    )


def load_batch(path: Path, default_target: str | None, ttl_s: float) -> list[TaskSpec]:
    """Every task of a batch file (JSON lines or a JSON array); errors name the line."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read batch file {path}: {exc.strerror}") from None
    base = Path.cwd() if str(path) == "-" else path.parent
    stripped = text.lstrip()
    items: list[tuple[str, object]] = []
    if stripped.startswith("["):
        try:
            docs = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not valid JSON: {exc}") from None
        items = [(f"{path} item {i}", doc) for i, doc in enumerate(docs, 1)]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                items.append((f"{path} line {number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path} line {number} is not valid JSON: {exc}") from None
    if not items:
        raise UsageError(f"{path} holds no tasks")
    return [_batch_item(doc, where, base, default_target, ttl_s) for where, doc in items]
