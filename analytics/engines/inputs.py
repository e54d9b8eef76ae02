"""What an engine reads from the Parquet archive: the raw relations the window jobs query, by their usual names.

The jobs' SQL reads ``span_rows`` and ``ingest_marks`` as it does in the
live file. Over an archive (docs/archive.md) an engine provides both:
``span_rows`` the archive's part files (the table's columns, nothing of
the hive path), ``ingest_marks`` derived from them once per run -- one row
per minute of corrected event time with the raw time bounds, which is all
the jobs use the marks for (finding data, pruning on raw time)::

    sql = marks_sql()          # DuckDB SQL over span_rows; the Spark engine runs its transpiled form
    engine_relations(query)    # {'span_rows'}: a query the engine answers, not the run's state

Every other table a job reads (its references, its stored hours) is the
run's own state, kept in DuckDB (:mod:`analytics.engines.run`).
"""

from __future__ import annotations

from functools import lru_cache

import sqlglot
from sqlglot import exp

from collector.store.marks import corrected_minute

#: Raw tables the window jobs read (the archive holds more; no job here reads them).
INPUT_TABLES = ("span_rows",)
MARKS_TABLE = "ingest_marks"
ENGINE_RELATIONS = frozenset((*INPUT_TABLES, MARKS_TABLE))


def marks_sql() -> str:
    """``ingest_marks`` of the archived spans, as the writer would have recorded them (one merged sequence)."""
    return (f"SELECT 0::BIGINT AS seq, 'span_rows' AS table_name, {corrected_minute('start_time')} AS minute, "
            "count(*)::BIGINT AS rows, min(start_time) AS min_time, max(start_time) AS max_time "
            "FROM span_rows GROUP BY ALL")


@lru_cache(maxsize=4096)
def engine_relations(sql: str) -> frozenset[str]:
    """The archive relations ``sql`` reads (empty: it reads only the run's state)."""
    tables = {t.name for t in sqlglot.parse_one(sql, read="duckdb").find_all(exp.Table)}
    return frozenset(tables & ENGINE_RELATIONS)
