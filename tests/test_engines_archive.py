"""The window jobs over the shipped sample's Parquet archive: Spark local mode and DuckDB give the same aggregates.

One archive (the sample exported by ``fleetwatch archive export``'s library),
three hours of Nov 3 (rollups, SLIs, shadow, ground truth, and drift against the
versions' pinned Nov 2 references, which each engine computes from the archive)
computed by ``fleetwatch analytics run`` on each engine:

- counts are equal to the last count, floating-point sums within 1e-9 relative,
  nanosecond output times within a microsecond (Spark's precision); drift's
  summaries to the count, its indices (PSI, KS, Wasserstein, JS, chi-square,
  p-values) within 1e-9 relative, its statuses and verdicts equal;
- the drift SQL's Spark rewrites (histogram buckets, JSON path lists, zipped
  unnests, list positions) give DuckDB's answers on edge cases;
- the DuckDB engine's output equals what the live jobs wrote into the file
  for the same windows;
- ``fleetwatch analytics load`` puts a run into a DuckDB file idempotently.
"""

from __future__ import annotations

import shutil
from datetime import datetime

import pytest

from tests.analytics_data import read
from tests.engines_data import SAMPLE_SLOS, compare_tables, run_cli, run_table, table_rows

# The module fixture runs both engines over the sample: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.spark, pytest.mark.timeout(2400)]

START, END = datetime(2026, 11, 3), datetime(2026, 11, 3, 3)
TABLES = ("rollup_minute", "rollup_hour", "device_hour", "slo_sli_minute", "shadow_hour", "shadow_flips_hour",
          "ground_truth_hour", "drift_summaries", "drift_results")
SPARK_TABLES = (*TABLES, "drift_references")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, sample_archive, spark):
    """``fleetwatch analytics run``'s library on the same three hours, on both engines (Spark: the test session)."""
    from analytics.engines.run import archive_jobs, run_archive
    from analytics.engines.spark_engine import SparkEngine
    from analytics.engines.duckdb_engine import DuckDBEngine
    from analytics.slo.spec import load_slo_file

    root = tmp_path_factory.mktemp("engines")
    jobs = archive_jobs(load_slo_file(SAMPLE_SLOS))
    out = {}
    engines = (("duckdb", DuckDBEngine(sample_archive)),
               ("spark", SparkEngine(sample_archive, spark=spark, cache_inputs=True)))
    for name, engine in engines:
        try:
            run_archive(engine, jobs, START, END, root / name)
        finally:
            engine.close()
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", SPARK_TABLES)
def test_spark_gives_the_duckdb_aggregates(outputs, name):
    duck, spark = run_table(outputs["duckdb"], name), run_table(outputs["spark"], name)
    assert duck, f"{name}: the DuckDB engine wrote no rows for {START} to {END}"
    compare_tables(name, duck, spark)


EDGE_CASES = """
    SELECT g, histogram(x, ['1.0'::DOUBLE, '2.0'::DOUBLE, '3.0'::DOUBLE]) AS h, histogram(k, [0, 1, 2]) AS c,
           histogram(x, [3.0, 1.0, 1.0]) AS unsorted, list_position(['a', 'b'], max(s)) AS p,
           list_position(['a', 'b'], 'z') AS absent
    FROM (VALUES ('a', 0.5, 0, 'a'), ('a', 1.0, 1, 'b'), ('a', 1.5, 1, 'a'), ('a', 3.0, 2, 'a'), ('a', 5.0, NULL, 'a'),
                 ('b', NULL, 7, 'z'), ('c', NULL, NULL, 'b')) AS t(g, x, k, s)
    GROUP BY g ORDER BY g"""

JSON_LISTS = """
    SELECT i, CASE WHEN t IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN 'number' WHEN t IS NOT NULL THEN 'other' END AS t, v
    FROM (
        SELECT unnest(range(3)) AS i, unnest(json_type(j, ['$."a.b"', '$.c', '$."d"'])) AS t,
               unnest(json_extract_string(j, ['$."a.b"', '$.c', '$."d"'])) AS v
        FROM (VALUES ('{"a.b": 1.5, "c": "x", "d": null}'), ('{"c": 2}')) AS r(j))
    ORDER BY ALL"""


@pytest.mark.parametrize("sql", [EDGE_CASES, JSON_LISTS], ids=["histogram-list_position", "json-lists-unnest"])
def test_spark_rewrites_of_the_drift_sql_give_duckdbs_answers(spark, sql):
    """A boundary value counts under its boundary, a value above the last under +inf (INT_MAX for integers),
    an empty entry of a boundary stays, a group without values is NULL; an absent path is NULL, a number's
    type a number (what the drift job asks of json_type)."""
    from analytics.engines.spark_engine import naive_utc
    from analytics.engines.spark_sql import to_spark
    from collector.store.files import open_database

    con = open_database(":memory:")
    try:
        duck = con.sql(sql).to_arrow_table().to_pylist()
    finally:
        con.close()
    theirs = naive_utc(spark.sql(to_spark(sql)).toArrow()).to_pylist()
    assert _maps_as_dicts(theirs) == _maps_as_dicts(duck)


