"""What the agent says about itself: presence (birth, Last Will, clean death) and heartbeats (PROTOCOL 7).

The presence `session` increases at every connect and is stored before the CONNECT goes out, so
the Will of a connection and the birth that follows it carry the same number, and a restart never
reuses one: a consumer ignores a death whose session is older than the newest birth.

`PresenceRecords.announced` is the session whose birth the broker acknowledged (PUBACK): /health
reports it, so that an installer can see the agent online without reading the presence topic,
which an agent's own broker login may not (PROTOCOL 1). Thread rules: `will` and `birth_sent` on the
network thread (before CONNECT, in on_connect), `on_pubacks` there too; `announced` from any thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import psutil

from agent import __version__
from agent.protocol import Heartbeat, Presence, Signer, Topics, packb, seal

from ..link.mqtt import Will


class SessionCounter(Protocol):
    def next_session(self) -> int:
        """The next presence session number, durably stored before it is returned."""
        ...


@dataclass(frozen=True)
class Counts:
    """The heartbeat's view of the agent's work."""

    state: str = "running"  # or "draining"
    queued: int = 0
    running: int = 0
    completed_total: int = 0
    abandoned_total: int = 0
    rejected_total: int = 0
    outbox: int = 0


def signed(body: dict[str, object], signer: Signer) -> bytes:
    """An envelope of `body` signed with the agent's key (PROTOCOL 3)."""
    return seal(packb(body), signer)


class PresenceRecords:
    """Birth, Will and death records of one agent process."""

    def __init__(
        self, node: str, topics: Topics, signer: Signer, sessions: SessionCounter, kernels: list[str]
    ) -> None:
        self.node = node
        self.topic = topics.presence(node)
        self._signer = signer
        self._sessions = sessions
        self._kernels = kernels
        self.session = 0
        self._birth: tuple[int, int] | None = None  # (session, mid) of the birth not yet acknowledged
        self.announced = 0  # the session whose birth the broker acknowledged (0: none yet)

    def _record(self, state: str) -> bytes:
        body = Presence(self.node, state, self.session, time.time(), __version__, list(self._kernels))
        return signed(body.to_body(), self._signer)

    def will(self) -> Will:
        """Called before each CONNECT: a new session, and the death record the broker keeps."""
        self.session = self._sessions.next_session()
        return Will(self.topic, self._record("offline"))

    def birth(self) -> bytes:
        return self._record("online")

    def birth_sent(self, mid: int) -> None:
        """The birth of the current session went out as message `mid` (QoS 1)."""
        self._birth = (self.session, mid)

    def on_pubacks(self, mids: list[int]) -> None:
        birth = self._birth
        if birth is not None and birth[1] in mids:
            self.announced, self._birth = birth[0], None

    def death(self) -> bytes:
        return self._record("offline")


class Heartbeats:
    """Signed heartbeat bodies: `seq` is monotonic per process."""

    def __init__(
        self, node: str, topics: Topics, signer: Signer, backend: str, counts: Callable[[], Counts]
    ) -> None:
        self.node = node
        self.topic = topics.heartbeat(node)
        self._signer = signer
        self._backend = backend
        self._counts = counts
        self._seq = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call starts the measurement

    def payload(self) -> bytes:
        with self._lock:
            self._seq += 1
            seq = self._seq
        counts = self._counts()
        body = Heartbeat(
            node=self.node,
            seq=seq,
            at=time.time(),
            uptime_s=time.monotonic() - self._started,
            state=counts.state,
            queued=counts.queued,
            running=counts.running,
            completed_total=counts.completed_total,
            abandoned_total=counts.abandoned_total,
            rejected_total=counts.rejected_total,
            outbox=counts.outbox,
            rss_bytes=int(self._process.memory_info().rss),
            cpu_percent=float(self._process.cpu_percent(None)),
            load1=float(os.getloadavg()[0]),
            backend=self._backend,
            version=__version__,
        )
        return signed(body.to_body(), self._signer)
