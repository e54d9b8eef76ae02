"""The jobs' DuckDB SQL as Spark SQL: sqlglot's transpiler plus the few rewrites it does not know, in one place.

The window jobs' SELECTs are written once, in DuckDB SQL (their single
definition); the Spark engine runs what this module makes of them::

    spark.sql(to_spark("SELECT epoch(t) FROM span_rows WHERE t >= $start", {"start": datetime(2026, 11, 2)}))
    # SELECT UNIX_MICROS(CAST(t AS TIMESTAMP)) / 1000000.0 FROM span_rows
    #   WHERE t >= CAST('2026-11-02 00:00:00' AS TIMESTAMP_NTZ)

``$name`` parameters become literals (exact: a float goes through its
``repr``). Beyond ``sqlglot.transpile(sql, read="duckdb", write="spark")``:

``epoch_ns(t)`` / ``make_timestamp_ns(n)``
    Spark timestamps hold microseconds; nanosecond columns of the archive
    are read as microsecond timestamps (see :mod:`analytics.engines.spark_engine`),
    and these two convert through microseconds. Windows are whole
    microseconds, so no row changes window; only nanosecond digits of
    output times (``device_hour.last_event_time``) are lost.
``epoch(t)``
    seconds with their fraction, as DuckDB's (sqlglot's ``UNIX_TIMESTAMP`` drops it).
``isfinite(x)``, ``fsum(x)``
    not NaN and not infinite; a plain ``SUM`` (profiles keep 12 significant digits of it).
``json_type(json, path)``
    the type of a JSON value via Spark's VARIANT: numbers answer ``DOUBLE``
    (enough for the callers, which test for a number), others their Spark name.
``len(list)``
    ``SIZE`` (Spark's ``LENGTH`` takes text only).
``WITH x AS MATERIALIZED``
    a plain CTE (DuckDB's planner hint).
``to_json(struct)``
    keeps NULL fields (Spark's default drops them; a group key must name every dimension).
unsigned and 128-bit integer casts
    ``BIGINT`` and ``DECIMAL(38, 0)``: Spark has neither; the loader casts results back.
``json_extract_string(json, [paths])``, ``json_type(json, [paths])``
    the list forms (one JSON parse for many paths): an ``ARRAY`` of one value
    per path, read from one ``FROM_JSON(json, 'MAP<STRING, STRING>')`` when
    every path is a top-level key (Spark evaluates the repeated parse once per
    row: common subexpression), else one ``GET_JSON_OBJECT`` per path.
``histogram(x, [boundaries])``
    DuckDB's bucket semantics with constant boundaries: a value counts under
    the first boundary at or above it (buckets are left-open, right-closed),
    a value above the last under the type's largest value (``Infinity`` for
    DOUBLE), an entry present only when it counts something; every boundary's
    entry is there (zero or not) once the group has a value, and the map is
    NULL when it has none. Built as a ``MAP`` of ``COUNT_IF(x <= b)``
    differences: one comparison per boundary and row, fine for the drift
    layouts' hundred-odd edges.
``list_position(list, x)``
    ``ARRAY_POSITION``, NULL (not 0) when absent.
``SELECT unnest(a) AS f, unnest(b) AS v``
    lists unnested side by side (the drift job's one row per feature):
    ``INLINE(ARRAYS_ZIP(a, b)) AS (f, v)``; Spark allows one generator per SELECT.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Mapping

import sqlglot
from sqlglot import exp

_NUMERIC_VARIANT = "^(TINYINT|SMALLINT|INT|BIGINT|FLOAT|DOUBLE|DECIMAL)"


def to_spark(sql: str, params: Mapping[str, Any] | None = None) -> str:
    """``sql`` (DuckDB, ``$name`` parameters) as one Spark SQL statement with ``params`` inlined."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    values = dict(params or {})
    # Parameters first: the rewrites below copy their arguments, parameters included.
    tree = tree.transform(lambda node: _parameter(node, values))
    # Innermost first: a rewrite copies its arguments, which must be rewritten already.
    for node in reversed(list(tree.walk(bfs=False))):
        replacement = _rewrite(node)
        if replacement is not node:
            if node is tree:
                tree = replacement
            else:
                node.replace(replacement)
    return tree.sql(dialect="spark")


