"""When the DuckDB writer checkpoints, and how it keeps checkpoints cheap.

DuckDB compresses a table's rows into row groups of 122,880 rows when it
checkpoints. After every checkpoint (and after opening the file) the next
append to a table starts a new row group, and a later checkpoint merges a
partly filled row group with the ones after it, decompressing and
recompressing all of them. Measured on the ingest benchmark's spans
(DuckDB 2.0): a checkpoint that only writes full new row groups costs about
2 CPU µs per row; checkpoints at arbitrary points cost 3 to 6 times that,
and the file keeps the blocks the rewrites freed.

So the writer checkpoints exactly when a table's new rows fill whole row
groups. When a write batch would carry the leading table past a row-group
boundary, the batch is split: its *head* (that table's rows up to the
boundary) is committed first, the checkpoint runs, and then the *tail* (the
rest of the batch and the digests of its requests) is committed; the
batch's requests are acknowledged only after the tail. The head is recorded
in ``batch_heads`` (see :mod:`collector.store.schema`) within its own transaction and the record is deleted with
the tail, so a head whose tail never committed (``kill -9`` during the
checkpoint, or a failed tail) is recognised: its rows are the last rows of
their table, nothing is appended to that table until they are removed, and
the clients, who got no acknowledgement, send the requests again.

A quiet gateway may take hours to fill a row group, and meanwhile every
small commit stays in the write-ahead log (tens of MB of log beside a KB-sized
file after minutes, all replayed at the next start). So the writer also
checkpoints when nothing was written for ``idle_seconds`` and when the oldest
write not yet checkpointed is ``max_interval_seconds`` old. On a busy gateway
row groups fill long before either, so they never fire there::

    policy = CheckpointPolicy(wal_threshold_bytes=256 << 20, idle_seconds=30, max_interval_seconds=60)
    cut = policy.split_point({"span_rows": 16_384})     # None, or (table, rows in the head)
    ...                                                # commit head, checkpoint, commit tail
    policy.written({"span_rows": 16_384})
    policy.time_due()                                  # None, "idle" or "elapsed"
    policy.seconds_until_due()                         # how long the writer may wait for the next batch
    policy.checkpointed()                              # or policy.failed() to try again later
"""

from __future__ import annotations

import time
from collections.abc import Callable

import duckdb

ROW_GROUP_ROWS = 122_880  # DuckDB's row group size
#: the tables whose row groups checkpoints are aligned to (bookkeeping tables follow them)
ALIGNED_TABLES = ("span_rows", "metric_points", "histogram_points")


class UnfinishedBatchError(RuntimeError):
    """``batch_heads`` names rows that the table does not end with; nothing was deleted."""


