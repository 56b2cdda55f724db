"""Telling systemd how a service is: READY=1, WATCHDOG=1, STOPPING=1 (sd_notify(3), Type=notify).

    service = ServiceNotifier.from_environ()   # NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID
    service.tick(online=agent.link.connected)  # from the main loop, every `service.tick_s` at most
    service.stopping()                         # a clean stop (SIGTERM) begins: the drain

The protocol is one datagram per message on the Unix socket that $NOTIFY_SOCKET names: a path,
or `@name` for Linux's abstract namespace; no library is needed for it. READY=1 goes once, the
first time the program is online (the agent: connected to its broker with its workers started;
the broker: listening), so `systemctl start` and an upgrade's wait mean "online", not "launched".
WATCHDOG=1 goes every half of $WATCHDOG_USEC (systemd's WatchdogSec=) from the main loop: if that
loop stops turning, systemd kills and restarts the program. Without NOTIFY_SOCKET (not under
systemd) every call does nothing; a send that fails is logged once and the program goes on: the
notifications serve the supervisor, never the work.

Thread rules: `tick` and `stopping` from the main thread; `send` is one `sendto` and may be called
from any thread.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

MAX_TICK_S = 1.0


def notify_address(value: str) -> str | bytes:
    """$NOTIFY_SOCKET as a socket address: `@name` is abstract (a leading NUL byte)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of WATCHDOG_USEC in seconds, when the watchdog is on and meant for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (owner and owner != str(pid)):
        return None
    return int(usec) / 2e6


class ServiceNotifier:
    def __init__(
        self,
        address: str | bytes | None,
        watchdog_s: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self.watchdog_s = watchdog_s
        self._clock = clock
        self._ready = False
        self._next_ping = 0.0
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ServiceNotifier:
        environ = os.environ if environ is None else environ
        value = environ.get("NOTIFY_SOCKET", "")
        address = notify_address(value) if value else None
        return cls(address, watchdog_interval(environ, os.getpid()) if address is not None else None)

    @property
    def tick_s(self) -> float:
        """How often the main loop must call `tick` for the watchdog to be fed in time."""
        return min(MAX_TICK_S, self.watchdog_s) if self.watchdog_s else MAX_TICK_S

    @property
    def ready(self) -> bool:
        return self._ready

    def send(self, *fields: str) -> bool:
        """One datagram of `KEY=VALUE` lines; False when not under systemd or the send failed."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:  # once: a supervisor gone away would otherwise fill the log
                log.warning("cannot notify systemd through %r: %s", self.address, exc)
                self._failed = True
            return False
        return True

    def tick(self, *, online: bool, status: str = "") -> None:
        """READY=1 the first time the agent is online; WATCHDOG=1 when one is due."""
        if not self._ready and online:
            self._ready = self.send("READY=1", f"STATUS={status or 'online'}") or self.address is None
        now = self._clock()
        if self.watchdog_s and now >= self._next_ping:
            self.send("WATCHDOG=1")
            self._next_ping = now + self.watchdog_s

    def stopping(self, status: str = "draining") -> None:
        self.send("STOPPING=1", f"STATUS={status}")
