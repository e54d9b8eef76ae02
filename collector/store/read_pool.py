"""Bounded read cursors beside the DuckDB writer, with row, byte and time limits.

DuckDB runs many readers and one writer in one process; each reader needs
its own cursor (a connection to the same database). The pool owns a fixed
number of them, so reads can never outnumber the cores the writer also
needs, and refuses work it cannot start soon instead of queueing without
bound::

    pool = ReadPool(owner_connection, size=2, queue_limit=8)
    result = pool.run("SELECT * FROM spans WHERE device_id = ?", ["cam-1"],
                      max_rows=10_000, timeout=5.0)
    result.table          # pyarrow.Table, at most max_rows rows
    result.truncated      # True when more rows (or bytes) were there
    pool.close()

What a caller gets when a limit is hit:

- :class:`PoolBusy` (with ``retry_after`` seconds) when ``size`` reads are
  running and ``queue_limit`` more are waiting;
- :class:`QueryTimeout` when a read ran longer than ``timeout``: the cursor
  is interrupted (DuckDB stops the query) and goes back to the pool;
- :class:`QueryFailed` for any DuckDB error, its first line as the message;
  out-of-memory is a :class:`PoolBusy` since trying later can succeed.

Results are fetched in Arrow record batches and cut at ``max_rows`` or
``max_bytes``, so an unbounded SELECT costs at most one batch beyond the
limit, never the whole table in memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

FETCH_ROWS = 2048


class PoolBusy(RuntimeError):
    """Too many reads at once (or DuckDB out of memory); try again after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueryTimeout(RuntimeError):
    """The read ran past its time limit and was interrupted."""


class QueryFailed(ValueError):
    """DuckDB refused or failed the statement; the message is DuckDB's first line."""


@dataclass(frozen=True)
class ReadResult:
    table: pa.Table
    truncated: bool
    seconds: float


class Admission:
    """A read's place in the pool, taken by :meth:`ReadPool.admit`; run it exactly once."""

    def __init__(self, pool: ReadPool) -> None:
        self._pool = pool
        self._used = False

    def run(self, sql: str, params: Sequence | dict | None = None, *, max_rows: int,
            timeout: float, max_bytes: int = 64 * 1024 * 1024) -> ReadResult:
        if self._used:
            raise RuntimeError("an admission runs one read")
        self._used = True
        return self._pool._run_admitted(sql, params, max_rows, timeout, max_bytes)


class ReadPool:
    """A fixed set of read cursors; see the module docstring for limits and errors."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, size: int = 2, queue_limit: int = 8,
                 retry_after: float = 1.0) -> None:
        if size < 1:
            raise ValueError("a read pool needs at least one cursor")
        if queue_limit < 0:
            raise ValueError("queue_limit must be 0 or more")
        self.size = size
        self.queue_limit = queue_limit
        self.retry_after = retry_after
        self._cursors: queue.Queue[duckdb.DuckDBPyConnection] = queue.Queue()
        for _ in range(size):
            self._cursors.put(connection.cursor())
        self._admitted = threading.BoundedSemaphore(size + queue_limit)
        self._closed = False

    def run(self, sql: str, params: Sequence | dict | None = None, *, max_rows: int,
            timeout: float, max_bytes: int = 64 * 1024 * 1024) -> ReadResult:
        """Admit and run one read on a pooled cursor (blocking: call it from a worker thread)."""
        return self.admit().run(sql, params, max_rows=max_rows, timeout=timeout, max_bytes=max_bytes)

    def admit(self) -> Admission:
        """Take a place among the running and waiting reads now, or raise :class:`PoolBusy`.

        An event loop admits before it hands the read to a thread, so a full
        pool answers at once instead of after the thread pool's own queue.
        """
        if self._closed or not self._admitted.acquire(blocking=False):
            if self._closed:
                raise PoolBusy("the database is closing", self.retry_after)
            raise PoolBusy(f"{self.size} queries are running and {self.queue_limit} are waiting",
                           self.retry_after)
        return Admission(self)

    def _run_admitted(self, sql, params, max_rows, timeout, max_bytes) -> ReadResult:
        try:
            cursor = self._cursors.get()
            try:
                return self._run_on(cursor, sql, params, max_rows, timeout, max_bytes)
            finally:
                self._cursors.put(cursor)
        finally:
            self._admitted.release()

    def _run_on(self, cursor, sql, params, max_rows, timeout, max_bytes) -> ReadResult:
        started = time.monotonic()
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            cursor.interrupt()

        timer = threading.Timer(timeout, stop)
        timer.start()
        try:
            reader = cursor.sql(sql, params=params).to_arrow_reader(FETCH_ROWS)
            batches, rows, size, truncated = [], 0, 0, False
            for batch in reader:
                room = max_rows - rows
                if batch.num_rows > room:
                    batches.append(batch.slice(0, room))
                    truncated = True
                    break
                if size + batch.nbytes > max_bytes:
                    truncated = True
                    break
                batches.append(batch)
                rows += batch.num_rows
                size += batch.nbytes
            table = pa.Table.from_batches(batches, schema=reader.schema)
            reader.close()
        except duckdb.InterruptException:
            if timed_out.is_set():
                raise QueryTimeout(f"the query ran longer than {timeout:g} s and was stopped") from None
            raise QueryFailed("the query was interrupted") from None
        except duckdb.OutOfMemoryException as exc:
            raise PoolBusy(f"not enough memory for this query now: {_first_line(exc)}", self.retry_after) from None
        except duckdb.Error as exc:
            raise QueryFailed(_first_line(exc)) from None
        finally:
            timer.cancel()
        return ReadResult(table, truncated, time.monotonic() - started)

    def close(self) -> None:
        """Stop admitting reads and close the cursors once the running ones are done."""
        self._closed = True
        for _ in range(self.size):
            self._cursors.get().close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
