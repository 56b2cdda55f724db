"""Is this agent able to do its job? The checks behind `/health` and `edge_agent_healthy`.

Healthy means all three: connected to the broker (tasks can arrive, results can leave), the state
store writable (nothing can be accepted otherwise), and every worker process alive (a worker being
replaced after a timeout or a crash counts as down until its successor has started). Each check
reads a flag or makes one cheap system call: no lock of the task path is taken.

The body also says which version runs and whether its online presence was acknowledged by the
broker in the current connection (`presence.online`): what `edge-agent install` waits for after
starting a new version (install/health.py). It does not count towards `healthy`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from agent import __version__

from ..exec.pool import WorkerPool
from ..link.mqtt import MqttLink
from ..publish.presence import PresenceRecords
from ..store import Store


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Health:
    def __init__(
        self, node: str, link: MqttLink, store: Store, pool: WorkerPool, presence: PresenceRecords
    ) -> None:
        self.node = node
        self._link = link
        self._store = store
        self._pool = pool
        self._presence = presence

    def broker(self) -> Check:
        s = self._link.settings
        if self._link.connected:
            return Check("broker", True, f"connected to {s.host}:{s.port}")
        return Check("broker", False, f"not connected to {s.host}:{s.port} (reconnecting)")

    def store(self) -> Check:
        failed = self._store.failed
        if failed is not None:
            return Check("store", False, f"the store failed and accepts nothing: {failed}")
        state_dir = self._store.state_dir
        if not os.access(state_dir, os.W_OK):
            return Check("store", False, f"{state_dir} is not writable")
        return Check("store", True, f"{state_dir} writable")

    def workers(self) -> Check:
        total = len(self._pool.workers)
        down = [str(w.index) for w in self._pool.workers if not w.alive]
        if down:
            return Check(
                "workers", False, f"{total - len(down)} of {total} alive; down: worker {', '.join(down)}"
            )
        return Check("workers", True, f"{total} of {total} alive")

    def checks(self) -> list[Check]:
        return [self.broker(), self.store(), self.workers()]

    def ok(self) -> bool:
        return all(check.ok for check in self.checks())

    def online(self) -> bool:
        """Connected, and the broker acknowledged this connection's online presence: what
        `edge-agent install` waits for, and when the agent tells systemd READY=1."""
        return self._link.connected and self._presence.announced == self._presence.session

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the JSON body of /health)."""
        checks = self.checks()
        healthy = all(check.ok for check in checks)
        session = self._presence.session
        return healthy, {
            "status": "ok" if healthy else "unhealthy",
            "node": self.node,
            "version": __version__,
            "failed": [check.name for check in checks if not check.ok],
            "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in checks},
            "presence": {
                "session": session,
                "online": self.online(),
            },
        }
