"""The one owner of a DuckDB file: the write thread, the read pool, the schemas, the checkpoints.

DuckDB allows one process per file and, inside it, serialises writers;
fleetwatch therefore gives the file one owner (as datasette's ``Database``
does for SQLite). Writers -- the DuckDB exporter's batches, the analytics
jobs' window results -- submit functions that run in order on the one write
thread with the write connection; readers take a cursor from a bounded pool
and never touch the write connection::

    store = Store("fleetwatch.duckdb", migrations=[COLLECTOR, ANALYTICS],
                  settings={"memory_limit": "100MB"}, checkpoints=CheckpointPolicy(...),
                  metrics=collector_metrics)
    store.open()                                  # connects, migrates, starts the write thread
    future = store.submit(lambda con: con.execute("INSERT ...").fetchall())
    future.result()                               # the function's value or its exception
    store.reads.run("SELECT ...", max_rows=100, timeout=5)
    store.close()                                 # drains the writes, checkpoints, closes

A submitted function runs inside no transaction of its own: it opens one
(``with Store.transaction(con):``) when several statements must commit
together. An exception in one function fails only its own future; the
write thread goes on with the next.

Checkpoints are the store's: after each write it checkpoints when the
policy says so (write-ahead log size, idle time, elapsed time), and while
no write comes it wakes up for the timed ones, so a quiet gateway's log
stays small. A writer that knows better (the exporter, which lines
checkpoints up with DuckDB's row groups) calls :meth:`checkpoint` itself
from inside its function.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar

import duckdb

from collector.store.checkpoints import CheckpointPolicy
from collector.selfmetrics import CollectorMetrics
from collector.store.files import file_bytes, open_database, release_free_memory, wal_bytes
from collector.store.migrations import Migrations, migrate
from collector.store.read_pool import ReadPool

log = logging.getLogger("fleetwatch.store")

T = TypeVar("T")


class Store:
    """Owner of one DuckDB file; see the module docstring."""

    def __init__(self, path: str, *, migrations: Sequence[Migrations] = (), settings: dict[str, str] | None = None,
                 readers: int = 2, queue_limit: int = 8, checkpoints: CheckpointPolicy | None = None,
                 metrics: CollectorMetrics | None = None) -> None:
        self.path = os.path.expanduser(path)
        self.migrations = list(migrations)
        self.settings = dict(settings or {})
        self.checkpoints = checkpoints
        self.metrics = metrics or CollectorMetrics()
        self._readers = readers
        self._queue_limit = queue_limit
        self._writes: queue.Queue[tuple[Callable, Future] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.reads: ReadPool | None = None
        self.versions: dict[str, int] = {}
        # The newest ingest_marks sequence every reader of marks has seen (the
        # analytics jobs set it); marks up to it may be merged. None: nobody
        # reads marks here (a gateway), so all of them may be.
        self.marks_floor: Callable[[], int] | None = None

    # -- lifecycle -------------------------------------------------------
    def open(self) -> None:
        """Open the file (replaying its write-ahead log), migrate every owner's schema, start the writer."""
        replayed = wal_bytes(self.path)
        started = time.perf_counter()
        self._con = open_database(self.path, config=self.settings)
        self._report_open(replayed, time.perf_counter() - started)
        try:
            self.versions = migrate(self._con, self.migrations)
            self.reads = ReadPool(self._con, size=self._readers, queue_limit=self._queue_limit)
        except BaseException:
            self._con.close()
            self._con = None
            raise
        self._update_gauges()
        self._thread = threading.Thread(target=self._write_loop, name="duckdb-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Run every write submitted so far, stop the readers, checkpoint and close."""
        if self._thread is not None:
            self._writes.put(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("the write thread did not finish within %.0f s; closing anyway", timeout)
            self._thread = None
        if self.reads is not None:
            self.reads.close()
            self.reads = None
        if self._con is not None:
            try:
                self._con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                log.warning("checkpoint at shutdown failed: %s", exc)
            self._con.close()
            self._con = None

    # -- writing ---------------------------------------------------------
    def submit(self, write: Callable[[duckdb.DuckDBPyConnection], T]) -> Future[T]:
        """Queue ``write(connection)`` for the write thread; its result or exception lands in the future."""
        if self._thread is None:
            raise RuntimeError("the store is not open")
        future: Future[T] = Future()
        self._writes.put((write, future))
        return future

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for a long reader outside the read pool (the archive's COPY); close it after."""
        if self._con is None:
            raise RuntimeError("the store is not open")
        return self._con.cursor()

    def pending_writes(self) -> int:
        return self._writes.qsize()

    @staticmethod
    @contextmanager
    def transaction(con: duckdb.DuckDBPyConnection):
        """One transaction: committed when the block ends, rolled back if it raises."""
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise

    def checkpoint(self, reason: str) -> bool:
        """CHECKPOINT now, counted under ``reason``; call it on the write thread. False if it failed."""
        assert self._con is not None
        started = time.perf_counter()
        try:
            self._con.execute("CHECKPOINT")
        except duckdb.Error as exc:  # e.g. disk full: the WAL keeps the data, try again later
            if self.checkpoints is not None:
                self.checkpoints.failed()
            self.metrics.checkpoint_failures.inc()
            log.warning("checkpoint failed: %.300s", exc)
            return False
        if self.checkpoints is not None:
            self.checkpoints.checkpointed()
        self.metrics.checkpoints.inc(reason=reason)
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        self._update_gauges()
        return True

    def wal_bytes(self) -> int:
        return wal_bytes(self.path)

    def _write_loop(self) -> None:
        assert self._con is not None
        while True:
            wait = self.checkpoints.seconds_until_due() if self.checkpoints is not None else None
            try:  # wake up for a checkpoint that falls due while nothing is written (a quiet gateway)
                item = self._writes.get(timeout=wait)
            except queue.Empty:
                self._checkpoint_if_due()
                continue
            if item is None:
                return
            write, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(write(self._con))
                except BaseException as exc:  # the caller sees it; the thread goes on
                    future.set_exception(exc)
            release_free_memory()
            self._checkpoint_if_due()
            self._update_gauges()

    def _checkpoint_if_due(self) -> None:
        if self.checkpoints is None:
            return
        if self.checkpoints.wal_due(self.wal_bytes()):
            self.checkpoint("wal_size")
        elif (reason := self.checkpoints.time_due()) is not None:
            self.checkpoint(reason)

    # -- health ----------------------------------------------------------
    def _report_open(self, replayed: int, seconds: float) -> None:
        """Opening replays the write-ahead log left by a crash; say how much and how long it took."""
        self.metrics.wal_replayed_bytes.set(replayed)
        self.metrics.open_seconds.set(seconds)
        log.info("opened %s: replayed %d bytes of write-ahead log in %.2fs", self.path, replayed, seconds,
                 extra={"wal_replayed_bytes": replayed, "open_seconds": round(seconds, 3)})

    def _update_gauges(self) -> None:
        """Sizes and DuckDB's memory, read on the write thread.

        Only the write thread queries DuckDB for its own health: a probe on
        another cursor at scrape time would hold a transaction while the
        writer checkpoints.
        """
        self.metrics.disk_bytes.set(file_bytes(self.path))
        self.metrics.wal_bytes.set(self.wal_bytes())
        if self._con is None:
            return
        try:
            used = self._con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()[0][0]
        except duckdb.Error:
            return
        self.metrics.duckdb_memory_bytes.set(used or 0)