def _maps_as_dicts(rows: list[dict]) -> list[dict]:
    """Arrow maps read as lists of pairs; their order is no part of their value."""
    return [{k: dict(v) if isinstance(v, list) and v and isinstance(v[0], tuple) else v for k, v in row.items()}
            for row in rows]


def test_no_job_query_broadcasts_raw_spans(sample_archive, spark):
    """Every join of the jobs has raw spans on both sides; a broadcast side is collected into the driver
    (a day of 2M spans broadcast shadow_hour's edges past a 1 GiB heap), so the plans join by shuffle."""
    import re

    from analytics.engines.spark_engine import SparkEngine
    from analytics.engines.spark_sql import to_spark
    from analytics.shadow.jobs import GROUND_TRUTH_SQL, SHADOW_FLIPS_SQL, SHADOW_SQL

    engine = SparkEngine(sample_archive, spark=spark)
    try:
        for sql in (SHADOW_SQL, SHADOW_FLIPS_SQL, GROUND_TRUTH_SQL):
            params = {name: START if name.startswith(("start", "end")) else 3600.0 if name.endswith("_s") else 0
                      for name in re.findall(r"\$([a-z_]+)", sql)}
            plan = spark.sql("EXPLAIN " + to_spark(sql, params)).collect()[0][0]
            assert "Join" in plan and "Broadcast" not in plan, plan
    finally:
        engine.close()


def test_duckdb_engine_equals_the_live_jobs(tmp_path, sample_db, outputs):
    """The live runner over the file gives, for the same windows, the rows the archive run wrote."""
    from analytics.engines.run import archive_jobs
    from analytics.jobs.framework import JobRunner
    from analytics.schema import ANALYTICS
    from analytics.slo.spec import load_slo_file
    from collector.store.database import Store
    from collector.store.versions import COLLECTOR

    db = tmp_path / "live.duckdb"
    shutil.copyfile(sample_db, db)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    try:
        jobs = archive_jobs(load_slo_file(SAMPLE_SLOS))
        runner = JobRunner(store, jobs)
        for job in jobs:
            # Due up to END exactly: the windows before it, nothing after.
            report = runner.run_due(job.name, END + job.delay)
            assert report.error is None, report.error
        for name in TABLES:
            live = table_rows(read(store, f"SELECT * FROM {name} WHERE window_start >= $start "
                                          "AND window_start < $end", {"start": START, "end": END}))
            archived = [r for r in run_table(outputs["duckdb"], name) if START <= r["window_start"] < END]
            compare_tables(name, live, archived, exact=True)
    finally:
        store.close()


def test_load_replaces_the_windows_of_a_run(tmp_path, outputs):
    db = tmp_path / "central.duckdb"
    for _ in range(2):  # twice: the same rows, once
        result = run_cli(["analytics", "load", "--db", str(db), "--from-dir", str(outputs["spark"])])
        assert result.returncode == 0, result.stderr
    from collector.store.files import open_database

    con = open_database(str(db))
    try:
        for name in ("rollup_hour", "slo_sli_minute", "shadow_hour"):
            loaded = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            assert loaded == len(run_table(outputs["spark"], name)) > 0, name
        watermarks = dict(con.execute("SELECT job, watermark FROM job_state").fetchall())
        assert watermarks["rollup_minute"] == END and watermarks["drift_hour"] == END
    finally:
        con.close()


def test_run_and_load_report_bad_input_in_one_line(tmp_path, sample_archive):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(["analytics", "run", "--engine", "spark", "--archive", str(empty), "--from",
                      "2026-11-03T00:00:00Z", "--to", "2026-11-03T01:00:00Z", "--out", str(tmp_path / "o")])
    assert result.returncode == 1 and "no Parquet part files" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = run_cli(["analytics", "run", "--archive", str(sample_archive), "--from", "2026-11-03T01:00:00Z",
                      "--to", "2026-11-03T00:00:00Z", "--out", str(tmp_path / "o")])
    assert result.returncode == 1 and "--from must be before --to" in result.stderr
    result = run_cli(["analytics", "load", "--db", str(tmp_path / "c.duckdb"), "--from-dir", str(empty)])
    assert result.returncode == 1 and "not the output of fleetwatch analytics run" in result.stderr
