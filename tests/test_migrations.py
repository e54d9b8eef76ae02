"""Versioned migrations: a file made by an older fleetwatch, migrated, has exactly the schema of a fresh one."""

from __future__ import annotations

import pytest

from analytics.schema import ANALYTICS
from collector.store.files import open_database
from collector.store.migrations import Migrations, SchemaError, migrate
from collector.store.versions import COLLECTOR

SCHEMA = """
    SELECT table_name, column_index, column_name, data_type, is_nullable, column_default
    FROM duckdb_columns() WHERE database_name = current_database() ORDER BY ALL
"""
VIEWS = "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY ALL"
CONSTRAINTS = ("SELECT table_name, constraint_type, constraint_column_names FROM duckdb_constraints() "
               "WHERE database_name = current_database() ORDER BY ALL")


def schema(path) -> tuple:
    con = open_database(str(path), read_only=True)
    try:
        return tuple(con.sql(q).fetchall() for q in (SCHEMA, VIEWS, CONSTRAINTS))
    finally:
        con.close()


@pytest.mark.parametrize("collector_at, analytics_at", [
    (v, a) for v in range(1, COLLECTOR.latest + 1) for a in range(0, ANALYTICS.latest + 1)
    if (v, a) != (COLLECTOR.latest, ANALYTICS.latest)])
def test_an_older_file_migrated_equals_a_fresh_one(tmp_path, collector_at, analytics_at):
    old, fresh = tmp_path / "old.duckdb", tmp_path / "fresh.duckdb"
    con = open_database(str(old))
    owners = [Migrations("collector", COLLECTOR.steps[:collector_at])]
    if analytics_at:
        owners.append(Migrations("analytics", ANALYTICS.steps[:analytics_at]))
    assert migrate(con, owners) == {o.owner: o.latest for o in owners}
    assert migrate(con, [COLLECTOR, ANALYTICS]) == {"collector": COLLECTOR.latest, "analytics": ANALYTICS.latest}
    con.close()
    con = open_database(str(fresh))
    migrate(con, [COLLECTOR, ANALYTICS])
    con.close()
    assert schema(old) == schema(fresh)


def test_a_file_from_a_newer_fleetwatch_is_refused_by_name(tmp_path):
    con = open_database(str(tmp_path / "new.duckdb"))
    migrate(con, [COLLECTOR, ANALYTICS])
    con.execute("INSERT INTO schema_migrations (owner, version, description) VALUES ('analytics', ?, 'future')",
                [ANALYTICS.latest + 1])
    with pytest.raises(SchemaError, match=rf"analytics schema is version {ANALYTICS.latest + 1}, newer"):
        migrate(con, [COLLECTOR, ANALYTICS])
    con.close()
