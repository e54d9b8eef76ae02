"""Ingest marks: which minutes of event time each write touched, for late-data recomputes.

Analytics jobs work on windows of event time (skew-corrected device time).
A device that was offline uploads hours of telemetry at once, into windows
a job has already computed. So that a job recomputes exactly those windows,
the writer records, in the same transaction as the rows, one mark per
table and corrected minute that the batch touched::

    ingest_marks(seq, table_name, minute, rows, min_time, max_time)

``seq`` grows with every write (jobs remember the last one they looked
at); ``min_time`` / ``max_time`` bound the raw (uncorrected) time column
of the rows in that minute, which jobs use as a filter DuckDB can prune
row groups with (the corrected time is computed, so it cannot be pruned on).

Marks every job has seen are merged, once an hour, into one row per table
and minute (:func:`compact_marks`), so the table stays one row per minute
of history plus the recent writes.
"""

from __future__ import annotations

import duckdb

from collector.store.schema import corrected_time

MARKS_TABLE = """
CREATE TABLE IF NOT EXISTS ingest_marks (
    seq BIGINT NOT NULL,            -- the write's sequence number (merged history keeps the newest merged)
    table_name VARCHAR NOT NULL,    -- span_rows, metric_points, histogram_points, ...
    minute TIMESTAMP NOT NULL,      -- corrected event time, truncated to the minute (UTC)
    rows BIGINT NOT NULL,
    min_time TIMESTAMP_NS NOT NULL, -- raw time column bounds of those rows
    max_time TIMESTAMP_NS NOT NULL
)
"""

# The raw time column of each marked table (the one its rows are windowed by).
TIME_COLUMNS = {"span_rows": "start_time", "metric_points": "time", "histogram_points": "time"}


def corrected_minute(time_column: str) -> str:
    """SQL for the skew-corrected minute of a row."""
    return f"date_trunc('minute', {corrected_time(time_column)})::TIMESTAMP"


def record_marks(con: duckdb.DuckDBPyConnection, seq: int, table: str, source: str) -> None:
    """Mark the minutes that the rows of relation ``source`` (just appended to ``table``) touch."""
    column = TIME_COLUMNS[table]
    con.execute(
        f"INSERT INTO ingest_marks SELECT ?, ?, {corrected_minute(column)} AS m, count(*), "
        f"min({column}), max({column}) FROM {source} GROUP BY m", [seq, table])


def next_seq(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT coalesce(max(seq), 0) + 1 FROM ingest_marks").fetchone()[0]


def backfill_marks(con: duckdb.DuckDBPyConnection) -> None:
    """Marks for rows written before marks existed (a file from an older fleetwatch), as history."""
    for table in TIME_COLUMNS:
        record_marks(con, 0, table, table)


def compact_marks(con: duckdb.DuckDBPyConnection, up_to_seq: int) -> None:
    """Merge marks with ``seq <= up_to_seq`` into one row per table and minute, numbered ``up_to_seq``.

    Keeping the number (not 0) keeps the sequence growing across restarts,
    so a job that has seen ``up_to_seq`` never mistakes a new write for an
    old one. Call it inside a transaction: the merged rows replace the old
    ones at once.
    """
    if up_to_seq <= 0:
        return
    con.execute(
        "CREATE TEMP TABLE merged_marks AS SELECT ?::BIGINT AS seq, table_name, minute, sum(rows)::BIGINT AS rows, "
        "min(min_time) AS min_time, max(max_time) AS max_time FROM ingest_marks WHERE seq <= ? "
        "GROUP BY table_name, minute", [up_to_seq, up_to_seq])
    try:
        con.execute("DELETE FROM ingest_marks WHERE seq <= ?", [up_to_seq])
        con.execute("INSERT INTO ingest_marks SELECT * FROM merged_marks")
    finally:
        con.execute("DROP TABLE merged_marks")


def raw_time_bounds(table: str) -> str:
    """SQL (parameters $start, $end) for the raw time range of ``table``'s rows in a corrected-time span."""
    return (f"SELECT epoch_ns(min(min_time)) AS lo, epoch_ns(max(max_time)) AS hi FROM ingest_marks "
            f"WHERE table_name = '{table}' AND minute >= $start AND minute < $end")
