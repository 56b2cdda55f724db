"""The audit log: one JSON object per line for every security event, rotated by size.

What goes in: messages that could not be authenticated (PROTOCOL 5, with the payload's sha256),
tasks rejected for a reason that matters to security (replays, id reuse, re-routing, times), trust
store reloads, starts and stops. Accepted tasks are not security events: their records are in the
history partitions. Rotation (`max_bytes` x `backups`) bounds the disk an attacker can fill.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path
from typing import Any


class AuditLog:
    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.Logger(f"agent.audit.{path}")  # not in the logging tree: never propagates
        self._logger.addHandler(self._handler)
        self.events = 0

    def record(self, event: str, **fields: Any) -> None:
        doc = {
            "at": time.time(),
            "event": event,
            **{k: _plain(v) for k, v in fields.items() if v is not None},
        }
        self._logger.warning(json.dumps(doc, separators=(",", ":")))
        self.events += 1

    def close(self) -> None:
        self._handler.close()


def _plain(value: Any) -> Any:
    return value.hex() if isinstance(value, (bytes, bytearray)) else value
