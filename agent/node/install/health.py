"""Waiting for a started agent to be online: its /health says this version, healthy, and its
birth acknowledged by the broker (status/health.py's `presence.online`).

    problem = wait_online("http://127.0.0.1:9464/health", "0.1.0", timeout_s=120,
                          failure=service.failure, pending=service.pending)
    # None: online; else what was last seen (or why the process stopped), for the message

/health is read rather than the presence topic because an agent's own broker login may not read
its presence (PROTOCOL 1); the agent learns from the broker's PUBACK that its birth is retained.
Polls every 0.25 s; returns early when `failure()` says the process has stopped. Online also
needs `pending()` to be None: under systemd, the unit `active` (its READY=1 follows /health's
online by up to a second), so that `systemctl status` right after the installer agrees with it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

POLL_S = 0.25


def read_health(url: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of /health; (0, {"error": ...}) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 503: unhealthy, with the same JSON body
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError) as exc:
        return 0, {"error": str(getattr(exc, "reason", exc))}


def describe(status: int, body: dict[str, Any], version: str) -> str | None:
    """None when the agent is the one wanted and online, else what is missing."""
    if status == 0:
        return f"nothing answers at /health ({body.get('error')})"
    if body.get("version") != version:
        return f"/health reports version {body.get('version')!r}, not {version!r} (the old agent still runs?)"
    if status != 200:
        checks = body.get("checks", {})
        failed = [f"{name}: {checks.get(name, {}).get('detail', '?')}" for name in body.get("failed", [])]
        return f"/health is {status}: {'; '.join(failed) or body}"
    if not body.get("presence", {}).get("online"):
        return "connected, but the broker has not acknowledged its online presence yet"
    return None


def _nothing_pending() -> str | None:
    return None


def wait_online(
    url: str,
    version: str,
    timeout_s: float,
    failure: Callable[[], str | None],
    pending: Callable[[], str | None] = _nothing_pending,
) -> str | None:
    deadline = time.monotonic() + timeout_s
    problem: str | None = "not checked yet"
    while True:
        stopped = failure()
        if stopped is not None:
            return stopped
        problem = describe(*read_health(url), version) or pending()
        if problem is None or time.monotonic() >= deadline:
            return problem
        time.sleep(POLL_S)
