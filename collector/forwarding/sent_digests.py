"""Digests of device requests a gateway has already delivered upstream.

After a restart a device may re-send a request whose data the gateway
already forwarded (the device never saw the answer). The queue no longer
holds it, so the gateway keeps this journal to recognise the re-send::

    journal = SentDigestJournal("/var/lib/fleetwatch/queue.sent-digests")
    journal.open()
    journal.add(["3f2a...", "9bc1..."])       # appended and fsync'ed
    journal.recent(window_seconds=86400)      # [(digest, written_ns), ...]

One line per digest (``<hex digest> <unix ns>``). The file is rewritten
without expired lines when it grows past ``max_lines``; a damaged line is
skipped.
"""

from __future__ import annotations

import os
import time


class SentDigestJournal:
    def __init__(self, path: str, max_lines: int = 200_000, window_seconds: float = 86400.0) -> None:
        self.path = path
        self.max_lines = max_lines
        self.window_ns = int(window_seconds * 1e9)
        self._fd: int | None = None
        self._lines = 0

    def open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._lines = len(self._read())

    def _read(self) -> list[tuple[str, int]]:
        entries = []
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2 and parts[1].isdigit():
                        entries.append((parts[0].decode("ascii", "replace"), int(parts[1])))
        except FileNotFoundError:
            pass
        return entries

    def add(self, digests: list[str]) -> None:
        if not digests or self._fd is None:
            return
        now = time.time_ns()
        os.write(self._fd, "".join(f"{d} {now}\n" for d in digests).encode())
        os.fsync(self._fd)
        self._lines += len(digests)
        if self._lines > self.max_lines:
            self._compact(now)

    def recent(self, window_seconds: float) -> list[tuple[str, int]]:
        cutoff = time.time_ns() - int(window_seconds * 1e9)
        return [(d, t) for d, t in self._read() if t >= cutoff]

    def _compact(self, now: int) -> None:
        keep = [(d, t) for d, t in self._read() if t >= now - self.window_ns][-self.max_lines // 2:]
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write("".join(f"{d} {t}\n" for d, t in keep).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._lines = len(keep)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
