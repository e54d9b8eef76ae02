"""The jobs' DuckDB SQL as Spark SQL (analytics/engines/spark_sql.py), checked without starting Spark.

Spark runs the result in tests/test_engines_archive.py; here: every job
query transpiles with no DuckDB-only construct left, and each rewrite
says what it should.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from analytics.drift.references import EDGE_INFERENCES
from analytics.engines.inputs import engine_relations, marks_sql
from analytics.engines.spark_sql import to_spark
from analytics.rollups import DEVICE_HOUR_SQL, golden_signals_sql
from analytics.shadow.jobs import GROUND_TRUTH_SQL, SHADOW_FLIPS_SQL, SHADOW_SQL
from analytics.slo.sli_job import event_sli_sql
from analytics.slo.spec import load_slo_file
from tests.engines_data import SAMPLE_SLOS

DUCKDB_ONLY = ("EPOCH_NS", "MAKE_TIMESTAMP_NS", "QUALIFY", "BY NAME", "FSUM", "ISFINITE", "UNNEST", "UBIGINT",
               "HUGEINT", "INT128", "MATERIALIZED", "UNIX_TIMESTAMP", "JSON_TYPE")

JOB_SQL = {
    "rollup_minute": golden_signals_sql("minute"),
    "device_hour": DEVICE_HOUR_SQL,
    "slo_sli_minute": event_sli_sql([s for s in load_slo_file(SAMPLE_SLOS) if s.sli.kind != "freshness"]),
    "shadow_hour": SHADOW_SQL,
    "shadow_flips_hour": SHADOW_FLIPS_SQL,
    "ground_truth_hour": GROUND_TRUTH_SQL,
    "ingest_marks": marks_sql(),
}


class Anything(dict):
    """Every parameter a job passes: a time, an integer or a list, as the name says."""

    def __missing__(self, name: str):
        if name.startswith(("lo", "hi")) or name.endswith(("_s",)):
            return 1
        return ["x"] if name in ("models", "minutes") else datetime(2026, 11, 3)


@pytest.mark.parametrize("name", sorted(JOB_SQL))
def test_job_sql_transpiles_without_duckdb_only_constructs(name):
    sql = JOB_SQL[name]
    params = Anything()
    spark = to_spark(sql, {p: params[p] for p in _parameters(sql)})
    left = [word for word in DUCKDB_ONLY if word in spark.upper()]
    assert not left, f"{name}: {left} left in\n{spark}"


def _parameters(sql: str) -> set[str]:
    import re

    return set(re.findall(r"\$([a-z_]+)", sql))


def test_nanosecond_times_pass_through_exact_microseconds():
    spark = to_spark("SELECT make_timestamp_ns(epoch_ns(t) - o) FROM span_rows")
    # Parenthesised: DIV binds tighter than minus.
    assert "TIMESTAMP_MICROS(((UNIX_MICROS(CAST(t AS TIMESTAMP)) * 1000) - o) DIV 1000)" in spark


def test_epoch_keeps_the_fraction_of_a_second_and_parameters_become_exact_literals():
    spark = to_spark("SELECT epoch(t) - $x AS s WHERE t >= $start",
                     {"x": 0.1, "start": datetime(2026, 11, 3, 1, 2, 3, 4)})
    assert "UNIX_MICROS(CAST(t AS TIMESTAMP)) / 1000000.0" in spark
    assert "CAST('0.1' AS DOUBLE)" in spark and "CAST('2026-11-03 01:02:03.000004' AS TIMESTAMP_NTZ)" in spark


def test_json_type_of_a_dotted_key_and_group_keys_with_nulls():
    spark = to_spark("""SELECT json_type(attributes, '$."' || k || '"') AS t,
                               to_json(struct_pack(site := site))::VARCHAR AS g FROM span_rows""")
    assert "SCHEMA_OF_VARIANT(VARIANT_GET(PARSE_JSON(attributes), CONCAT('$[\\'', k, '\\']')))" in spark
    assert "MAP('ignoreNullFields', 'false')" in spark


def test_a_missing_parameter_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\$start has no value"):
        to_spark("SELECT 1 FROM span_rows WHERE t >= $start", {})


def test_queries_are_routed_by_the_relations_they_read():
    assert engine_relations(JOB_SQL["shadow_hour"]) == {"span_rows"}
    assert engine_relations(f"SELECT * FROM span_rows WHERE {EDGE_INFERENCES}") == {"span_rows"}
    assert engine_relations("SELECT * FROM drift_references") == frozenset()
