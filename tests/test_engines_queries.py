"""How many queries an archive run sends its engine: few, and not one per small window.

On Spark each query costs about a second of planning and scheduling
whatever its size, so a job must not ask the engine once per hour (or per
minute) what one query grouped by window answers. Counted on the DuckDB
engine (no JVM needed; the routing is the same for every engine) over the
shipped sample's archive:

- the raw-time bounds every job looks up (queries of ``ingest_marks``
  alone) are answered by the run's state, never by the engine;
- the drift job's engine queries do not grow with the hours of the span:
  the versions of every hour come from one scan, and each version's
  summaries from one scan for all the hours its reference is in force.
"""

from __future__ import annotations

from datetime import datetime

from analytics.engines.duckdb_engine import DuckDBEngine
from analytics.engines.inputs import engine_relations

START = datetime(2026, 11, 3)


class CountingEngine(DuckDBEngine):
    """The DuckDB engine, keeping every query it is asked (the run's own state queries do not come here)."""

    def __init__(self, archive) -> None:
        super().__init__(archive)
        self.queries: list[str] = []

    def read(self, sql, params=None):
        self.queries.append(sql)
        return super().read(sql, params)


def _engine_queries(archive, tmp_path, jobs, hours: int) -> list[str]:
    from analytics.engines.run import archive_jobs, run_archive
    from analytics.slo.spec import load_slo_file
    from tests.engines_data import SAMPLE_SLOS

    engine = CountingEngine(archive)
    try:
        run_archive(engine, archive_jobs(load_slo_file(SAMPLE_SLOS), only=jobs), START,
                    START.replace(hour=hours), tmp_path / f"out-{hours}")
    finally:
        engine.close()
    return engine.queries


def test_marks_lookups_stay_out_of_the_engine(sample_archive, tmp_path):
    queries = _engine_queries(sample_archive, tmp_path, [], 2)
    assert queries, "the run sent its engine no query at all"
    marks_only = [q for q in queries if engine_relations(q) == {"ingest_marks"}]
    assert not marks_only, f"{len(marks_only)} ingest_marks lookups went to the engine, e.g. {marks_only[0][:200]}"


def test_drift_engine_queries_do_not_grow_with_the_hours(sample_archive, tmp_path):
    one, six = (_engine_queries(sample_archive, tmp_path / str(h), ["drift_hour"], h) for h in (1, 6))
    assert len(one) > 0
    assert len(six) == len(one), f"1 hour: {len(one)} engine queries, 6 hours: {len(six)}"
