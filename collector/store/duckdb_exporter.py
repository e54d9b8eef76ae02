"""The DuckDB exporter: telemetry batches into the file, through its :class:`Store`.

Batches arrive as Arrow tables (see :mod:`collector.processing.batcher`); each batch is
appended and committed in one transaction together with the digests of the
requests it holds, and only then are those requests acknowledged (group
commit: many concurrent requests share one commit). The batch that fills a
row group is committed in two parts around a checkpoint (see
:mod:`collector.store.checkpoints`). After a ``kill -9`` every acknowledged row is
in the file, replayed from DuckDB's write-ahead log::

    store = collector_store(config.exporters.duckdb, metrics)   # not opened yet
    exporter = DuckDBExporter(store, config.exporters.duckdb, metrics)
    exporter.start()                       # opens the store: fails fast if another process owns the file
    exporter.submit(batch)                 # batch.on_done(error) runs on the store's write thread
    exporter.close()                       # drains, checkpoints, closes the store

Every write also records which minutes of event time it touched
(:mod:`collector.store.marks`), in the same transaction, so analytics jobs
recompute exactly the windows a late upload changes.

DuckDB allows one read-write process per file, so nothing else opens it
while the collector runs; readers go through the read API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import contextmanager

import duckdb
import pyarrow as pa

from collector.store.checkpoints import CheckpointPolicy, drop_orphaned_heads, forget_heads, record_head
from collector.store.clock_skew import DeviceClocks
from collector.config import ConfigError, DuckDBExporterConfig
from collector.processing.exporters import WriteBatch
from collector.store.schema import arrow_schema
from collector.selfmetrics import CollectorMetrics
from collector.store.database import Store
from collector.store.marks import TIME_COLUMNS, compact_marks, next_seq, record_marks
from collector.store.migrations import Migrations
from collector.store.versions import COLLECTOR

log = logging.getLogger("fleetwatch.exporter.duckdb")


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table):
    """``table`` visible to SQL as ``name`` for the duration of the block."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)


def collector_store(config: DuckDBExporterConfig, metrics: CollectorMetrics,
                    migrations: Sequence[Migrations] = (), *, readers: int = 2, queue_limit: int = 8) -> Store:
    """The store for ``exporters.duckdb``: its file, DuckDB settings, checkpoint policy and schemas."""
    settings = {
        "memory_limit": f"{config.memory_limit_mib}MB",
        "threads": str(config.threads),
        # Ours (collector.store.checkpoints) come first; DuckDB's own threshold is a last resort.
        "checkpoint_threshold": f"{config.checkpoint_threshold_mib * 4}MB",
        **config.settings,
    }
    policy = CheckpointPolicy(config.checkpoint_threshold_mib << 20, idle_seconds=config.checkpoint_idle,
                              max_interval_seconds=config.checkpoint_max_interval)
    return Store(config.path, migrations=[COLLECTOR, *migrations], settings=settings, checkpoints=policy,
                 metrics=metrics, readers=readers, queue_limit=queue_limit)


