"""Group commit on the event loop: many requests, one DuckDB transaction.

Each request adds its Arrow tables and awaits a future that resolves once the
batch holding it is committed. A batch is handed to the writer when it holds
``send_batch_size`` rows, or ``timeout`` after its first request, whichever
comes first, and as soon as the writer finishes the previous batch. While
the writer is busy a due batch keeps growing instead of queueing behind it,
so under load transactions get larger and cheaper rather than more
numerous, and the writer never idles while requests wait. With
``max_batch_bytes``, a batch also closes before the decoded size of its
requests would pass it (it is then queued behind the writer), and a request
of more than a quarter of it gets a transaction of its own: DuckDB holds a
transaction's text in memory until it commits, so a large request that
fails its commit must fail it for no other request::

    batcher = Batcher(exporter, BatchConfig(send_batch_size=65536, timeout=0.05), max_batch_bytes=64 << 20)
    await batcher.add({"span_rows": (decoded_columns, rows)}, request, decoded_bytes)   # request: BatchedRequest
    await batcher.flush_and_wait()   # at shutdown
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from collector.decoding.arrow_batches import TableBuilder
from collector.config import BatchConfig
from collector.processing.exporters import BatchedRequest, Exporter, WriteBatch


class WriteFailed(RuntimeError):
    """The batch holding this request could not be committed; the client should retry."""


@dataclass
class _Pending:
    tables: dict[str, TableBuilder] = field(default_factory=dict)
    requests: list[BatchedRequest] = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    rows: int = 0
    request_rows: list[dict[str, int]] = field(default_factory=list)  # per request: rows per table
    decoded_bytes: int = 0


class Batcher:
    """Collects requests into write batches; see the module docstring."""

    def __init__(self, exporter: Exporter, config: BatchConfig, max_in_flight: int = 1,
                 max_batch_bytes: int | None = None) -> None:
        self._exporter = exporter
        self._config = config
        self._max_in_flight = max_in_flight
        self._max_batch_bytes = max_batch_bytes
        self._pending = _Pending()
        self._timer: asyncio.TimerHandle | None = None
        self._due = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting_requests(self) -> int:
        return len(self._pending.futures)

    def add(self, tables: dict[str, tuple[dict, int]], request: BatchedRequest,
            decoded_bytes: int = 0) -> asyncio.Future:
        """Queue one request's decoded rows; the returned future resolves when they are durable."""
        loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        limit = self._max_batch_bytes
        alone = bool(limit) and decoded_bytes > limit // 4
        if self._pending.futures and (alone or (limit and self._pending.decoded_bytes + decoded_bytes > limit)):
            self._flush()  # what is pending goes first, this request starts the next batch
        pending = self._pending
        rows = 0
        table_rows: dict[str, int] = {}
        for name, (columns, count) in tables.items():
            builder = pending.tables.get(name)
            if builder is None:
                builder = pending.tables[name] = TableBuilder(name)
            builder.add(columns, count, request.received_at_ns, request.gateway_id)
            rows += count
            table_rows[name] = count
        pending.requests.append(request)
        pending.request_rows.append(table_rows)
        pending.futures.append(future)
        pending.rows += rows
        pending.decoded_bytes += decoded_bytes
        self._idle.clear()
        if pending.rows >= self._config.send_batch_size or alone or (limit and pending.decoded_bytes >= limit):
            self._flush()
        elif self._timer is None and not self._due:
            self._timer = loop.call_later(self._config.timeout, self._on_timeout)
        return future

    def _on_timeout(self) -> None:
        self._timer = None
        if self._in_flight >= self._max_in_flight:
            self._due = True  # flushed as soon as the writer is free
        else:
            self._flush()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = False
        pending, self._pending = self._pending, _Pending()
        if not pending.futures:
            self._check_idle()
            return
        loop = self._loop
        assert loop is not None
        self._in_flight += 1

        def on_done(error: BaseException | None) -> None:  # runs on the writer thread
            loop.call_soon_threadsafe(self._complete, pending.futures, error)

        self._exporter.submit(WriteBatch(pending.tables, pending.requests, on_done, pending.rows, pending.request_rows))

    def _complete(self, futures: list[asyncio.Future], error: BaseException | None) -> None:
        self._in_flight -= 1
        for future in futures:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(WriteFailed(f"could not make the batch durable: {str(error)[:300]}"))
        # The writer is free and requests are waiting: hand them over now.
        # Under load every batch is what arrived during the previous commit,
        # so the writer never idles while acknowledgements wait.
        if self._pending.futures and self._in_flight < self._max_in_flight:
            self._flush()
        self._check_idle()

    def _check_idle(self) -> None:
        if self._in_flight == 0 and not self._pending.futures:
            self._idle.set()

    async def flush_and_wait(self) -> None:
        """Hand over whatever is pending and wait until every batch is committed."""
        if self._pending.futures:
            self._flush()
        await self._idle.wait()
