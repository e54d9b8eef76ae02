"""SQL text and reads shared by the drift modules: quoting, exact DOUBLE literals, values and bins, rows from any reader."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

Read = Callable[[str, Any], Any]


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def double_literal(value: float) -> str:
    # A string cast is correctly rounded; a long decimal literal would be parsed as DECIMAL first.
    return f"{quote_literal(repr(float(value)))}::DOUBLE"


MISSING_BIN = -1


def numeric_value_sql(expr: str) -> str:
    """The feature as a DOUBLE, NULL when missing (NULL, NaN, +-inf, text that is not a number)."""
    value = f"TRY_CAST(({expr}) AS DOUBLE)"
    return f"CASE WHEN isfinite({value}) THEN {value} END"


def categorical_value_sql(expr: str) -> str:
    return f"CAST(({expr}) AS VARCHAR)"


def _search_sql(value: str, edges: Sequence[float], lo: int, hi: int) -> str:
    """Number of ``edges`` <= value, knowing ``edges[:lo]`` are: a binary search as nested CASEs (depth log2)."""
    if lo == hi:
        return str(lo)
    mid = (lo + hi) // 2
    return (f"CASE WHEN {value} < {double_literal(edges[mid])} THEN {_search_sql(value, edges, lo, mid)} "
            f"ELSE {_search_sql(value, edges, mid + 1, hi)} END")


def bin_sql(kind: str, value: str, edges: Sequence[float] = (), categories: Sequence[str] = ()) -> str:
    """The bin of ``value`` (an already typed value, NULL when missing) on a layout's edges or categories.

    -1 for missing; numeric: the number of edges <= value; categorical: the category's index,
    ``len(categories)`` for "other".
    """
    if kind == "numeric":
        return f"CASE WHEN {value} IS NULL THEN {MISSING_BIN} ELSE {_search_sql(value, edges, 0, len(edges))} END"
    other = len(categories)
    cases = " ".join(f"WHEN {quote_literal(c)} THEN {i}" for i, c in enumerate(categories))
    return (f"CASE WHEN {value} IS NULL THEN {MISSING_BIN} ELSE (CASE {value} {cases} ELSE {other} END) END"
            if cases else f"CASE WHEN {value} IS NULL THEN {MISSING_BIN} ELSE {other} END")


def run_read(read, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
    """Rows of ``sql`` from a DuckDB connection or a ``read(sql, params)`` callable."""
    if hasattr(read, "execute"):
        result = read.execute(sql, dict(params or {})).fetchall()
    else:
        result = read(sql, dict(params or {}))
    if isinstance(result, pa.Table):
        return list(zip(*(column.to_pylist() for column in result.columns)))
    return [tuple(row) for row in result]
