"""A progress bar with rate and ETA for long work (corpus building, training).

On a terminal it redraws one line of stderr; elsewhere (CI logs, `nohup`) it prints a plain
line every `log_every_s` seconds, so a log still shows how far the work got and how fast.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, label: str, total: int | None, unit: str = "", *, start: int = 0,
                 stream: TextIO | None = None, log_every_s: float = 30.0):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.log_every_s = log_every_s
        self.start_count = self.count = start
        self.t0 = self.last_draw = time.monotonic()
        self.extra = ""

    def rate(self) -> float:
        elapsed = time.monotonic() - self.t0
        return (self.count - self.start_count) / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return (self.total - self.count) / rate

    def line(self) -> str:
        done = f"{self.count}/{self.total}" if self.total is not None else f"{self.count}"
        pct = f" {100 * self.count / self.total:5.1f}%" if self.total else ""
        eta = self.eta_s()
        eta_text = f"  ETA {clock(eta)}" if eta is not None else ""
        extra = f"  {self.extra}" if self.extra else ""
        return f"{self.label}: {done} {self.unit}{pct}  {self.rate():.2f} {self.unit}/s{eta_text}{extra}"

    def update(self, n: int = 1, extra: str | None = None) -> None:
        self.count += n
        if extra is not None:
            self.extra = extra
        now = time.monotonic()
        if self.tty and now - self.last_draw >= 0.1:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
            self.last_draw = now
        elif not self.tty and now - self.last_draw >= self.log_every_s:
            print(self.line(), file=self.stream, flush=True)
            self.last_draw = now

    def write(self, text: str) -> None:
        """Print a permanent line (a log record) without tearing the bar."""
        if self.tty:
            self.stream.write("\r\x1b[2K")
        print(text, file=self.stream, flush=True)
        if self.tty:
            self.stream.write(self.line())
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
        print(self.line() + f"  done in {clock(time.monotonic() - self.t0)}", file=self.stream, flush=True)
