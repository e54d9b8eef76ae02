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
once every one of them holds it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from collector.arrow_batches import TableBuilder


@dataclass(frozen=True)
class BatchedRequest:
    """One client request inside a batch: its digest, receipt and protobuf body."""

    digest: str
    signal: str
    items: int
    received_at_ns: int
    gateway_id: str
    payload: bytes


@dataclass
class WriteBatch:
    """Rows for one transaction and the callback that acknowledges their requests."""

    tables: dict[str, TableBuilder]
    requests: list[BatchedRequest]
    on_done: Callable[[BaseException | None], None]
    rows: int = 0


class Exporter(Protocol):
    healthy: bool

    def start(self) -> None: ...

    def recent_digests(self, window_seconds: float, limit: int) -> list[tuple[str, int]]: ...

    def submit(self, batch: WriteBatch) -> None: ...

    def close(self, timeout: float = 30.0) -> None: ...


class FanOut:
    """Several exporters behind one; a batch is done when all of them are done."""

    def __init__(self, exporters: Sequence[Exporter]) -> None:
        if not exporters:
            raise ValueError("FanOut needs at least one exporter")
        self.exporters = list(exporters)

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
        merged: dict[str, int] = {}
        for exporter in self.exporters:
            for digest, written_ns in exporter.recent_digests(window_seconds, limit):
                merged[digest] = max(written_ns, merged.get(digest, 0))
        return sorted(merged.items(), key=lambda item: item[1])[-limit:] if limit else []

    def submit(self, batch: WriteBatch) -> None:
        if len(self.exporters) == 1:
            self.exporters[0].submit(batch)
            return
        lock = threading.Lock()
        state: dict = {"left": len(self.exporters), "error": None}

        def one_done(error: BaseException | None) -> None:
            with lock:
                state["left"] -= 1
                state["error"] = state["error"] or error
                finished = state["left"] == 0
            if finished:
                batch.on_done(state["error"])

        for exporter in self.exporters:
            exporter.submit(WriteBatch(batch.tables, batch.requests, one_done, batch.rows))

    def close(self, timeout: float = 30.0) -> None:
        for exporter in self.exporters:
            exporter.close(timeout)
