"""Offline ingest of a request log through the collector's own pipeline.

Backfills and the shipped sample data are request logs (see
:mod:`collector.request_log`): sequences of OTLP requests with the time the
gateway received them. They enter the database exactly as live traffic
does — digest, decode, validate, batch, group commit — only without sockets::

    counts = ingest_request_log("fleetwatch.duckdb", "sample_data/fleet-sample.otlp.zst")
    counts["spans"], counts["points"], counts["rejected"], counts["duplicates"]

Like every offline tool it opens the file only when no server owns it and
raises :class:`collector.duckdb_exporter.DatabaseLockedError` when one does.
Ingesting the same log twice writes nothing the second time (its requests are
recognised as re-sent).
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections import Counter
from collections.abc import Iterable

from collector.config import CollectorConfig, default_config
from collector.duckdb_exporter import DuckDBExporter
from collector.pipeline import BadRequest, Ingestor, Refused
from collector.request_log import RequestRecord, read_request_log
from collector.selfmetrics import CollectorMetrics

_ITEM_NAMES = {"traces": "spans", "metrics": "points"}


async def ingest_records(
    records: Iterable[RequestRecord], config: CollectorConfig, *, concurrency: int = 1024
) -> dict[str, int]:
    """Feed records through a private Ingestor into ``config.exporters.duckdb.path``.

    Up to ``concurrency`` requests are in flight (the memory budget still
    applies); with nobody waiting on an answer, batches are handed to the
    writer as soon as it is free instead of after the live batch timeout.
    """
    config = copy.deepcopy(config)
    config.processors.batch.timeout = min(config.processors.batch.timeout, 0.005)
    metrics = CollectorMetrics()
    exporter = DuckDBExporter(config.exporters.duckdb, metrics)
    exporter.start()
    counts: Counter[str] = Counter()
    try:
        ingestor = Ingestor(config, metrics, exporter)
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task] = set()

        async def one(record: RequestRecord) -> None:
            try:
                while True:
                    try:
                        outcome = await ingestor.ingest(
                            record.signal, record.payload, receiver="bulk",
                            received_at_ns=record.received_at_unix_nano,
                        )
                        break
                    except Refused:
                        await asyncio.sleep(0.05)  # memory budget full: wait for commits
                counts["requests"] += 1
                counts[_ITEM_NAMES[record.signal]] += outcome.accepted
                counts["rejected"] += outcome.rejected
                counts["duplicates"] += outcome.duplicate
            except BadRequest:
                counts["bad_requests"] += 1
            finally:
                slots.release()

        for record in records:
            await slots.acquire()
            task = asyncio.create_task(one(record))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        await ingestor.drain()
    finally:
        exporter.close()
    return {key: counts[key] for key in ("requests", "spans", "points", "rejected", "duplicates", "bad_requests")}


def ingest_request_log(db_path: str | os.PathLike[str], log_path: str | os.PathLike[str],
                       config: CollectorConfig | None = None) -> dict[str, int]:
    """Ingest every record of the request log at ``log_path`` into the DuckDB file ``db_path``."""
    config = copy.deepcopy(config) if config is not None else default_config()
    config.exporters.duckdb.path = os.fspath(db_path)
    config.validate()
    return asyncio.run(ingest_records(read_request_log(log_path), config))
