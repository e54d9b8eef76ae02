"""Offline ingest of a request log through the collector's own write path.

Backfills and the shipped sample data are request logs (see
:mod:`collector.request_log`): sequences of OTLP requests with the time the
gateway received them. They enter the database through the same steps as
live traffic — request digest and re-send check, decode and validate
(:func:`collector.processing.pipeline.decode_request`), Arrow batches
(:class:`collector.decoding.arrow_batches.TableBuilder`) and the DuckDB exporter's
transaction, which records every request's digest in ``ingest_log`` — only
without sockets, the event loop and per-request acknowledgements::

    counts = ingest_request_log("fleetwatch.duckdb", "sample_data/fleet-sample.otlp.zst")
    counts["spans"], counts["points"], counts["log_records"], counts["rejected"], counts["duplicates"]

Like every offline tool it opens the file only when no server owns it and
raises :class:`collector.store.files.DatabaseLockedError` when one does.
A file that is not a request log is refused before the database is opened
(no empty database is left behind). Ingesting the same log twice writes
nothing the second time. A log that turns out damaged part-way raises
:class:`PartialLoadError` after committing every intact record before the
damage (each record has its own checksum); running it again after a repair
loads only what is missing. ``should_stop`` (e.g. a
:class:`collector.interrupt.StopSignals` hit by SIGTERM) ends the load
early the same way: what was read is committed, and counts say how much.

``shift`` replays a recorded history as if it had happened later: every
timestamp of the decoded rows (span, point and log times, receive times)
moves by the same offset, while the request digests stay those of the
unchanged payloads, so a re-run with the same shift still loads nothing
twice. :func:`shift_to` computes the offset that makes a log end at a given
instant::

    shift = shift_to("sample.otlp.zst", datetime.now(timezone.utc))
    ingest_request_log("fleetwatch.duckdb", "sample.otlp.zst", shift=shift)
"""

from __future__ import annotations

import copy
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import TextIO

from collector.processing.admission import DigestWindow
from collector.decoding.arrow_batches import TableBuilder
from collector.config import CollectorConfig, default_config
from collector.store.duckdb_exporter import DuckDBExporter, collector_store
from collector.processing.exporters import BatchedRequest, WriteBatch
from collector.processing.pipeline import decode_request, request_digest
from collector.progress import ProgressReporter
from collector.request_log import DamagedLogError, RequestLogReader, RequestRecord
from collector.selfmetrics import CollectorMetrics

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ITEM_NAMES = {"traces": "spans", "metrics": "points", "logs": "log_records"}
_COUNT_KEYS = ("requests", "spans", "points", "log_records", "rejected", "duplicates", "bad_requests")


class PartialLoadError(ValueError):
    """The log was damaged part-way; ``counts`` is what was read before the damage and committed."""

    def __init__(self, message: str, counts: dict[str, int]) -> None:
        super().__init__(message)
        self.counts = counts


class _BatchWriter:
    """Hands batches to the exporter's writer thread, at most two in flight, and waits for them."""

    def __init__(self, exporter: DuckDBExporter, window: DigestWindow, metrics: CollectorMetrics) -> None:
        self.exporter = exporter
        self.window = window
        self.metrics = metrics
        self._slots = threading.Semaphore(2)
        self._error: BaseException | None = None

    def write(self, tables: dict[str, TableBuilder], requests: list[BatchedRequest]) -> None:
        self._slots.acquire()
        self.check()

        def done(error: BaseException | None) -> None:
            if error is None:
                for request in requests:
                    self.window.commit(request.digest)
                    self.metrics.bulk_requests_written.inc(signal=request.signal)
                    self.metrics.bulk_items_written.inc(request.items, signal=request.signal)
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


