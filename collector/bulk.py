"""Offline ingest of a request log through the collector's own write path.

Backfills and the shipped sample data are request logs (see
:mod:`collector.request_log`): sequences of OTLP requests with the time the
gateway received them. They enter the database through the same steps as
live traffic — request digest and re-send check, decode and validate
(:func:`collector.pipeline.decode_request`), Arrow batches
(:class:`collector.arrow_batches.TableBuilder`) and the DuckDB exporter's
transaction, which records every request's digest in ``ingest_log`` — only
without sockets, the event loop and per-request acknowledgements::

    counts = ingest_request_log("fleetwatch.duckdb", "sample_data/fleet-sample.otlp.zst")
    counts["spans"], counts["points"], counts["log_records"], counts["rejected"], counts["duplicates"]

Like every offline tool it opens the file only when no server owns it and
raises :class:`collector.duckdb_exporter.DatabaseLockedError` when one does.
Ingesting the same log twice writes nothing the second time. A log that
turns out damaged part-way raises ValueError after committing the intact
records before the damage (each record has its own checksum); running it
again after a repair loads only what is missing.
"""

from __future__ import annotations

import copy
import os
import threading
from collections import Counter
from collections.abc import Iterable

from collector.admission import DigestWindow
from collector.arrow_batches import TableBuilder
from collector.config import CollectorConfig, default_config
from collector.duckdb_exporter import DuckDBExporter
from collector.exporters import BatchedRequest, WriteBatch
from collector.pipeline import decode_request, request_digest
from collector.request_log import RequestRecord, read_request_log
from collector.selfmetrics import CollectorMetrics

_ITEM_NAMES = {"traces": "spans", "metrics": "points", "logs": "log_records"}
_COUNT_KEYS = ("requests", "spans", "points", "log_records", "rejected", "duplicates", "bad_requests")


class _BatchWriter:
    """Hands batches to the exporter's writer thread, at most two in flight, and waits for them."""

    def __init__(self, exporter: DuckDBExporter, window: DigestWindow) -> None:
        self.exporter = exporter
        self.window = window
        self._slots = threading.Semaphore(2)
        self._error: BaseException | None = None

    def write(self, tables: dict[str, TableBuilder], requests: list[BatchedRequest]) -> None:
        self._slots.acquire()
        self.check()

        def done(error: BaseException | None) -> None:
            if error is None:
                for request in requests:
                    self.window.commit(request.digest)
            else:
                self._error = error
            self._slots.release()

        self.exporter.submit(WriteBatch(tables, requests, done, sum(b.rows for b in tables.values())))

    def wait(self) -> None:
        for _ in range(2):
            self._slots.acquire()
        for _ in range(2):
            self._slots.release()
        self.check()

    def check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing a batch failed: {self._error}") from self._error


def ingest_records(records: Iterable[RequestRecord], config: CollectorConfig) -> dict[str, int]:
    """Write ``records`` into ``config.exporters.duckdb.path``; returns counts by kind."""
    duck = config.exporters.duckdb
    exporter = DuckDBExporter(duck, CollectorMetrics())
    exporter.start()
    counts: Counter[str] = Counter()
    try:
        window = DigestWindow(duck.dedup_window, duck.dedup_max_entries)
        window.load(exporter.recent_digests(duck.dedup_window, duck.dedup_max_entries))
        writer = _BatchWriter(exporter, window)
        batch_size = config.processors.batch.send_batch_size
        tables: dict[str, TableBuilder] = {}
        requests: list[BatchedRequest] = []
        submitted: set[str] = set()  # this run's digests, committed or still in flight
        rows = 0
        gateway_id = config.service.gateway_id
        for record in records:
            counts["requests"] += 1
            digest = request_digest(record.signal, record.payload)
            if digest in submitted or window.lookup(digest) != "new":
                counts["duplicates"] += 1
                continue
            try:
                decoded = decode_request(record.signal, record.payload)
            except ValueError:
                counts["bad_requests"] += 1
                continue
            counts[_ITEM_NAMES[record.signal]] += decoded.count
            counts["rejected"] += decoded.rejected
            if not decoded.count:
                continue
            for name, (columns, n) in decoded.tables.items():
                builder = tables.get(name)
                if builder is None:
                    builder = tables[name] = TableBuilder(name)
                builder.add(columns, n, record.received_at_unix_nano, gateway_id)
                rows += n
            requests.append(BatchedRequest(digest, record.signal, decoded.count, record.received_at_unix_nano,
                                           gateway_id, b""))
            submitted.add(digest)
            if rows >= batch_size:
                writer.write(tables, requests)
                tables, requests, rows = {}, [], 0
        if requests:
            writer.write(tables, requests)
        writer.wait()
    finally:
        exporter.close()
    return {key: counts[key] for key in _COUNT_KEYS}


def ingest_request_log(db_path: str | os.PathLike[str], log_path: str | os.PathLike[str],
                       config: CollectorConfig | None = None) -> dict[str, int]:
    """Ingest every record of the request log at ``log_path`` into the DuckDB file ``db_path``."""
    config = copy.deepcopy(config) if config is not None else default_config()
    config.exporters.duckdb.path = os.fspath(db_path)
    config.validate()
    return ingest_records(read_request_log(log_path), config)
