"""The DuckDB exporter: one writer thread that owns the database file.

Batches arrive as Arrow tables (see :mod:`collector.batcher`); each batch is
appended and committed in one transaction together with the digests of the
requests it holds, and only then are those requests acknowledged (group
commit: many concurrent requests share one commit). The batch that fills a
row group is committed in two parts around a checkpoint (see
:mod:`collector.checkpoints`). After a ``kill -9`` every acknowledged row is
in the file, replayed from DuckDB's write-ahead log::

    exporter = DuckDBExporter(config.exporters.duckdb, metrics)
    exporter.start()                       # fails fast if another process owns the file
    exporter.submit(batch)                 # batch.on_done(error) runs on the writer thread
    exporter.close()                       # drains, checkpoints, closes

DuckDB allows one read-write process per file, so nothing else opens it
while the collector runs; readers go through the read API.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from contextlib import contextmanager

import duckdb
import pyarrow as pa

from collector.checkpoints import CheckpointPolicy, drop_orphaned_heads, forget_heads, record_head
from collector.clock_skew import DeviceClocks
from collector.config import ConfigError, DuckDBExporterConfig
from collector.exporters import WriteBatch
from collector.schema import arrow_schema, ddl
from collector.selfmetrics import CollectorMetrics

log = logging.getLogger("fleetwatch.exporter.duckdb")


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table):
    """``table`` visible to SQL as ``name`` for the duration of the block."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)


class DatabaseLockedError(RuntimeError):
    """Another process holds the DuckDB file open."""


class NotADatabaseError(ValueError):
    """The path given as the database is not a DuckDB file (a directory, an empty file, SQLite, ...)."""


# DuckDB downloads and loads "known" extensions on demand (a SQLite file as the
# database fetched sqlite_scanner from the internet). Gateways are air-gapped:
# nothing here may open a connection nobody configured, whatever the settings say.
NO_NETWORK_SETTINGS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

_DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _refuse_foreign_file(path: str) -> None:
    """Name what ``path`` is when it is not a DuckDB file, before DuckDB guesses (and reaches for an extension)."""
    if path == ":memory:" or path.startswith(":memory:"):
        return
    if os.path.isdir(path):
        raise NotADatabaseError(f"{path} is a directory, not a DuckDB database file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return  # DuckDB creates it
    except OSError as exc:
        raise NotADatabaseError(f"cannot read {path}: {exc.strerror}") from None
    if head.startswith(_SQLITE_MAGIC):
        raise NotADatabaseError(f"{path} is a SQLite database, not a DuckDB database file")
    if head[8:12] != _DUCKDB_MAGIC:
        what = "an empty file" if not head else "not a DuckDB database file"
        raise NotADatabaseError(f"{path} is {what}; give the path of a DuckDB file or of one to create")


def open_database(path: str, *, read_only: bool = False, config: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file without network access, turning DuckDB's refusals into clear one-line messages."""
    _refuse_foreign_file(path)
    try:
        return duckdb.connect(path, read_only=read_only, config={**(config or {}), **NO_NETWORK_SETTINGS})
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseLockedError(
                f"{path} is already open in another process ({exc}). DuckDB allows one process per file: "
                "stop that process, or read through its read API instead of opening the file."
            ) from None
        raise NotADatabaseError(f"cannot open {path} as a DuckDB database: {str(exc).splitlines()[0]}") from None


def file_bytes(path: str) -> int:
    """Bytes on disk for the database and its write-ahead log."""
    total = 0
    for name in (path, path + ".wal"):
        try:
            total += os.path.getsize(name)
        except OSError:
            pass
    return total


def _load_malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _release_free_memory() -> None:
    """Hand memory freed by the last batch back to the OS.

    Each batch allocates and frees tens of MB (decoded columns, Arrow arrays,
    DuckDB's copies) from several threads; glibc keeps the freed pages in
    its per-thread arenas, so without this the resident size drifts far
    above what is live.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class DuckDBExporter:
    """Appends Arrow batches to the DuckDB tables; see the module docstring."""

    def __init__(self, config: DuckDBExporterConfig, metrics: CollectorMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self._queue: queue.Queue[WriteBatch | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._last_prune = time.monotonic()
        self._path = ""
        self.healthy = True
        self.clocks = DeviceClocks(config.clock_skew_threshold)
        self.checkpoints = CheckpointPolicy(config.checkpoint_threshold_mib << 20,
                                            idle_seconds=config.checkpoint_idle,
                                            max_interval_seconds=config.checkpoint_max_interval)
        self._orphaned_head = False

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        path = os.path.expanduser(self.config.path)
        self._path = path
        wal_before = self._wal_bytes()
        opening = time.perf_counter()
        try:
            self._con = open_database(
                path,
                config={
                    "memory_limit": f"{self.config.memory_limit_mib}MB",
                    "threads": str(self.config.threads),
                    # Ours (collector.checkpoints) come first; DuckDB's own threshold is a last resort.
                    "checkpoint_threshold": f"{self.config.checkpoint_threshold_mib * 4}MB",
                    **self.config.settings,
                },
            )
        except duckdb.InvalidInputException as exc:  # ours are validated: an option under settings
            raise ConfigError(f"exporters.duckdb.settings: DuckDB refused an option: {exc}") from None
        self._report_open(wal_before, time.perf_counter() - opening)
        for statement in ddl():
            self._con.execute(statement)
        self._drop_orphaned_heads()  # fails start-up rather than guess, see drop_orphaned_heads
        for device_id, min_lag, seen_ns, event_ns, requests in self._con.execute(
            "SELECT device_id, min_lag_ns, epoch_ns(last_seen), epoch_ns(last_event_time), requests FROM devices"
        ).fetchall():
            self.clocks.seed(device_id, min_lag, seen_ns, event_ns, requests)
        if self._wal_bytes():  # what was replayed (or the schema just created) need not wait in the log
            self._checkpoint("start")
        self._update_size_gauges()
        self._measure_memory()
        self._thread = threading.Thread(target=self._run, name="duckdb-writer", daemon=True)
        self._thread.start()
        log.info("duckdb exporter started", extra={"path": path})

    def _report_open(self, wal_replayed: int, seconds: float) -> None:
        """Opening replays the write-ahead log left by a crash; say how much and how long it took."""
        self.metrics.wal_replayed_bytes.set(wal_replayed)
        self.metrics.open_seconds.set(seconds)
        log.info("opened %s: replayed %d bytes of write-ahead log in %.2fs", self._path, wal_replayed, seconds,
                 extra={"wal_replayed_bytes": wal_replayed, "open_seconds": round(seconds, 3)})

    def recent_digests(self, window_seconds: float, limit: int) -> list[tuple[str, int]]:
        """Digests committed within the dedup window, oldest first (called before start of serving)."""
        assert self._con is not None
        since_ns = time.time_ns() - int(window_seconds * 1e9)
        rows = self._con.execute(
            "SELECT request_digest, epoch_ns(written_at) FROM ingest_log "
            "WHERE written_at >= make_timestamp_ns(?) ORDER BY written_at DESC LIMIT ?",
            [since_ns, limit],
        ).fetchall()
        return list(reversed(rows))

    def submit(self, batch: WriteBatch) -> None:
        self._queue.put(batch)

    def pending_batches(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything submitted so far, checkpoint and close the file."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("duckdb writer did not finish within %.0fs; closing anyway", timeout)
        if self._con is not None:
            try:
                self._con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                log.warning("checkpoint at shutdown failed: %s", exc)
            self._con.close()
            self._con = None

    # -- writer thread ---------------------------------------------------
    def _run(self) -> None:
        while True:
            try:  # wake up for a checkpoint that falls due while no batch arrives (a quiet gateway)
                batch = self._queue.get(timeout=self.checkpoints.seconds_until_due())
            except queue.Empty:
                self._checkpoint_if_due()
                continue
            if batch is None:
                return
            error = self._write(batch)
            _release_free_memory()
            try:
                batch.on_done(error)
            except Exception:  # the callback must never kill the writer
                log.exception("acknowledging a batch failed")
            if error is None and self.checkpoints.wal_due(self._wal_bytes()):
                self._checkpoint("wal_size")
            else:
                self._checkpoint_if_due()
            self._maybe_prune()
            self._measure_memory()

    def _measure_memory(self) -> None:
        """Refresh the DuckDB memory gauge from the writer's own connection.

        Only the writer thread touches the database: a query on another
        connection (a scrape) holds a transaction, and a CHECKPOINT fails
        while any other transaction is open.
        """
        assert self._con is not None
        try:
            used = self._con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()[0][0]
        except duckdb.Error:
            return
        self.metrics.duckdb_memory_bytes.set(used or 0)

    def _write(self, batch: WriteBatch) -> BaseException | None:
        """Commit the batch; checkpoint in the middle of it when it completes a row group (collector.checkpoints)."""
        assert self._con is not None
        con = self._con
        started = time.perf_counter()
        try:
            if self._orphaned_head:  # a head without its tail goes before anything is appended after it
                self._drop_orphaned_heads()
                self._orphaned_head = False
            arrows = {table: builder.build() for table, builder in batch.tables.items()}
            touched = self._observe_clocks(arrows)
            offsets = self._skewed_offsets(touched)
            tail_rows = {table: arrow.num_rows for table, arrow in arrows.items()}
            split = self.checkpoints.split_point(tail_rows)
            if split is not None:
                table, head_rows = split
                with self._transaction():
                    self._append(table, arrows[table].slice(0, head_rows), offsets)
                    record_head(con, table, head_rows)
                # Until the tail commits, whatever goes wrong leaves the head orphaned.
                self._orphaned_head = True
                self.checkpoints.written({table: head_rows})
                self._checkpoint("row_group")
                arrows[table] = arrows[table].slice(head_rows)
                tail_rows[table] -= head_rows
            with self._transaction():
                for table, arrow in arrows.items():
                    self._append(table, arrow, offsets)
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
        self._update_size_gauges()
        return None

    def _drop_orphaned_heads(self) -> None:
        with self._transaction():
            heads = drop_orphaned_heads(self._con)
        if heads:
            log.warning("removed %d rows of a batch whose commit did not finish; its requests were not acknowledged",
                        sum(rows for _, rows in heads),
                        extra={"heads": [{"table": table, "rows": rows} for table, rows in heads]})

    @contextmanager
    def _transaction(self):
        """One DuckDB transaction: committed when the block ends, rolled back if it raises."""
        assert self._con is not None
        self._con.execute("BEGIN TRANSACTION")
        try:
            yield
            self._con.execute("COMMIT")
        except BaseException:
            try:
                self._con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise

    def _append(self, table: str, arrow: pa.Table, offsets: pa.Table | None) -> None:
        """Append Arrow rows to a telemetry table, adding each skewed device's clock offset."""
        con = self._con
        assert con is not None
        # Built once per batch: one contiguous chunk per column scans about
        # twice as fast as many request-sized chunks.
        with _registered(con, "incoming_rows", arrow):
            if offsets is None:
                con.execute(f"INSERT INTO {table} SELECT *, NULL FROM incoming_rows")
            else:
                with _registered(con, "incoming_offsets", offsets):
                    con.execute(
                        f"INSERT INTO {table} SELECT r.*, o.clock_offset_ns FROM incoming_rows r "
                        "LEFT JOIN incoming_offsets o ON r.device_id = o.device_id"
                    )

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

    def _wal_bytes(self) -> int:
        try:
            return os.path.getsize(self._path + ".wal")
        except OSError:
            return 0

    def _update_size_gauges(self) -> None:
        self.metrics.disk_bytes.set(file_bytes(self._path))
        self.metrics.wal_bytes.set(self._wal_bytes())

    def _checkpoint_if_due(self) -> None:
        reason = self.checkpoints.time_due()
        if reason is not None:
            self._checkpoint(reason)

    def _checkpoint(self, reason: str) -> None:
        assert self._con is not None
        started = time.perf_counter()
        try:
            self._con.execute("CHECKPOINT")
        except duckdb.Error as exc:  # e.g. disk full: the WAL keeps the data, try again later
            self.checkpoints.failed()
            self.metrics.checkpoint_failures.inc()
            log.warning("checkpoint failed: %.300s", exc)
            return
        self.checkpoints.checkpointed()
        self.metrics.checkpoints.inc(reason=reason)
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        self._update_size_gauges()

    def _maybe_prune(self) -> None:
        """Drop ingest_log rows older than the dedup window, at most once an hour."""
        if time.monotonic() - self._last_prune < 3600 or self._con is None:
            return
        self._last_prune = time.monotonic()
        cutoff = time.time_ns() - int(self.config.dedup_window * 1e9)
        try:
            self._con.execute("DELETE FROM ingest_log WHERE written_at < make_timestamp_ns(?)", [cutoff])
        except duckdb.Error as exc:
            log.warning("pruning ingest_log failed: %s", exc)
