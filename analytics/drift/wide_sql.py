"""Every feature of a source in one scan: each row is read (and its JSON parsed) once, whatever the features.

A query per feature reads every row again for each feature. When features
are paths into a JSON attribute column, parsing that JSON once per feature
per row is where the time goes (52 features: 52 parses of every span). The
queries here compute all features' values in one projection of the source
and aggregate every feature per group at once (the layouts' bins by
``histogram`` with boundaries, a binary search); the reference's quantiles
and categories unnest each row into one row per feature (``f``: its index
in the list given, ``v``: its value)::

    specs = [WideFeature("numeric", "fw_json[1]"), WideFeature("categorical", "fw_json[2]")]
    source = "(SELECT json_extract_string(attributes, ['$.a', '$.b']) AS fw_json, site FROM span_rows)"
    numeric_edges(read, specs, levels, source)        # {0: (edges...)}: exact quantiles, every numeric feature
    top_categories(read, specs, 20, source)           # {1: ("x", "y", ...)}
    parts = group_parts(read, specs, layouts, source, group_by=["site"])   # {("atl",): [Parts, Parts]}
    parts[("atl",)][0].summary(layouts[0])                                 # a Summary

An expression every feature uses (the JSON extraction above) goes into
``source``: it is then computed once per row, not once per feature.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from analytics.drift.profiles import Layout, Summary, stable_float
from analytics.drift.quantiles import exact_quantiles_by_feature
from analytics.drift.sql_text import (categorical_value_sql, double_literal, numeric_value_sql, quote_literal,
                                      run_read)


@dataclass(frozen=True)
class WideFeature:
    """One feature of a one-scan query: ``numeric`` or ``categorical`` and its SQL expression over the source."""

    kind: str
    expr: str


def _where(where: str | None) -> str:
    return f" WHERE {where}" if where else ""


def _typed_sql(features: Sequence[WideFeature], source: str, where: str | None, group_by: Sequence[str]) -> str:
    """One row per source row: the groups ``g0..`` and every feature's typed value ``v0..`` (NULL: missing)."""
    columns = [f"{g} AS g{i}" for i, g in enumerate(group_by)]
    columns += [f"{numeric_value_sql(f.expr) if f.kind == 'numeric' else categorical_value_sql(f.expr)} AS v{i}"
                for i, f in enumerate(features)]
    return f"SELECT {', '.join(columns)} FROM {source}{_where(where)}"


def _unnested(indices: Sequence[int], typed: str) -> str:
    """``typed``'s rows as one row per feature of ``indices``: ``f`` (its index) and its value ``v``."""
    return (f"SELECT unnest([{', '.join(str(i) for i in indices)}]) AS f, "
            f"unnest([{', '.join(f'v{i}' for i in indices)}]) AS v FROM ({typed})")


def numeric_edges(read, features: Sequence[WideFeature], levels: Sequence[float], source: str,
                  where: str | None = None, params: Mapping[str, Any] | None = None) -> dict[int, tuple[float, ...]]:
    """The exact quantiles at ``levels`` of every numeric feature (by index; empty when it has no value)."""
    numeric = [i for i, f in enumerate(features) if f.kind == "numeric"]
    if not numeric:
        return {}
    values = f"({_unnested(numeric, _typed_sql(features, source, where, ()))})"
    return exact_quantiles_by_feature(read, values, numeric, levels, params)


def top_categories(read, features: Sequence[WideFeature], top_k: int, source: str, where: str | None = None,
                   params: Mapping[str, Any] | None = None) -> dict[int, tuple[str, ...]]:
    """Every categorical feature's ``top_k`` values by count (ties by value), by index."""
    indices = [i for i, f in enumerate(features) if f.kind == "categorical"]
    if not indices:
        return {}
    values = _unnested(indices, _typed_sql(features, source, where, ()))
    rows = run_read(read, f"SELECT f, v FROM (SELECT f, v, count(*) AS n FROM ({values}) WHERE v IS NOT NULL "
                          f"GROUP BY f, v) QUALIFY row_number() OVER (PARTITION BY f ORDER BY n DESC, v) <= "
                          f"{int(top_k)} ORDER BY f, n DESC, v", params)
    out: dict[int, list[str]] = {i: [] for i in indices}
    for f, v in rows:
        out[int(f)].append(str(v))
    return {i: tuple(v) for i, v in out.items()}