def literal(value: Any) -> exp.Expression:
    """A Spark SQL literal for a query parameter."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return exp.Literal.number(value)
    if isinstance(value, float):
        # Through a string: a long decimal literal would be parsed as a DECIMAL first.
        return exp.cast(exp.Literal.string(repr(value)), "DOUBLE")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError(f"query parameters are naive UTC times, got {value!r}")
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), exp.DataType.Type.TIMESTAMPNTZ)
    if isinstance(value, date):
        return exp.cast(exp.Literal.string(value.isoformat()), "DATE")
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, (list, tuple)):
        return exp.Array(expressions=[literal(v) for v in value])
    raise ValueError(f"cannot pass a {type(value).__name__} to Spark SQL: {value!r}")


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    """``NAME(args)`` as written: sqlglot would rename or drop some Spark functions it knows (PARSE_JSON)."""
    return exp.Anonymous(this=name, expressions=list(args))


def _spark(template: str, **args: exp.Expression) -> exp.Expression:
    """A Spark expression from ``template``, its ``__name`` columns replaced by ``args``."""
    tree = sqlglot.parse_one(template, read="spark")
    return tree.transform(lambda n: args[n.name[2:]].copy()
                          if isinstance(n, exp.Column) and n.name.startswith("__") else n)


def _parameter(node: exp.Expression, params: dict) -> exp.Expression:
    if isinstance(node, (exp.Placeholder, exp.Parameter)):
        name = node.name
        if name not in params:
            raise ValueError(f"query parameter ${name} has no value")
        return literal(params[name])
    return node


def _rewrite(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Select):
        return _zipped_unnests(node)
    if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
        node.set("materialized", None)  # a hint for DuckDB's planner; Spark plans its own
        return node
    if isinstance(node, exp.TimeToUnix):
        return _spark("UNIX_MICROS(CAST(__t AS TIMESTAMP)) / 1000000.0", t=node.this)
    if isinstance(node, exp.Anonymous):
        name, args = node.name.lower(), node.expressions
        if name == "epoch_ns" and len(args) == 1:
            return _spark("(UNIX_MICROS(CAST(__t AS TIMESTAMP)) * 1000)", t=args[0])
        if name == "make_timestamp_ns" and len(args) == 1:
            # Integer division: exact, where a DOUBLE (53 bits) cannot hold epoch nanoseconds.
            return _spark("CAST(TIMESTAMP_MICROS((__n) DIV 1000) AS TIMESTAMP_NTZ)", n=args[0])
        if name == "isfinite" and len(args) == 1:
            return _spark("(NOT ISNAN(__x) AND ABS(__x) <> CAST('Infinity' AS DOUBLE))", x=args[0])
        if name == "fsum" and len(args) == 1:
            return exp.Sum(this=args[0])
        if name == "histogram" and len(args) == 2:
            return _histogram(args[0], args[1])
        if name == "list_position" and len(args) == 2:
            return _spark("NULLIF(ARRAY_POSITION(__l, __x), 0)", l=args[0], x=args[1])
        if name == "to_json" and len(args) == 1 and isinstance(args[0], exp.Struct):
            options = _call("MAP", exp.Literal.string("ignoreNullFields"), exp.Literal.string("false"))
            return _call("TO_JSON", args[0], options)
    if isinstance(node, exp.Length) and isinstance(node.this, exp.Array):
        return _call("SIZE", node.this)  # DuckDB's len() of a list
    if isinstance(node, exp.JSONExtractScalar) and isinstance(node.expression, exp.Array):
        return _json_values(node.this, node.expression.expressions)
    if isinstance(node, exp.JSONType):
        if isinstance(node.expression, exp.Array):
            return exp.Array(expressions=[_json_type(exp.JSONType(this=node.this.copy(), expression=path.copy()))
                                          for path in node.expression.expressions])
        return _json_type(node)
    if isinstance(node, exp.DataType):
        if node.this in (exp.DataType.Type.UBIGINT, exp.DataType.Type.UINT):
            return exp.DataType.build("BIGINT")
        if node.this in (exp.DataType.Type.INT128, exp.DataType.Type.UINT128):
            return exp.DataType.build("DECIMAL(38, 0)")
    return node


def _json_type(node: exp.JSONType) -> exp.Expression:
    path = node.expression
    # DuckDB's '$."' || key || '"' is Spark's '$[\'' || key || '\']' (a key may hold dots).
    if isinstance(path, exp.DPipe) and isinstance(path.this, exp.DPipe):
        head, key, tail = path.this.this, path.this.expression, path.expression
        if head.is_string and head.name == '$."' and tail.is_string and tail.name == '"':
            path = _call("CONCAT", exp.Literal.string("$['"), key, exp.Literal.string("']"))
    elif path.is_string and path.name.startswith('$."') and path.name.endswith('"'):
        path = exp.Literal.string("$['" + path.name[3:-1] + "']")
    kind = _call("SCHEMA_OF_VARIANT", _call("VARIANT_GET", _call("PARSE_JSON", node.this), path))
    return exp.Case(ifs=[exp.If(this=exp.RegexpLike(this=kind, expression=exp.Literal.string(_NUMERIC_VARIANT)),
                                true=exp.Literal.string("DOUBLE"))], default=kind.copy())


def _top_level_key(path: exp.Expression) -> str | None:
    """``k`` of a constant path ``$."k"`` or ``$.k`` (one key of the top-level object), else None."""
    if not path.is_string:
        return None
    text = path.name
    if text.startswith('$."') and text.endswith('"') and len(text) > 4 and '"' not in text[3:-1]:
        return text[3:-1]
    if text.startswith("$.") and text[2:].isidentifier():
        return text[2:]
    return None


def _json_values(json: exp.Expression, paths: list[exp.Expression]) -> exp.Expression:
    """``json_extract_string(json, [paths])``: the values as text (JSON text for objects and arrays)."""
    keys = [_top_level_key(p) for p in paths]
    if all(k is not None for k in keys):
        parsed = _call("FROM_JSON", json, exp.Literal.string("MAP<STRING, STRING>"))
        return exp.Array(expressions=[exp.Bracket(this=parsed.copy(), expressions=[exp.Literal.string(k)])
                                      for k in keys])
    return exp.Array(expressions=[exp.JSONExtractScalar(this=json.copy(), expression=p.copy()) for p in paths])


def _constant(node: exp.Expression) -> float | int:
    """The value of a constant boundary: a number, ``'x'::DOUBLE``, or either negated."""
    if isinstance(node, exp.Neg):
        return -_constant(node.this)
    if isinstance(node, exp.Paren):
        return _constant(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        return int(node.this) if node.this.lstrip("-").isdigit() else float(node.this)
    if isinstance(node, exp.Cast) and node.this.is_string and node.to.this == exp.DataType.Type.DOUBLE:
        return float(node.this.name)
    raise ValueError(f"histogram boundaries must be constants on Spark, got {node.sql(dialect='duckdb')}")


def _histogram(x: exp.Expression, boundaries: exp.Expression) -> exp.Expression:
    """DuckDB's ``histogram(x, boundaries)`` (module docstring) as a Spark MAP of counts."""
    if not isinstance(boundaries, exp.Array) or not boundaries.expressions:
        raise ValueError("histogram on Spark needs a non-empty list of constant boundaries")
    values = sorted(set(_constant(b) for b in boundaries.expressions))
    floats = any(isinstance(v, float) for v in values)
    key = (lambda v: literal(float(v))) if floats else exp.Literal.number
    # Above the last boundary: the type's largest value, as DuckDB keys it.
    overflow = literal(float("inf")) if floats else exp.Literal.number(2**31 - 1 if values[-1] < 2**31 else 2**63 - 1)
    at_or_below = [_spark("COUNT_IF(__x <= __b)", x=x, b=key(v)) for v in values]
    entries: list[exp.Expression] = []
    for i, v in enumerate(values):
        count = at_or_below[i] if i == 0 else exp.Sub(this=at_or_below[i], expression=at_or_below[i - 1].copy())
        entries += [key(v), count]
    entries += [overflow, exp.Sub(this=exp.Count(this=x.copy()), expression=at_or_below[-1].copy())]
    counts = _spark("MAP_FILTER(__m, (k, n) -> k <> __overflow OR n > 0)", m=_call("MAP", *entries),
                    overflow=overflow)
    return _spark("CASE WHEN COUNT(__x) > 0 THEN __counts END", x=x, counts=counts)


def _zipped_unnests(select: exp.Select) -> exp.Select:
    """``SELECT unnest(a) AS f, unnest(b) AS v ...`` as ``SELECT INLINE(ARRAYS_ZIP(a, b)) AS (f, v) ...``."""
    items = select.expressions
    if len(items) < 2 or not all(isinstance(i, exp.Alias) and isinstance(i.this, exp.Explode) for i in items):
        return select
    zipped = exp.Inline(this=exp.ArraysZip(expressions=[i.this.this.copy() for i in items]))
    select.set("expressions", [exp.Aliases(this=zipped, expressions=[exp.to_identifier(i.alias) for i in items])])
    return select