def ingest_records(records: Iterable[RequestRecord], config: CollectorConfig, *,
                   metrics: CollectorMetrics | None = None, should_stop: Callable[[], bool] | None = None,
                   on_record: Callable[[dict[str, int]], None] | None = None,
                   shift: timedelta | None = None) -> dict[str, int]:
    """Write ``records`` into ``config.exporters.duckdb.path``; returns counts by kind.

    ``metrics`` counts what was committed (``fleetwatch_bulk_*``); ``should_stop``
    is asked before each record and ends the load, committed, when it says so;
    ``on_record`` sees the running counts after each record (progress);
    ``shift`` moves every timestamp written (see the module docstring).
    Damage in ``records`` (:class:`collector.request_log.DamagedLogError`) raises
    :class:`PartialLoadError` once everything before it is committed.
    """
    duck = config.exporters.duckdb
    metrics = metrics or CollectorMetrics()
    exporter = DuckDBExporter(collector_store(duck, metrics), duck, metrics)
    exporter.start()
    counts: Counter[str] = Counter()
    damage: DamagedLogError | None = None
    try:
        window = DigestWindow(duck.dedup_window, duck.dedup_max_entries)
        window.load(exporter.recent_digests(duck.dedup_window, duck.dedup_max_entries))
        writer = _BatchWriter(exporter, window, metrics)
        batch_size = config.processors.batch.send_batch_size
        tables: dict[str, TableBuilder] = {}
        requests: list[BatchedRequest] = []
        submitted: set[str] = set()  # this run's digests, committed or still in flight
        rows = 0
        gateway_id = config.service.gateway_id
        shift_ns = _nanoseconds(shift)
        record_iter = iter(records)
        while should_stop is None or not should_stop():
            try:
                record = next(record_iter, None)
            except DamagedLogError as exc:
                damage = exc  # the batch in hand holds intact records: commit it below
                break
            if record is None:
                break
            counts["requests"] += 1
            if on_record is not None:
                on_record(counts)
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
                    builder = tables[name] = TableBuilder(name, shift_ns)
                builder.add(columns, n, record.received_at_unix_nano, gateway_id)
                rows += n
            requests.append(BatchedRequest(digest, record.signal, decoded.count,
                                           record.received_at_unix_nano + shift_ns, gateway_id, b""))
            submitted.add(digest)
            if rows >= batch_size:
                writer.write(tables, requests)
                tables, requests, rows = {}, [], 0
        if requests:
            writer.write(tables, requests)
        writer.wait()
    finally:
        exporter.close()
    result = {key: counts[key] for key in _COUNT_KEYS}
    if damage is not None:
        raise PartialLoadError(str(damage), result) from damage
    return result


def _nanoseconds(shift: timedelta | None) -> int:
    if shift is None:
        return 0
    # timedelta keeps microseconds; exact integer arithmetic, no float rounding
    return (shift.days * 86_400 + shift.seconds) * 10**9 + shift.microseconds * 1_000


def last_receive_time(log_path: str | os.PathLike[str]) -> datetime:
    """The newest receive time in the request log at ``log_path`` (one pass over the log)."""
    newest = None
    with RequestLogReader(log_path) as reader:
        for record in reader:
            newest = record.received_at_unix_nano  # records are in non-decreasing receive order
    if newest is None:
        raise ValueError(f"{os.fspath(log_path)}: the request log holds no record to shift")
    return _EPOCH + timedelta(microseconds=newest // 1000)


def shift_to(log_path: str | os.PathLike[str], end: datetime, *, whole: timedelta = timedelta(minutes=1)) -> timedelta:
    """The shift, a whole number of ``whole`` units, that makes the log's newest receive time land at or before ``end``.

    Whole units keep the log's minute (or hour) boundaries where they were,
    so windowed results of a shifted load are those of the original moved.
    """
    if end.tzinfo is None:
        raise ValueError(f"shift target {end.isoformat()} has no time zone; give one (e.g. Z)")
    units = (end - last_receive_time(log_path)) // whole
    return units * whole


def ingest_request_log(db_path: str | os.PathLike[str], log_path: str | os.PathLike[str],
                       config: CollectorConfig | None = None, *, metrics: CollectorMetrics | None = None,
                       should_stop: Callable[[], bool] | None = None,
                       progress: TextIO | None = None, shift: timedelta | None = None) -> dict[str, int]:
    """Ingest every record of the request log at ``log_path`` into the DuckDB file ``db_path``.

    ``progress``: a stream (usually stderr) to report progress on, a bar on a
    terminal and periodic lines otherwise; see :func:`ingest_records` for the rest.
    """
    config = copy.deepcopy(config) if config is not None else default_config()
    config.exporters.duckdb.path = os.fspath(db_path)
    config.validate()
    with RequestLogReader(log_path) as reader:  # refuses a foreign file before the database exists
        on_record = None
        reporter = None
        if progress is not None:
            reporter = ProgressReporter(f"loading {os.path.basename(reader.path)}", reader.size, progress)

            def on_record(counts: dict[str, int]) -> None:
                reporter.update(reader.bytes_read, f"{counts['spans']:,} spans, {counts['points']:,} points")

        try:
            return ingest_records(reader, config, metrics=metrics, should_stop=should_stop, on_record=on_record,
                                  shift=shift)
        finally:
            if reporter is not None:
                reporter.finish()
