"""A token bucket: at most `rate` events a second on average, bursts up to `burst`.

Used by the agent (rejects reports) and the gateway (requests per API client). Thread-safe.
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self.refused = 0

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self.refused += 1
            return False

    def retry_after(self) -> float:
        """Seconds until the next event would be allowed (0 when one would be now)."""
        with self._lock:
            now = time.monotonic()
            tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