class CheckpointPolicy:
    """Counts rows appended since the last checkpoint and says where to cut a batch.

    Only the tables named in ``aligned_tables`` lead (the telemetry tables);
    bookkeeping tables such as ``ingest_log`` follow whichever table led.
    Times are ``clock()`` seconds (monotonic by default).
    """

    def __init__(self, wal_threshold_bytes: int, aligned_tables: tuple[str, ...] = ALIGNED_TABLES, *,
                 idle_seconds: float = 30.0, max_interval_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if wal_threshold_bytes < 1:
            raise ValueError(f"wal_threshold_bytes must be positive, not {wal_threshold_bytes}")
        if idle_seconds <= 0 or max_interval_seconds <= 0:
            raise ValueError(f"idle_seconds and max_interval_seconds must be positive, not "
                             f"{idle_seconds} and {max_interval_seconds}")
        self.wal_threshold_bytes = wal_threshold_bytes
        self.idle_seconds = idle_seconds
        self.max_interval_seconds = max_interval_seconds
        self._clock = clock
        self._aligned_tables = aligned_tables
        self._since_checkpoint: dict[str, int] = {}
        self._first_write: float | None = None  # oldest write the file does not hold yet
        self._last_write = 0.0
        self._not_before = 0.0  # after a failed checkpoint, wait before the next try

    def split_point(self, batch_rows: dict[str, int]) -> tuple[str, int] | None:
        """``(table, head_rows)`` when this batch carries ``table`` to a row-group boundary, else None.

        When several tables would cross, the one with the most rows in the
        batch leads; the others get a partly filled row group this time.
        """
        crossing = [
            (rows, table, to_boundary) for table, rows in batch_rows.items()
            if table in self._aligned_tables
            and 0 < (to_boundary := ROW_GROUP_ROWS - self._since_checkpoint.get(table, 0) % ROW_GROUP_ROWS) <= rows
        ]
        if not crossing:
            return None
        _, table, to_boundary = max(crossing)
        return table, to_boundary

    def written(self, batch_rows: dict[str, int]) -> None:
        for table, rows in batch_rows.items():
            self._since_checkpoint[table] = self._since_checkpoint.get(table, 0) + rows
        self._last_write = self._clock()
        if self._first_write is None:
            self._first_write = self._last_write

    def checkpointed(self) -> None:
        """Every table starts a new row group after a checkpoint."""
        self._since_checkpoint.clear()
        self._first_write = None

    def failed(self) -> None:
        """The checkpoint failed (disk full...): the log keeps the data; try again after a pause, not at once."""
        self._not_before = self._clock() + min(self.idle_seconds, 30.0)

    def time_due(self) -> str | None:
        """``"idle"`` or ``"elapsed"`` when a checkpoint is due by time, else None (nothing unwritten, or not yet)."""
        wait = self.seconds_until_due()
        if wait is None or wait > 0:
            return None
        now = self._clock()
        return "idle" if now - self._last_write >= self.idle_seconds else "elapsed"

    def seconds_until_due(self) -> float | None:
        """Seconds until :meth:`time_due` fires if nothing else is written; None when nothing awaits a checkpoint."""
        if self._first_write is None:
            return None
        due_at = min(self._last_write + self.idle_seconds, self._first_write + self.max_interval_seconds)
        return max(0.0, max(due_at, self._not_before) - self._clock())

    def wal_due(self, wal_bytes: int) -> bool:
        """A safety net for very wide rows: checkpoint when the write-ahead log has grown this large anyway."""
        return wal_bytes >= self.wal_threshold_bytes


def record_head(con: duckdb.DuckDBPyConnection, table: str, rows: int) -> None:
    """Inside the head's transaction: remember that ``rows`` rows of ``table`` await their tail."""
    con.execute("INSERT INTO batch_heads VALUES (?, ?, now()::TIMESTAMP_NS)", [table, rows])


def forget_heads(con: duckdb.DuckDBPyConnection) -> None:
    """Inside the tail's transaction: the head's rows are now part of a complete batch."""
    con.execute("DELETE FROM batch_heads")


def drop_orphaned_heads(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """Remove the rows of heads whose tail never committed; returns ``(table, rows)`` per head removed.

    Call it inside a transaction. Raises :class:`UnfinishedBatchError` if the
    table does not end with exactly the recorded rows, which would mean
    something other than the writer changed it; the caller's rollback then
    leaves everything in place.
    """
    heads = con.execute("SELECT table_name, row_count FROM batch_heads").fetchall()
    for table, rows in heads:
        if table not in ALIGNED_TABLES:
            raise UnfinishedBatchError(f"batch_heads names {table!r}, which is not a telemetry table")
        # A head is one append, so its rows have the table's highest, consecutive row ids.
        deleted = con.execute(
            f"DELETE FROM {table} WHERE rowid > (SELECT max(rowid) FROM {table}) - ?", [rows]
        ).fetchone()[0]
        if deleted != rows:
            raise UnfinishedBatchError(
                f"batch_heads says the last {rows} rows of {table} are an unfinished batch, "
                f"but only {deleted} rows matched; leaving them in place. Check the table, then "
                "DELETE FROM batch_heads to start anyway."
            )
    if heads:
        forget_heads(con)
    return heads
