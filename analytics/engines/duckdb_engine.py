"""The in-process engine: one DuckDB connection reading the archive's Parquet files.

::

    engine = DuckDBEngine("/srv/archive")
    table = engine.read("SELECT count(*) AS n FROM span_rows WHERE start_time >= $t", {"t": start})
    engine.close()

``span_rows`` is a view over ``ARCHIVE/span_rows/*/*/*.parquet`` (the
table's columns); ``ingest_marks`` a temporary table computed once
(:func:`analytics.engines.inputs.marks_sql`). The connection also holds
the analytics tables, so it serves as the run's state as well
(:attr:`state`).
"""

from __future__ import annotations

import glob
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics.archive.layout import columns, table_glob
from analytics.engines.inputs import INPUT_TABLES, MARKS_TABLE, marks_sql
from collector.store.files import open_database
from collector.store.schema import ddl


class DuckDBEngine:
    """Window-job SQL over a Parquet archive in this process (see the module docstring)."""

    name = "duckdb"

    def __init__(self, archive: str | Path, *, threads: int | None = None) -> None:
        self.archive = Path(archive)
        self.con = open_database(":memory:")
        if threads is not None:
            self.con.execute(f"SET threads = {int(threads)}")
        for table in INPUT_TABLES:
            pattern = table_glob(self.archive, table)
            if glob.glob(pattern):
                self.con.execute(f"CREATE VIEW {table} AS SELECT {', '.join(columns(table))} "
                                 f"FROM read_parquet({_literal(pattern)}, hive_partitioning = false)")
            else:  # an archive without this table yet: empty, as a fresh file would be
                for statement in ddl():
                    if statement.startswith((f"CREATE TABLE IF NOT EXISTS {table} ", f"ALTER TABLE {table} ")):
                        self.con.execute(statement)
        self.con.execute(f"CREATE TEMP TABLE {MARKS_TABLE} AS {marks_sql()}")

    @property
    def state(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def read(self, sql: str, params: dict | None = None) -> pa.Table:
        return self.con.sql(sql, params=params or None).to_arrow_table()

    def close(self) -> None:
        self.con.close()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
