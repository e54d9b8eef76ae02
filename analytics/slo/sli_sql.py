"""SQL shared by the SLI jobs: the SLI tables' columns, and one SLO's rows from a fine-grained intermediate.

Both SLI jobs (:mod:`analytics.slo.sli_job` for events,
:mod:`analytics.slo.freshness_job` for devices) first count, in one pass,
at the finest grain -- minute x the five dimensions -- a ``total`` and one
``good_<i>`` column per distinct good condition. Each SLO is then that
small intermediate filtered and summed over its own ``group_by``::

    conditions = GoodConditions()
    column = conditions.column_for("duration_ns <= 8500000")   # 'good_0'
    sql = slo_rows_sql(spec, "fine", column)                   # SELECT ... FROM fine WHERE ... GROUP BY ...

Every SLI table has the same columns (:func:`sli_table_ddl`), so the
evaluator sums either table the same way.
"""

from __future__ import annotations

from analytics.slo.spec import DIMENSIONS, SloSpec


def sli_table_ddl(table: str) -> str:
    """``window_start``, ``slo``, the five dimensions, ``group_key``, ``good``, ``total``."""
    dims = ", ".join(f"{d} VARCHAR" for d in DIMENSIONS)
    return (f"CREATE TABLE IF NOT EXISTS {table} (window_start TIMESTAMP NOT NULL, slo VARCHAR NOT NULL, {dims}, "
            "group_key VARCHAR NOT NULL, good UBIGINT NOT NULL, total UBIGINT NOT NULL)")


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


class GoodConditions:
    """Distinct good conditions, each one ``count(*) FILTER`` column of the intermediate; shared ones count once."""

    def __init__(self) -> None:
        self.conditions: list[str] = []

    def column_for(self, condition: str) -> str:
        if condition not in self.conditions:
            self.conditions.append(condition)
        return f"good_{self.conditions.index(condition)}"

    def counts_sql(self) -> str:
        """The intermediate's count columns: ``total`` (every row), then ``good_<i>`` per condition."""
        return ", ".join(["count(*) AS total",
                          *(f"count(*) FILTER (WHERE {c}) AS good_{i}" for i, c in enumerate(self.conditions))])


def slo_rows_sql(spec: SloSpec, source: str, good_column: str, where: str = "", total_column: str = "total") -> str:
    """One SLO's rows of an SLI table, from an intermediate ``source`` with ``total_column`` and ``good_column``.

    ``where`` selects the intermediate rows of the SLO's kind (a trusted SQL
    fragment); the spec's filters are added to it, and rows with no value for
    a ``group_by`` dimension are left out. Groups whose total is 0 get no
    row: no data, not a perfect minute.
    """
    dims = ", ".join(d if d in spec.group_by else f"NULL::VARCHAR AS {d}" for d in DIMENSIONS)
    group_key = ("to_json(struct_pack(" + ", ".join(f"{d} := {d}" for d in sorted(spec.group_by)) + "))::VARCHAR"
                 if spec.group_by else "'{}'")
    conditions = [where] if where else []
    conditions += [f"{d} IN ({', '.join(sql_string(v) for v in values)})" for d, values in spec.filters.items()]
    # A row without a value for a grouping dimension (a cloud shadow has no site) belongs to no group.
    conditions += [f"{d} IS NOT NULL" for d in spec.group_by]
    group_by = ", ".join(["window_start", *spec.group_by])
    return f"""
        SELECT window_start, {sql_string(spec.name)} AS slo, {dims}, {group_key} AS group_key,
               sum({good_column})::UBIGINT AS good, sum({total_column})::UBIGINT AS total
        FROM {source} {"WHERE " + " AND ".join(conditions) if conditions else ""}
        GROUP BY {group_by}
        HAVING sum({total_column}) > 0
    """
