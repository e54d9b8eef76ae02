"""What may enter the process: the memory budget and the re-sent-request window.

``MemoryBudget`` is the one budget for every byte queued in the process
(decoded rows waiting for their commit). ``DigestWindow`` remembers the
digests of committed requests for a while: OTLP clients re-send when they are
unsure whether a request arrived, and a re-sent request must not be counted
twice::

    budget = MemoryBudget(256 << 20)
    if size > budget.request_cap:
        ...  # answer 413: one request may not take more than a share of the budget
    if not budget.try_acquire(size):   # size: the request's decoded size
        ...  # answer 503 + Retry-After
    window = DigestWindow(window_seconds=86400, max_entries=2_000_000)
    state = window.lookup(digest)   # "new", "pending" or "committed"
"""

from __future__ import annotations

import asyncio
import time


class MemoryBudget:
    """Bytes queued in the process against a fixed limit (event-loop thread only)."""

    #: share of the budget one request's decoded rows may take (``request_cap``)
    REQUEST_SHARE = 0.25
    #: ``request_cap`` is never below this, so a small budget still takes ordinary requests
    MIN_REQUEST_CAP = 8 << 20

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError("limit_bytes must be positive")
        self.limit = limit_bytes
        self.used = 0
        # A request over the cap is refused for good (not retried): the
        # budget could never hold it next to the requests already queued.
        self.request_cap = max(int(limit_bytes * self.REQUEST_SHARE), self.MIN_REQUEST_CAP)

    def try_acquire(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` unless that would pass the limit.

        A request larger than the whole budget is still let in when nothing
        else is queued, so one big request cannot be refused forever.
        """
        if self.used and self.used + nbytes > self.limit:
            return False
        self.used += nbytes
        return True

    def release(self, nbytes: int) -> None:
        self.used = max(0, self.used - nbytes)


class DigestWindow:
    """Digests of recent requests: committed ones with their time, pending ones with a future."""

    def __init__(self, window_seconds: float, max_entries: int) -> None:
        self.window_ns = int(window_seconds * 1e9)
        self.max_entries = max_entries
        self._committed: dict[str, int] = {}  # digest -> commit time (ns); insertion order = commit order
        self._pending: dict[str, asyncio.Future] = {}

    def __len__(self) -> int:
        return len(self._committed)

    def load(self, rows: list[tuple[str, int]]) -> None:
        """Seed from the database at start-up: (digest, written_at ns), oldest first."""
        for digest, written_ns in rows:
            self._committed[digest] = written_ns
        self._evict(time.time_ns())

    def lookup(self, digest: str) -> str | asyncio.Future:
        """``"committed"``, the pending request's future, or ``"new"``."""
        if digest in self._committed:
            return "committed"
        future = self._pending.get(digest)
        return future if future is not None else "new"

    def reserve(self, digest: str, future: asyncio.Future) -> None:
        self._pending[digest] = future

    def commit(self, digest: str) -> None:
        self._pending.pop(digest, None)
        if self.max_entries:
            now = time.time_ns()
            self._committed[digest] = now
            self._evict(now)

    def forget(self, digest: str) -> None:
        """The request failed: a re-send must be written."""
        self._pending.pop(digest, None)

    def _evict(self, now_ns: int) -> None:
        committed = self._committed
        while committed:
            oldest_digest = next(iter(committed))
            if len(committed) > self.max_entries or committed[oldest_digest] < now_ns - self.window_ns:
                del committed[oldest_digest]
            else:
                break