class DuckDBExporter:
    """Appends Arrow batches to the DuckDB tables through the store's write thread; see the module docstring."""

    PRUNE_INTERVAL = 3600.0  # seconds between ingest_log pruning and ingest-mark merging

    def __init__(self, store: Store, config: DuckDBExporterConfig, metrics: CollectorMetrics) -> None:
        if store.checkpoints is None:
            raise ValueError("the DuckDB exporter needs a store with a checkpoint policy (collector_store)")
        self.store = store
        self.config = config
        self.metrics = metrics
        self.checkpoints: CheckpointPolicy = store.checkpoints
        self._last_prune = time.monotonic()
        self.healthy = True
        self.clocks = DeviceClocks(config.clock_skew_threshold)
        self._orphaned_head = False
        self._seq = 0  # the next write's number in ingest_marks

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        """Open the store (its write-ahead log replayed, schemas migrated) and recover this exporter's state."""
        try:
            self.store.open()
        except duckdb.InvalidInputException as exc:  # ours are validated: an option under settings
            raise ConfigError(f"exporters.duckdb.settings: DuckDB refused an option: {exc}") from None
        try:
            self.store.submit(self._recover).result()
        except BaseException:
            self.store.close()
            raise
        log.info("duckdb exporter started", extra={"path": self.store.path})

    def _recover(self, con: duckdb.DuckDBPyConnection) -> None:
        self._drop_orphaned_heads(con)  # fails start-up rather than guess, see drop_orphaned_heads
        for device_id, min_lag, seen_ns, event_ns, requests in con.execute(
            "SELECT device_id, min_lag_ns, epoch_ns(last_seen), epoch_ns(last_event_time), requests FROM devices"
        ).fetchall():
            self.clocks.seed(device_id, min_lag, seen_ns, event_ns, requests)
        self._seq = next_seq(con)
        if self.store.wal_bytes():  # what was replayed (or the schema just created) need not wait in the log
            self.store.checkpoint("start")

    def recent_digests(self, window_seconds: float, limit: int) -> list[tuple[str, int]]:
        """Digests committed within the dedup window, oldest first (called before serving starts)."""
        since_ns = time.time_ns() - int(window_seconds * 1e9)

        def read(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
            return con.execute(
                "SELECT request_digest, epoch_ns(written_at) FROM ingest_log "
                "WHERE written_at >= make_timestamp_ns(?) ORDER BY written_at DESC LIMIT ?",
                [since_ns, limit]).fetchall()

        return list(reversed(self.store.submit(read).result()))

    def submit(self, batch: WriteBatch) -> None:
        self.store.submit(lambda con: self._write_and_acknowledge(con, batch))

    def pending_batches(self) -> int:
        return self.store.pending_writes()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything submitted so far, checkpoint and close the file."""
        self.store.close(timeout)

    # -- on the store's write thread ---------------------------------------
    def _write_and_acknowledge(self, con: duckdb.DuckDBPyConnection, batch: WriteBatch) -> None:
        error = self._write(con, batch)
        try:
            batch.on_done(error)
        except Exception:  # the callback must never kill the writer
            log.exception("acknowledging a batch failed")
        self._maybe_prune(con)

    def _write(self, con: duckdb.DuckDBPyConnection, batch: WriteBatch) -> BaseException | None:
        """Commit the batch; checkpoint in the middle of it when it completes a row group (collector.store.checkpoints)."""
        started = time.perf_counter()
        try:
            if self._orphaned_head:  # a head without its tail goes before anything is appended after it
                self._drop_orphaned_heads(con)
                self._orphaned_head = False
            arrows = {table: builder.build() for table, builder in batch.tables.items()}
            touched = self._observe_clocks(arrows)
            offsets = self._skewed_offsets(touched)
            tail_rows = {table: arrow.num_rows for table, arrow in arrows.items()}
            split = self.checkpoints.split_point(tail_rows)
            if split is not None:
                table, head_rows = split
                with Store.transaction(con):
                    self._append(con, table, arrows[table].slice(0, head_rows), offsets)
                    record_head(con, table, head_rows)
                # Until the tail commits, whatever goes wrong leaves the head orphaned.
                self._orphaned_head = True
                self.checkpoints.written({table: head_rows})
                self.store.checkpoint("row_group")
                arrows[table] = arrows[table].slice(head_rows)
                tail_rows[table] -= head_rows
            with Store.transaction(con):
                for table, arrow in arrows.items():
                    self._append(con, table, arrow, offsets)
                if split is not None:
                    forget_heads(con)
                if touched:
                    with _registered(con, "incoming_devices", self._devices_table(touched)):
                        con.execute("INSERT OR REPLACE INTO devices SELECT * FROM incoming_devices")
                if batch.requests:
                    with _registered(con, "incoming_log", self._log_table(batch.requests)):
                        con.execute("INSERT INTO ingest_log SELECT * FROM incoming_log")
            self._orphaned_head = False
        except Exception as exc:  # duckdb.Error, OSError (disk full), ...
            self.metrics.write_failures.inc()
            self.healthy = False
            log.error("batch commit failed; %d requests get a retryable error: %.500s", len(batch.requests), exc)
            return exc
        self.healthy = True
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.checkpoints.written(tail_rows)
        for table, builder in batch.tables.items():
            self.metrics.batches_written.inc(table=table)
            self.metrics.rows_written.inc(builder.rows, table=table)
        return None

    def _drop_orphaned_heads(self, con: duckdb.DuckDBPyConnection) -> None:
        with Store.transaction(con):
            heads = drop_orphaned_heads(con)
        if heads:
            log.warning("removed %d rows of a batch whose commit did not finish; its requests were not acknowledged",
                        sum(rows for _, rows in heads),
                        extra={"heads": [{"table": table, "rows": rows} for table, rows in heads]})

    def _append(self, con: duckdb.DuckDBPyConnection, table: str, arrow: pa.Table, offsets: pa.Table | None) -> None:
        """Append Arrow rows to a telemetry table, adding each skewed device's clock offset, and mark their minutes."""
        # Built once per batch: one contiguous chunk per column scans about
        # twice as fast as many request-sized chunks.
        with _registered(con, "incoming_rows", arrow):
            if offsets is None:
                rows = "SELECT *, NULL::BIGINT AS clock_offset_ns FROM incoming_rows"
                con.execute(f"INSERT INTO {table} {rows}")
            else:
                con.register("incoming_offsets", offsets)
                rows = ("SELECT r.*, o.clock_offset_ns FROM incoming_rows r "
                        "LEFT JOIN incoming_offsets o ON r.device_id = o.device_id")
                con.execute(f"INSERT INTO {table} {rows}")
            try:
                if table in TIME_COLUMNS:
                    record_marks(con, self._seq, table, f"({rows})")
                    self._seq += 1
            finally:
                if offsets is not None:
                    con.unregister("incoming_offsets")

    def _observe_clocks(self, arrows: dict[str, pa.Table]) -> set[str]:
        """Feed each request's newest event time to the clock estimator; return the devices seen."""
        import pyarrow.compute as pc

        touched: set[str] = set()
        for table, arrow in arrows.items():
            if table == "span_rows":
                event = pc.add(arrow["start_time"].cast(pa.int64()), arrow["duration_ns"])
            elif table == "log_rows":  # a record may carry only the time the device's SDK observed it
                event = pc.coalesce(arrow["time"], arrow["observed_time"]).cast(pa.int64())
            else:
                event = arrow["time"].cast(pa.int64())
            grouped = pa.table({"device_id": arrow["device_id"], "received": arrow["received_at"].cast(pa.int64()),
                                "event": event}).group_by(["device_id", "received"]).aggregate([("event", "max")])
            for device_id, received, newest in zip(*(grouped[c].to_pylist() for c in
                                                     ("device_id", "received", "event_max"))):
                if device_id is not None:
                    self.clocks.observe(device_id, received, newest)
                    touched.add(device_id)
        return touched

    def _skewed_offsets(self, devices: set[str]) -> pa.Table | None:
        """(device_id, clock_offset_ns) of the skewed devices among ``devices``; None when none is (the common case)."""
        skewed = {d: o for d in devices if (o := self.clocks.offset_ns(d)) is not None}
        if not skewed:
            return None
        return pa.table({"device_id": pa.array(list(skewed), pa.string()),
                         "clock_offset_ns": pa.array(list(skewed.values()), pa.int64())})

    def _devices_table(self, devices: set[str]) -> pa.Table:
        columns = list(zip(*self.clocks.snapshot(sorted(devices))))
        types = [pa.string(), pa.timestamp("ns"), pa.timestamp("ns"), pa.int64(), pa.int64(), pa.bool_(),
                 pa.uint64(), pa.timestamp("ns")]
        names = ["device_id", "last_seen", "last_event_time", "min_lag_ns", "clock_offset_ns", "clock_skewed",
                 "requests", "updated_at"]
        return pa.table({name: pa.array(values, type_) for name, values, type_ in zip(names, columns, types)})

    @staticmethod
    def _log_table(requests: list) -> pa.Table:
        digests, signals, items, received, gateways = zip(
            *((r.digest, r.signal, r.items, r.received_at_ns, r.gateway_id) for r in requests)
        )
        return pa.Table.from_arrays(
            [
                pa.array(digests, pa.string()),
                pa.array(signals, pa.string()),
                pa.array(items, pa.uint64()),
                pa.array(received, pa.timestamp("ns")),
                pa.array(gateways, pa.string()),
                pa.repeat(pa.scalar(time.time_ns(), pa.timestamp("ns")), len(digests)),
            ],
            schema=arrow_schema("ingest_log"),
        )

    def _maybe_prune(self, con: duckdb.DuckDBPyConnection) -> None:
        """At most once an hour: drop ingest_log rows older than the dedup window, and merge
        the ingest marks every job has seen into one row per minute (one per write otherwise)."""
        if time.monotonic() - self._last_prune < self.PRUNE_INTERVAL:
            return
        self._last_prune = time.monotonic()
        cutoff = time.time_ns() - int(self.config.dedup_window * 1e9)
        floor = self.store.marks_floor() if self.store.marks_floor is not None else self._seq - 1
        try:
            con.execute("DELETE FROM ingest_log WHERE written_at < make_timestamp_ns(?)", [cutoff])
            with Store.transaction(con):
                compact_marks(con, floor)
        except duckdb.Error as exc:
            log.warning("pruning ingest_log or merging ingest marks failed: %s", exc)