def summaries_sql(features: Sequence[WideFeature], layouts: Sequence[Layout], source: str, where: str | None = None,
                  group_by: Sequence[str] = ()) -> str:
    """One row per group: ``g0..gN``, ``n`` (rows) and per feature ``i``: ``h{i}`` (a histogram MAP of its
    values' bins), ``c{i}`` (values), ``s{i}``, ``q{i}`` (sums of ``x - shift`` and of its square), ``lo{i}``,
    ``hi{i}`` (min, max; NULL for categorical). :func:`parts_from_row` reads it.

    No row is unnested and no CASE is evaluated per value: DuckDB's ``histogram(x, boundaries)`` bins by
    binary search. It counts ``x`` under the first boundary >= x; a layout's bin is the number of edges <= x,
    so it is given ``-x`` and the negated edges (a value below every edge lands in the overflow bucket:
    bin 0). Categorical values become their category's index (``list_position``), "other" past the last,
    counted on the boundaries ``[0, ..., len(categories)]``. Only constant boundaries: the Spark engine
    runs this SQL too (:mod:`analytics.engines.spark_sql`).
    """
    columns = [f"g{i}" for i in range(len(group_by))] + ["count(*) AS n"]
    for i, layout in enumerate(layouts):
        v = f"v{i}"
        if layout.kind == "numeric":
            bounds = ", ".join(double_literal(-e) for e in sorted(set(layout.edges), reverse=True))
            x = f"({v} - {double_literal(layout.shift)})"
            columns += [f"histogram(-{v}, [{bounds}]) AS h{i}" if bounds else f"NULL AS h{i}",
                        f"count({v}) AS c{i}", f"fsum({x}) AS s{i}", f"fsum({x} * {x}) AS q{i}",
                        f"min({v}) AS lo{i}", f"max({v}) AS hi{i}"]
        else:
            names = ", ".join(quote_literal(c) for c in layout.categories)
            position = (f"coalesce(list_position([{names}], {v}) - 1, {len(layout.categories)})" if names
                        else str(len(layout.categories)))
            # Every position a boundary: the same counts, and constant buckets an engine without a histogram
            # of arbitrary keys (Spark) can count.
            positions = ", ".join(str(p) for p in range(len(layout.categories) + 1))
            columns += [f"histogram(CASE WHEN {v} IS NOT NULL THEN {position} END, [{positions}]) AS h{i}",
                        f"count({v}) AS c{i}",
                        *(f"NULL::DOUBLE AS {c}{i}" for c in ("s", "q", "lo", "hi"))]
    group = f" GROUP BY {', '.join(f'g{i}' for i in range(len(group_by)))}" if group_by else ""
    return f"SELECT {', '.join(columns)} FROM ({_typed_sql(features, source, where, group_by)}){group}"


@dataclass
class Parts:
    """One feature's raw aggregates in one group (sums not rounded yet): what groups add up to a Summary."""

    counts: list[int]
    missing: int
    sums: list[float]
    squares: list[float]
    minimum: float | None
    maximum: float | None

    def add(self, other: "Parts") -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.missing += other.missing
        self.sums += other.sums
        self.squares += other.squares
        self.minimum = _extreme(min, self.minimum, other.minimum)
        self.maximum = _extreme(max, self.maximum, other.maximum)

    def summary(self, layout: Layout) -> Summary:
        numeric = layout.kind == "numeric" and sum(self.counts) > 0
        return Summary(layout, tuple(self.counts), self.missing,
                       stable_float(math.fsum(self.sums)) if numeric else 0.0,
                       stable_float(math.fsum(self.squares)) if numeric else 0.0,
                       self.minimum if numeric else None, self.maximum if numeric else None)


def _extreme(pick, a, b):
    return b if a is None else a if b is None else pick(a, b)


def group_parts(read, features: Sequence[WideFeature], layouts: Sequence[Layout], source: str,
                where: str | None = None, params: Mapping[str, Any] | None = None,
                group_by: Sequence[str] = ()) -> dict[tuple, list[Parts]]:
    """Run :func:`summaries_sql`: ``{group values: [Parts of each feature]}``, one scan of ``source``."""
    below = [_edges_at_or_below(layout.edges) for layout in layouts]
    rows = run_read(read, summaries_sql(features, layouts, source, where, group_by), params)
    out = {}
    for row in rows:
        groups, n, cells = tuple(row[:len(group_by)]), int(row[len(group_by)]), row[len(group_by) + 1:]
        out[groups] = [_parts(layout, below[i], n, *cells[6 * i:6 * i + 6]) for i, layout in enumerate(layouts)]
    return out


def _parts(layout: Layout, below: dict[float, int], rows: int, histogram, values, sums, squares, lo, hi) -> Parts:
    counts = [0] * layout.bins
    items = histogram.items() if isinstance(histogram, dict) else histogram or ()
    for key, n in items:
        if layout.kind == "categorical":
            counts[int(key)] += int(n)
        else:  # the overflow bucket (+inf) holds values below every edge
            counts[0 if math.isinf(key) else below[-key]] += int(n)
    values = int(values or 0)
    if layout.kind == "numeric" and not layout.edges:
        counts[0] = values
    numeric = layout.kind == "numeric" and values > 0
    return Parts(counts, rows - values, [sums] if numeric else [], [squares] if numeric else [],
                 lo if numeric else None, hi if numeric else None)


def _edges_at_or_below(edges: Sequence[float]) -> dict[float, int]:
    """``{edge: number of edges <= it}``: the bin of a value whose greatest edge at or below it is ``edge``."""
    return {e: bisect.bisect_right(edges, e) for e in edges}
