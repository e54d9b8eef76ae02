"""Reading through the archive: views that are the hot table plus the archived hours pruned from it.

After a prune, ``span_rows_all`` (and ``metric_points_all``,
``histogram_points_all``, ``log_rows_all``, and ``spans_all`` /
``log_records_all`` shaped as ``spans`` / ``log_records``) are::

    SELECT ... FROM span_rows
    UNION ALL BY NAME
    SELECT ... FROM read_parquet('ARCHIVE/span_rows/*/*/*.parquet', hive_partitioning = true)
    WHERE <partition before the newest pruned hour's end> [AND filename NOT IN (parts still in the file)]

The views are replaced in the same transaction as the rows they stand in
for are deleted, so a reader sees each row once, before and after. The
partition condition is on ``date`` and ``hour`` only, so DuckDB skips the
archive's files without opening them; a named query gives its range on
``archive_date`` as well (:mod:`analytics.archive.reads`) so that a recent
range opens no archive file at all.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from analytics.archive import layout
from collector.store.schema import LOG_RECORDS_VIEW, SPANS_VIEW

#: archived table -> the view that reads it through the archive
ALL_VIEWS = {table: f"{table}_all" for table in layout.TIME_COLUMNS}
#: the collector's user-facing views over the raw tables, and their archive-reading twins
SHAPED_VIEWS = {"span_rows": ("spans", SPANS_VIEW, "spans_all"),
                "log_rows": ("log_records", LOG_RECORDS_VIEW, "log_records_all")}


#: The column of the archive-reading views that is the row's partition date in the archive, and a date
#: after every partition for the hot rows: a query's ``archive_date >= CAST($since AS DATE)`` skips the
#: archive's files before ``since`` unopened and keeps every hot row.
ARCHIVE_DATE = "archive_date"
HOT_DATE = "DATE '9999-12-31'"


def _shaped(table: str) -> str:
    name, sql, twin = SHAPED_VIEWS[table]
    out = sql.replace(f"VIEW {name} AS", f"VIEW {twin} AS").replace(
        f"\nFROM {table}\n", f",\n    {ARCHIVE_DATE}\nFROM {ALL_VIEWS[table]}\n")
    if out.count(twin) != 1 or ALL_VIEWS[table] not in out:
        raise AssertionError(f"the {name} view's text changed shape; cannot derive {twin}")
    return out


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def partition_before(end: datetime) -> str:
    """SQL on the hive columns: the partition's hour starts before ``end`` (a whole hour)."""
    day, hour = f"{end:%Y-%m-%d}", end.hour
    return f"(date < DATE '{day}' OR (date = DATE '{day}' AND hour < {hour}))"


def archive_relation(root: str | Path, table: str) -> str:
    """``read_parquet`` over one table of the archive, with its hive columns ``date`` (DATE) and ``hour``."""
    return (f"read_parquet({_quote(layout.table_glob(root, table))}, hive_partitioning = true, "
            "hive_types = {'date': DATE, 'hour': INTEGER}, filename = true)")


def refresh_views(con: duckdb.DuckDBPyConnection, root: str | Path, table: str) -> None:
    """(Re)create ``table``'s archive-reading views from the state in ``con`` (call it in the prune's transaction)."""
    root = Path(root).resolve()
    cols = ", ".join(layout.columns(table))
    boundary = con.execute("SELECT max(hour) FROM archive_parts WHERE table_name = ? AND pruned",
                           [table]).fetchone()[0]
    sql = f"CREATE OR REPLACE VIEW {ALL_VIEWS[table]} AS SELECT {cols}, {HOT_DATE} AS {ARCHIVE_DATE} FROM {table}"
    if boundary is not None:
        end = boundary + timedelta(hours=1)
        # Parts before the boundary whose rows the file still holds (an hour waiting for its late
        # rows to be archived) are left out: the file's copy is the one read.
        still_hot = [str(root / r[0]) for r in con.execute(
            "SELECT file FROM archive_parts WHERE table_name = ? AND hour < ? AND NOT pruned ORDER BY file",
            [table, end]).fetchall()]
        exclude = f" AND filename NOT IN ({', '.join(_quote(f) for f in still_hot)})" if still_hot else ""
        sql += (f" UNION ALL BY NAME SELECT {cols}, date AS {ARCHIVE_DATE} FROM {archive_relation(root, table)} "
                f"WHERE {partition_before(end)}{exclude}")
    con.execute(sql)
    if table in SHAPED_VIEWS:
        con.execute(_shaped(table))


def refresh_all_views(con: duckdb.DuckDBPyConnection, root: str | Path) -> None:
    for table in layout.TIME_COLUMNS:
        refresh_views(con, root, table)
