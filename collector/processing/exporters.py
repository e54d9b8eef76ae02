"""What the batcher hands to exporters, and how several exporters share one batch.

An exporter makes a :class:`WriteBatch` durable and then calls
``batch.on_done(None)`` (or ``on_done(error)``) from any thread. The
requests in the batch are acknowledged to their clients only after that::

    exporter.start()
    exporter.recent_digests(window_seconds, limit)   # for the re-sent-request window
    exporter.submit(batch)
    exporter.close(timeout)

With more than one exporter (a gateway that keeps a local DuckDB copy and
forwards upstream), :class:`FanOut` gives each the batch and acknowledges
once every one of them holds it. When one fails after another succeeded,
the clients get a retryable error and re-send; FanOut remembers which
exporter holds which request (:class:`PartlyHeld`) and gives each re-sent
request only to the exporters that do not hold it yet
(:meth:`WriteBatch.only` cuts those requests' rows out of the batch), so the
local copy never holds a request twice and nothing is acknowledged before
every exporter holds it, across restarts too (``recent_digests`` counts a
digest as held only when every exporter holds it).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from collector.decoding.arrow_batches import TableBuilder


@dataclass(frozen=True)
class BatchedRequest:
    """One client request inside a batch: its digest, receipt and protobuf body."""

    digest: str
    signal: str
    items: int
    received_at_ns: int
    gateway_id: str
    payload: bytes


class RowSubset:
    """Some requests' rows of a table being built; stands in for the :class:`TableBuilder` in a batch.

    ``ranges`` are ``(first row, rows)`` in the builder's order. Like the
    builder it builds once, so only one exporter may build a batch's tables
    (the DuckDB exporter; the forwarder sends the requests' own payloads).
    """

    def __init__(self, builder: TableBuilder, ranges: list[tuple[int, int]]) -> None:
        self.table = builder.table
        self.rows = sum(rows for _, rows in ranges)
        self._builder = builder
        self._ranges = ranges

    def build(self) -> pa.Table:
        whole = self._builder.build()
        return pa.concat_tables([whole.slice(start, rows) for start, rows in self._ranges]).combine_chunks()


@dataclass
class WriteBatch:
    """Rows for one transaction and the callback that acknowledges their requests.

    ``request_rows`` gives each request's rows per table, in the order the
    tables hold them; :meth:`only` needs it to cut some requests out.
    """

    tables: dict[str, TableBuilder | RowSubset]
    requests: list[BatchedRequest]
    on_done: Callable[[BaseException | None], None]
    rows: int = 0
    request_rows: list[dict[str, int]] = field(default_factory=list)

    def only(self, keep: Sequence[int], on_done: Callable[[BaseException | None], None]) -> WriteBatch:
        """A batch of the requests at the indexes ``keep`` (ascending) and their rows, acknowledged by ``on_done``."""
        if len(keep) == len(self.requests):
            return WriteBatch(self.tables, self.requests, on_done, self.rows, self.request_rows)
        if len(self.request_rows) != len(self.requests):
            raise ValueError("this batch does not say which rows belong to which request")
        wanted = set(keep)
        ranges: dict[str, list[tuple[int, int]]] = {}
        next_row: dict[str, int] = {}
        for index, table_rows in enumerate(self.request_rows):
            for table, rows in table_rows.items():
                start = next_row.get(table, 0)
                next_row[table] = start + rows
                if index in wanted and rows:
                    ranges.setdefault(table, []).append((start, rows))
        tables: dict[str, TableBuilder | RowSubset] = {
            table: RowSubset(self.tables[table], table_ranges) for table, table_ranges in ranges.items()
        }
        return WriteBatch(tables, [self.requests[i] for i in keep], on_done,
                          sum(t.rows for t in tables.values()), [self.request_rows[i] for i in keep])


class Exporter(Protocol):
    healthy: bool

    def start(self) -> None: ...

    def recent_digests(self, window_seconds: float, limit: int) -> list[tuple[str, int]]: ...

    def submit(self, batch: WriteBatch) -> None: ...

    def close(self, timeout: float = 30.0) -> None: ...


class PartlyHeld:
    """Digests of requests that some exporters hold, with the indexes of those exporters (thread-safe).

    A request lands here when its batch failed in one exporter after
    another made it durable, and leaves when a batch holding it succeeds in
    all (then the pipeline's digest window knows it as committed). Entries
    expire like the digest window's: after ``window_seconds``, oldest first
    past ``max_entries``::

        held = PartlyHeld(window_seconds=86400, max_entries=2_000_000)
        held.holders("3f2a...")                    # frozenset() when no exporter is known to hold it
        held.record({"3f2a...": frozenset({0})})   # exporter 0 holds it
        held.discard(["3f2a..."])                  # every exporter holds it now
    """

    def __init__(self, window_seconds: float, max_entries: int) -> None:
        self.window_ns = int(window_seconds * 1e9)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._held: dict[str, tuple[frozenset[int], int]] = {}  # digest -> (holders, time ns); oldest first

    def __len__(self) -> int:
        return len(self._held)

    def holders(self, digest: str) -> frozenset[int]:
        with self._lock:
            entry = self._held.get(digest)
        return entry[0] if entry is not None else frozenset()

    def record(self, holders: dict[str, frozenset[int]], at_ns: int | None = None) -> None:
        now = time.time_ns()
        with self._lock:
            for digest, indexes in holders.items():
                self._held.pop(digest, None)  # re-inserted as the newest
                self._held[digest] = (indexes, at_ns or now)
            self._evict(now)

    def discard(self, digests: Sequence[str]) -> None:
        with self._lock:
            for digest in digests:
                self._held.pop(digest, None)

    def _evict(self, now_ns: int) -> None:
        held = self._held
        while held:
            oldest = next(iter(held))
            if len(held) > self.max_entries or held[oldest][1] < now_ns - self.window_ns:
                del held[oldest]
            else:
                break


class FanOut:
    """Several exporters behind one; a batch is done when all of them hold every request in it.

    ``window_seconds`` and ``max_entries`` bound the memory of which
    exporter holds which request after a partial failure (the pipeline's
    dedup window and its size are the natural values).
    """

    def __init__(self, exporters: Sequence[Exporter], window_seconds: float = 86400.0,
                 max_entries: int = 2_000_000) -> None:
        if not exporters:
            raise ValueError("FanOut needs at least one exporter")
        self.exporters = list(exporters)
        self.partly_held = PartlyHeld(window_seconds, max_entries)

    @property
    def healthy(self) -> bool:
        return all(e.healthy for e in self.exporters)

    def start(self) -> None:
        started = []
        try:
            for exporter in self.exporters:
                exporter.start()
                started.append(exporter)
        except BaseException:
            for exporter in started:
                exporter.close()
            raise

    def recent_digests(self, window_seconds: float, limit: int) -> list[tuple[str, int]]:
        """Digests every exporter holds (a re-send of these is a duplicate); the ones only some hold are
        remembered in :attr:`partly_held`, so their re-send goes to the others."""
        holders: dict[str, set[int]] = {}
        newest: dict[str, int] = {}
        for index, exporter in enumerate(self.exporters):
            for digest, written_ns in exporter.recent_digests(window_seconds, limit):
                holders.setdefault(digest, set()).add(index)
                newest[digest] = max(written_ns, newest.get(digest, 0))
        everywhere = len(self.exporters)
        partial = sorted((newest[d], d) for d, indexes in holders.items() if len(indexes) < everywhere)
        for written_ns, digest in partial:
            self.partly_held.record({digest: frozenset(holders[digest])}, at_ns=written_ns)
        held = [(d, newest[d]) for d, indexes in holders.items() if len(indexes) == everywhere]
        return sorted(held, key=lambda item: item[1])[-limit:] if limit else []

    def submit(self, batch: WriteBatch) -> None:
        if len(self.exporters) == 1:
            self.exporters[0].submit(batch)
            return
        before = [self.partly_held.holders(r.digest) for r in batch.requests]
        wanted = [[i for i, held in enumerate(before) if index not in held] for index in range(len(self.exporters))]
        lock = threading.Lock()
        state: dict = {"left": len(self.exporters), "error": None, "succeeded": set()}

        def one_done(index: int, error: BaseException | None) -> None:
            with lock:
                state["left"] -= 1
                state["error"] = state["error"] or error
                if error is None:
                    state["succeeded"].add(index)
                finished = state["left"] == 0
            if finished:
                self._settle(batch, before, wanted, state["succeeded"], state["error"])

        for index, exporter in enumerate(self.exporters):
            done = functools.partial(one_done, index)
            if not wanted[index]:  # it holds every request of the batch already
                done(None)
            else:
                exporter.submit(batch.only(wanted[index], done))

    def _settle(self, batch: WriteBatch, before: list[frozenset[int]], wanted: list[list[int]],
                succeeded: set[int], error: BaseException | None) -> None:
        """Remember who holds what when the batch failed somewhere, then acknowledge (or fail) the batch."""
        digests = [r.digest for r in batch.requests]
        if error is None:
            self.partly_held.discard(digests)
        else:
            # Also the requests every exporter now holds: their clients get the error and re-send,
            # and the re-send must go nowhere.
            now_held = [set(held) for held in before]
            for index in succeeded:
                for i in wanted[index]:
                    now_held[i].add(index)
            self.partly_held.record({d: frozenset(held) for d, held in zip(digests, now_held) if held})
        batch.on_done(error)

    def close(self, timeout: float = 30.0) -> None:
        for exporter in self.exporters:
            exporter.close(timeout)
