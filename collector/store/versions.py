"""The collector's schema versions (see :mod:`collector.store.migrations`)."""

from __future__ import annotations

import duckdb

from collector.store.schema import ddl
from collector.store.marks import MARKS_TABLE, backfill_marks
from collector.store.migrations import Migration, Migrations


def _add_marks(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(MARKS_TABLE)
    backfill_marks(con)


COLLECTOR = Migrations("collector", [
    # Idempotent (IF NOT EXISTS) so that files written before versioned
    # migrations existed take it as their version 1.
    Migration(1, "telemetry tables, devices, ingest_log, batch_heads, spans view", ddl()),
    Migration(2, "ingest_marks: the event-time minutes each write touched", _add_marks),
])
