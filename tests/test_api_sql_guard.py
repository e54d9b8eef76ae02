"""Ad-hoc SQL guard: DuckDB's own parser decides, on the tree it would execute."""

import pytest

from analytics.api.sql_guard import SqlGuard, UnsafeSql

TABLES = {"spans", "devices", "metric_points"}


@pytest.fixture(scope="module")
def guard() -> SqlGuard:
    return SqlGuard(TABLES)


@pytest.mark.parametrize("sql", [
    "SELECT site, count(*) FROM spans GROUP BY ALL",
    "select * from main.spans limit 5",
    "WITH recent AS (SELECT * FROM spans) SELECT count(*) FROM recent",
    "with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select * from r",
    "SELECT d.device_id FROM devices d JOIN spans s USING (device_id)",
    "SELECT * FROM range(10)",
    "SELECT 1 UNION ALL SELECT 2",
    "DESCRIBE spans",
    "SELECT * FROM spans WHERE device_id IN (SELECT device_id FROM devices)",
])
def test_read_only_selects_pass_unchanged(guard, sql):
    assert guard.check(sql) == sql


@pytest.mark.parametrize("sql, reason", [
    ("INSERT INTO spans VALUES (1)", "only a read-only SELECT"),
    ("DELETE FROM spans", "only a read-only SELECT"),
    ("UPDATE devices SET site = 'x'", "only a read-only SELECT"),
    ("CREATE TABLE x (a INT)", "only a read-only SELECT"),
    ("DROP TABLE spans", "only a read-only SELECT"),
    ("COPY spans TO '/tmp/out.csv'", "only a read-only SELECT"),
    ("COPY (SELECT 1) TO '/tmp/out.parquet' (FORMAT parquet)", "only a read-only SELECT"),
    ("ATTACH '/tmp/other.duckdb' AS other", "only a read-only SELECT"),
    ("INSTALL httpfs", "only a read-only SELECT"),
    ("LOAD httpfs", "only a read-only SELECT"),
    ("SET threads = 1", "only a read-only SELECT"),
    ("PRAGMA version", "only a read-only SELECT"),
    ("CALL pragma_version()", "only a read-only SELECT"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("SELECT * FROM spans; DROP TABLE spans", "only a read-only SELECT"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT * FROM read_text('/etc/hostname')", "read_text"),
    ("SELECT * FROM spans WHERE EXISTS (SELECT * FROM read_blob('/etc/hostname'))", "read_blob"),
    ("SELECT * FROM glob('/*')", "glob"),
    ("SELECT * FROM query('SELECT 1')", "query"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings"),
    ("SELECT * FROM '/etc/passwd'", "unknown table"),
    ("SELECT * FROM 'data.parquet'", "unknown table"),
    ("SELECT * FROM information_schema.tables", "own tables"),
    ("SELECT * FROM other.main.spans", "own tables"),
    ("SELECT * FROM sqlite_master", "unknown table"),
    ("SELECT current_setting('threads')", "current_setting"),
    ("SELECT write_log('x')", "write_log"),
    # A CTE name is a table only inside the query that declares it: outside, DuckDB
    # would read a file of that name.
    ("SELECT * FROM (WITH \"/etc/passwd\" AS (SELECT 1) SELECT * FROM \"/etc/passwd\"), \"/etc/passwd\"",
     "unknown table"),
    ("", "empty"),
    ("SELEC 1", "cannot parse"),
])
def test_writes_escapes_and_file_access_are_refused(guard, sql, reason):
    with pytest.raises(UnsafeSql, match=reason):
        guard.check(sql)


def test_deeply_nested_query_is_checked_without_recursion_error(guard):
    inner = "SELECT * FROM read_text('/etc/hostname')"
    for _ in range(200):
        inner = f"SELECT * FROM ({inner})"
    with pytest.raises(UnsafeSql, match="read_text"):
        guard.check(inner)


def test_an_empty_table_set_is_a_programming_error():
    with pytest.raises(ValueError, match="at least one"):
        SqlGuard([])
