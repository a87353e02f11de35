"""Progress on stderr: items done / total, elapsed time and ETA.

A stage prints nothing during its first second, so quick stages stay quiet;
after that it updates in place on a terminal and prints a line at most every
few seconds otherwise (CI logs).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    def __init__(self, stage: str, total: int, unit: str = "cases", stream: TextIO | None = None, quiet: bool = False):
        self.stage, self.total, self.unit = stage, total, unit
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.done = 0
        self.started = time.monotonic()
        self.last_print = 0.0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        return (
            f"[{self.stage}] {self.done}/{self.total} {self.unit} · {_clock(elapsed)} elapsed · ETA {_clock(eta)}"
        )

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.quiet or now - self.started < 1.0:
            return
        interval = 0.2 if self.tty else 5.0
        if now - self.last_print >= interval or self.done >= self.total:
            self.last_print = now
            self.stream.write(("\r" + self.line()) if self.tty else self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.quiet or time.monotonic() - self.started < 1.0:
            return
        if self.tty:
            self.stream.write("\r" + self.line() + "\n")
        elif self.done < self.total or self.last_print == 0.0:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


def note(message: str, stream: TextIO | None = None, quiet: bool = False) -> None:
    if not quiet:
        print(message, file=stream or sys.stderr, flush=True)
