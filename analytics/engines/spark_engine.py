"""The Spark engine: the window jobs' SQL on Apache Spark (local mode or a cluster) over the Parquet archive.

::

    engine = SparkEngine("/srv/archive", master="local[2]")              # or spark://host:7077
    table = engine.read("SELECT count(*) AS n FROM span_rows WHERE start_time >= $t", {"t": start})
    engine.close()                                                       # stops a session it started

Each query is the job's DuckDB SQL transpiled by
:func:`analytics.engines.spark_sql.to_spark`. ``span_rows`` is a temporary
view over ``ARCHIVE/span_rows`` (Spark's Parquet reader skips the
archive's hidden temporary files and ``_manifest.json``): the table's
columns, its nanosecond times (which Spark reads as epoch-nanosecond
integers) as microsecond timestamps. ``ingest_marks`` is computed once
and cached. Sessions are UTC and non-ANSI (NULL, not an error, for a bad
cast or a division by zero, as in DuckDB), without broadcast joins (the
jobs join raw spans, never a small table: :data:`SESSION_CONF`); in local
mode the driver binds 127.0.0.1 only and the web UI is off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from analytics.archive.layout import columns
from analytics.engines.inputs import INPUT_TABLES, MARKS_TABLE, marks_sql
from analytics.engines.spark_sql import to_spark
from collector.store.schema import DERIVED_COLUMNS, TABLES

#: Settings every session gets (a cluster's own defaults apply to the rest).
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.legacy.parquet.nanosAsLong": "true",   # TIMESTAMP_NS columns as epoch ns (BIGINT)
    "spark.sql.ansi.enabled": "false",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # No broadcast joins: a broadcast relation is collected to the driver, and every join of the jobs has raw
    # spans on both sides, which Spark's Parquet estimate (file bytes x projected width) takes for small. A day
    # of 2M spans broadcast shadow_hour's edges (its orphans' anti-join) and failed in a 1 GiB driver heap.
    "spark.sql.autoBroadcastJoinThreshold": "-1",
}
LOCAL_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}


def spark_session(master: str = "local[2]", shuffle_partitions: int = 4, conf: dict[str, str] | None = None):
    """A SparkSession for the jobs: ``master`` is ``local[N]`` or a cluster URL (``spark://host:7077``)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ValueError(f"the Spark engine needs pyspark: pip install 'fleetwatch[spark]' ({exc})") from None
    builder = SparkSession.builder.master(master).appName("fleetwatch-analytics")
    settings = {**SESSION_CONF, **(LOCAL_CONF if master.startswith("local") else {}),
                "spark.sql.shuffle.partitions": str(shuffle_partitions), **(conf or {})}
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("OFF")  # failures reach the caller as exceptions
    return session


class SparkEngine:
    """Window-job SQL on Spark over a Parquet archive (see the module docstring)."""

    name = "spark"
    # Jobs whose SQL has no Spark form yet, and why (run_archive refuses them by name): none today.
    unsupported_jobs: dict[str, str] = {}

    def __init__(self, archive: str | Path, *, master: str = "local[2]", spark: Any = None,
                 shuffle_partitions: int = 4, cache_inputs: bool = False, conf: dict[str, str] | None = None) -> None:
        self.archive = Path(archive)
        for table in INPUT_TABLES:  # before a JVM starts
            if not any((self.archive / table).glob("*/*/*.parquet")):
                raise ValueError(f"{self.archive / table}: no Parquet part files "
                                 f"(is {self.archive} a fleetwatch archive? docs/archive.md)")
        self._owns_session = spark is None
        self.spark = spark or spark_session(master, shuffle_partitions, conf)
        self._cached = []
        for table in INPUT_TABLES:
            frame = self._table(table)
            if cache_inputs:
                frame = frame.cache()
                self._cached.append(frame)
            frame.createOrReplaceTempView(table)
        marks = self.spark.sql(to_spark(marks_sql())).cache()
        self._cached.append(marks)
        marks.createOrReplaceTempView(MARKS_TABLE)

    def _table(self, table: str):
        path = self.archive / table
        nanos = {c.name for c in TABLES[table] + DERIVED_COLUMNS.get(table, []) if c.sql_type == "TIMESTAMP_NS"}
        frame = self.spark.read.option("basePath", str(path)).parquet(str(path))
        return frame.selectExpr(*(f"CAST(TIMESTAMP_MICROS({c} DIV 1000) AS TIMESTAMP_NTZ) AS {c}" if c in nanos
                                  else c for c in columns(table)))

    def read(self, sql: str, params: dict | None = None) -> pa.Table:
        from pyspark.errors import PySparkException

        try:
            return naive_utc(self.spark.sql(to_spark(sql, params)).toArrow())
        except PySparkException as exc:  # one line for the caller; Spark's own text runs to pages
            raise SparkQueryError(f"Spark: {str(exc).strip().splitlines()[0]}") from exc

    def close(self) -> None:
        for frame in self._cached:
            frame.unpersist()
        for name in (*INPUT_TABLES, MARKS_TABLE):
            self.spark.catalog.dropTempView(name)
        if self._owns_session:
            self.spark.stop()


class SparkQueryError(RuntimeError):
    """A query Spark refused or failed; the message is Spark's first line."""


def naive_utc(table: pa.Table) -> pa.Table:
    """Zoned timestamp columns as naive UTC, as the analytics tables store them (the values are already UTC)."""
    fields = [pa.field(f.name, pa.timestamp(f.type.unit), f.nullable)
              if pa.types.is_timestamp(f.type) and f.type.tz is not None else f for f in table.schema]
    return table.cast(pa.schema(fields)) if fields != list(table.schema) else table
