"""Progress of a long simulation: a bar on a terminal, periodic lines otherwise.

A simulation advances tick by tick; :func:`progress_reporter` returns
something to call with the ticks done (or None when progress is off)::

    report = progress_reporter(total=sim.n_ticks, desc="simulate", enabled=None)
    for ... in sim.requests(report.update if report else None): ...
    if report: report.close()

``enabled``: None = a tqdm bar when stderr is a terminal and plain lines
(``simulate: 40% (230 of 576 ticks) after 12 s``) when it is not, e.g. in
a log file or CI; True = a bar even without a terminal; False = nothing.
Lines come at every 10 % of the run, at most one per ``min_interval_s``,
plus the last one, so a log gets a handful of lines, not thousands.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLines:
    """Plain progress lines for a stream that is not a terminal."""

    def __init__(self, total: int, desc: str, stream: TextIO, min_interval_s: float = 5.0) -> None:
        self.total = max(1, total)
        self.desc = desc
        self.stream = stream
        self.min_interval_s = min_interval_s
        self.done = 0
        self._started = time.monotonic()
        self._last_line = float("-inf")
        self._last_tenth = 0

    def update(self, n: int = 1) -> None:
        self.done += n
        tenth = min(10, self.done * 10 // self.total)
        now = time.monotonic()
        if tenth > self._last_tenth and (tenth == 10 or now - self._last_line >= self.min_interval_s):
            self._last_tenth = tenth
            self._last_line = now
            self._line(now)

    def close(self) -> None:
        if self._last_tenth < 10 and self.done >= self.total:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        pct = min(100, self.done * 100 // self.total)
        print(f"{self.desc}: {pct}% ({self.done} of {self.total} ticks) after {now - self._started:.0f} s",
              file=self.stream, flush=True)


def progress_reporter(total: int, desc: str, enabled: bool | None):
    """A tqdm bar, :class:`ProgressLines` or None (see the module docs)."""
    if enabled is False:
        return None
    if enabled or sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is a simulate extra: plain lines without it
            return ProgressLines(total, desc, sys.stderr)
        return tqdm(total=total, desc=desc, unit="tick", leave=False)
    return ProgressLines(total, desc, sys.stderr)
