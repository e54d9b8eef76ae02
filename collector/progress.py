"""Progress of long work on a terminal or in a log, with no dependency beyond the standard library.

The collector runs on gateways that have only its own dependencies, so it
cannot use tqdm. Usage::

    progress = ProgressReporter("loading fleet-sample.otlp.zst", total=os.path.getsize(path))
    for record in records:
        ...
        progress.update(done_bytes, "12,345 spans")   # cheap: draws at most a few times a second
    progress.finish()                                 # ends the bar's line

On a terminal it redraws one bar line (``[#####.....] 48%  12,345 spans
ETA 25s``); otherwise (a pipe, a log file, systemd) it prints a plain line
every ``interval`` seconds, so a long load is visibly alive without flooding
the log. ``describe_counts`` turns a bulk load's counts into words.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

_BAR_WIDTH = 30
_TTY_REDRAW_SECONDS = 0.2


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s"


class ProgressReporter:
    """A progress bar on a terminal, periodic lines elsewhere; see the module docstring."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, *, interval: float = 5.0,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if total < 0:
            raise ValueError(f"total must not be negative, got {total}")
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = _TTY_REDRAW_SECONDS if self.tty else interval
        self._clock = clock
        self._started = clock()
        self._last_drawn = self._started
        self._drew_bar = False

    def update(self, done: int, detail: str = "") -> None:
        """Report ``done`` of ``total``; draws only when the last drawing is old enough."""
        now = self._clock()
        if now - self._last_drawn < self.interval:
            return
        self._last_drawn = now
        fraction = min(1.0, done / self.total) if self.total else 1.0
        elapsed = now - self._started
        detail = f"  {detail}" if detail else ""
        if self.tty:
            filled = int(fraction * _BAR_WIDTH)
            eta = f"  ETA {_duration(elapsed / fraction - elapsed)}" if fraction > 0.01 else ""
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {fraction:4.0%}{detail}{eta}\033[K")
            self._drew_bar = True
        else:
            self.stream.write(f"{self.label}: {fraction:.0%} after {_duration(elapsed)}{detail}\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line so that what follows starts on a fresh one."""
        if self._drew_bar:
            self.stream.write("\n")
            self.stream.flush()
            self._drew_bar = False

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def describe_counts(counts: dict[str, int]) -> str:
    """A bulk load's counts (see :func:`collector.store.bulk.ingest_records`) in words."""
    items = [_plural(counts['spans'], 'span'), _plural(counts['points'], 'metric point')]
    if counts.get("log_records"):
        items.append(_plural(counts["log_records"], "log record"))
    written = ", ".join(items[:-1]) + " and " + items[-1]
    text = f"{_plural(counts['requests'], 'request')} read; {written} written"
    notes = []
    if counts.get("duplicates"):
        notes.append(f"{_plural(counts['duplicates'], 'request')} already in the database")
    if counts.get("rejected"):
        notes.append(f"{_plural(counts['rejected'], 'item')} rejected as invalid")
    if counts.get("bad_requests"):
        notes.append(f"{_plural(counts['bad_requests'], 'request')} not decodable")
    return text + (" (" + ", ".join(notes) + ")" if notes else "")
