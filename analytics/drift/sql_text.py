"""SQL text and reads shared by the drift modules: quoting, exact DOUBLE literals, rows from any reader."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import pyarrow as pa

Read = Callable[[str, Any], Any]


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def double_literal(value: float) -> str:
    # A string cast is correctly rounded; a long decimal literal would be parsed as DECIMAL first.
    return f"{quote_literal(repr(float(value)))}::DOUBLE"


def run_read(read, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
    """Rows of ``sql`` from a DuckDB connection or a ``read(sql, params)`` callable."""
    if hasattr(read, "execute"):
        result = read.execute(sql, dict(params or {})).fetchall()
    else:
        result = read(sql, dict(params or {}))
    if isinstance(result, pa.Table):
        return list(zip(*(column.to_pylist() for column in result.columns)))
    return [tuple(row) for row in result]
