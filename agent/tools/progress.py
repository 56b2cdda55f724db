"""Progress of a batch on stderr: a bar redrawn in place on a terminal, plain lines otherwise.

    progress = Progress("published", total=500)
    progress.advance()        # ... per item
    progress.finish()

On a terminal the bar is redrawn at most 10 times a second; elsewhere (a log, a pipe, CI) one
line is written at each tenth of the total, so the output stays short and greppable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self._drawn = 0.0
        self._step = 0  # tenths written (plain lines)

    def advance(self, count: int = 1) -> None:
        self.done = min(self.total, self.done + count)
        if self.tty:
            now = time.monotonic()
            if now - self._drawn >= 0.1 or self.done == self.total:
                self._drawn = now
                self._draw()
        else:
            step = self.done * 10 // self.total
            if step > self._step:
                self._step = step
                self._line()

    def _rate(self) -> str:
        elapsed = time.monotonic() - self.started
        return f"{self.done / elapsed:.0f}/s" if elapsed > 0 else "-"

    def _draw(self) -> None:
        filled = WIDTH * self.done // self.total
        bar = "#" * filled + "." * (WIDTH - filled)
        self.stream.write(f"\r{self.label:<10} [{bar}] {self.done}/{self.total} {self._rate()}\x1b[K")
        self.stream.flush()

    def _line(self) -> None:
        self.stream.write(f"{self.label} {self.done}/{self.total} ({100 * self.done // self.total}%)\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line (terminal); the plain output already has its last line."""
        if self.tty:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
