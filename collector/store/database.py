"""The one owner of a DuckDB file: a write thread, a read pool and the schemas.

DuckDB allows one process per file and, inside it, serialises writers;
fleetwatch therefore gives the file one owner (as datasette's ``Database``
does for SQLite). Writers submit functions that run, in order, on the one
write thread with the write connection; readers take a cursor from a
bounded pool and never touch the write connection::

    store = Store("fleetwatch.duckdb", migrations=[COLLECTOR, ANALYTICS],
                  settings={"memory_limit": "256MB"}, readers=2)
    store.open()                                  # connects, migrates, starts the write thread
    future = store.submit(lambda con: con.execute("INSERT ...").fetchall())
    future.result()                               # the function's value or its exception
    store.reads.run("SELECT ...", max_rows=100, timeout=5)
    store.close()                                 # drains the writes, checkpoints, closes

A submitted function runs inside no transaction of its own: it opens one
(``with store.transaction(con):``) when it needs several statements to
commit together. An exception in one function fails only its own future;
the write thread goes on with the next.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar

import duckdb

from collector.store.migrations import Migrations, migrate
from collector.store.read_pool import ReadPool

log = logging.getLogger("fleetwatch.store")

T = TypeVar("T")

# Every connection fleetwatch opens: no extension is ever downloaded or
# loaded behind the operator's back (air-gapped sites; DuckDB otherwise
# fetches e.g. the sqlite extension when handed a SQLite file).
SAFE_SETTINGS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class DatabaseLockedError(RuntimeError):
    """Another process holds the DuckDB file open."""


def open_database(path: str, *, read_only: bool = False,
                  config: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file with extension downloads off, turning a lock conflict into a clear message."""
    try:
        return duckdb.connect(path, read_only=read_only, config={**(config or {}), **SAFE_SETTINGS})
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseLockedError(
                f"{path} is already open in another process ({exc}). DuckDB allows one process per file: "
                "stop that process, or read through its read API instead of opening the file."
            ) from None
        raise


class Store:
    """Owner of one DuckDB file; see the module docstring."""

    def __init__(self, path: str, *, migrations: Sequence[Migrations] = (), settings: dict[str, str] | None = None,
                 readers: int = 2, queue_limit: int = 8) -> None:
        self.path = os.path.expanduser(path)
        self.migrations = list(migrations)
        self.settings = dict(settings or {})
        self._readers = readers
        self._queue_limit = queue_limit
        self._writes: queue.Queue[tuple[Callable, Future] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.reads: ReadPool | None = None
        self.versions: dict[str, int] = {}

    def open(self) -> None:
        self._con = open_database(self.path, config=self.settings)
        try:
            self.versions = migrate(self._con, self.migrations)
            self.reads = ReadPool(self._con, size=self._readers, queue_limit=self._queue_limit)
        except BaseException:
            self._con.close()
            self._con = None
            raise
        self._thread = threading.Thread(target=self._write_loop, name="duckdb-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[duckdb.DuckDBPyConnection], T]) -> Future[T]:
        """Queue ``write(connection)`` for the write thread; its result or exception lands in the future."""
        if self._thread is None:
            raise RuntimeError("the store is not open")
        future: Future[T] = Future()
        self._writes.put((write, future))
        return future

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

    def _write_loop(self) -> None:
        assert self._con is not None
        while True:
            item = self._writes.get()
            if item is None:
                return
            write, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(write(self._con))
            except BaseException as exc:  # the caller sees it; the thread goes on
                future.set_exception(exc)
