"""Summaries computed in DuckDB SQL: no row of the data comes into Python, only ~100 rows per feature.

``read`` is a DuckDB connection or a callable ``read(sql, params)`` returning
a pyarrow Table or a list of tuples (the job framework's reader); ``source``
is a FROM-clause item (a table, a view, ``read_parquet('x.parquet')``) and
``where`` an optional condition with the caller's named parameters::

    features = [FeatureSpec("brightness", "numeric", "attributes ->> '$.\"ml.feature.brightness\"'"),
                FeatureSpec("lighting", "categorical", "attributes ->> '$.\"ml.feature.lighting\"'")]
    reference = profile_reference(con, "span_rows", features, DriftConfig(),
                                  where="start_time >= $start AND start_time < $end", params={...})
    current = summarise(con, "span_rows", reference, where=..., params=...)          # {name: Summary}
    by_site = summarise_groups(con, "span_rows", reference, group_by=["site"], ...)  # {(site,): {name: Summary}}

The SQL builders (:func:`reference_layout_sql`, :func:`summary_sql`) are
public too, for callers that run them in their own queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from analytics.drift.config import DriftConfig
from analytics.drift.profiles import Layout, Summary, quantile_levels, stable_float
from analytics.drift.quantiles import exact_quantiles
from analytics.drift.sql_text import Read, double_literal, quote_identifier, quote_literal, run_read  # noqa: F401

MISSING_BIN = -1


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its name, ``numeric`` or ``categorical``, and the SQL expression giving its value."""

    name: str
    kind: str
    expr: str | None = None  # default: the column of the same name

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"feature {self.name!r}: kind must be numeric or categorical, got {self.kind!r}")

    @property
    def sql(self) -> str:
        return self.expr if self.expr is not None else quote_identifier(self.name)


def numeric_value_sql(expr: str) -> str:
    """The feature as a DOUBLE, NULL when missing (NULL, NaN, +-inf, text that is not a number)."""
    value = f"TRY_CAST(({expr}) AS DOUBLE)"
    return f"CASE WHEN isfinite({value}) THEN {value} END"


def categorical_value_sql(expr: str) -> str:
    return f"CAST(({expr}) AS VARCHAR)"


def _where(where: str | None) -> str:
    return f" WHERE {where}" if where else ""


def reference_layout_sql(feature: FeatureSpec, config: DriftConfig, source: str, where: str | None = None) -> str:
    """SQL for the reference's layout: a FROM clause of the values ``v``, NULL when missing (numeric; its
    quantiles come from :func:`analytics.drift.quantiles.exact_quantiles`) or the top-K categories."""
    if feature.kind == "numeric":
        return f"(SELECT {numeric_value_sql(feature.sql)} AS v FROM {source}{_where(where)})"
    return (f"SELECT v, count(*) AS n FROM (SELECT {categorical_value_sql(feature.sql)} AS v FROM {source}"
            f"{_where(where)}) WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT {int(config.top_k)}")


def _bin_sql(value: str, edges: Sequence[float], lo: int, hi: int) -> str:
    """Number of ``edges`` <= value, knowing ``edges[:lo]`` are: a binary search as nested CASEs (depth log2)."""
    if lo == hi:
        return str(lo)
    mid = (lo + hi) // 2
    return (f"CASE WHEN {value} < {double_literal(edges[mid])} THEN {_bin_sql(value, edges, lo, mid)} "
            f"ELSE {_bin_sql(value, edges, mid + 1, hi)} END")


def summary_sql(layout: Layout, expr: str, source: str, where: str | None = None,
                group_by: Sequence[str] = ()) -> str:
    """SQL summarising ``expr`` on ``layout``: one row per (group..., bin) with count and sums.

    Columns: ``g0..gN`` (the group_by expressions), ``bin`` (-1 missing; numeric: the bin index;
    categorical: the category's index, ``len(categories)`` for "other"), ``n``, ``s1``, ``s2``,
    ``lo``, ``hi`` (numeric sums of ``x - shift``, min, max; NULL for categorical).
    """
    groups = "".join(f"{g} AS g{i}, " for i, g in enumerate(group_by))
    group_cols = "".join(f"g{i}, " for i in range(len(group_by)))
    if layout.kind == "numeric":
        value = numeric_value_sql(expr)
        bin_expr = f"CASE WHEN v IS NULL THEN {MISSING_BIN} ELSE {_bin_sql('v', layout.edges, 0, len(layout.edges))} END"
        shifted = f"(v - {double_literal(layout.shift)})"
        stats = f"fsum({shifted}) AS s1, fsum({shifted} * {shifted}) AS s2, min(v) AS lo, max(v) AS hi"
    else:
        value = categorical_value_sql(expr)
        cases = " ".join(f"WHEN {quote_literal(c)} THEN {i}" for i, c in enumerate(layout.categories))
        other = len(layout.categories)
        bin_expr = (f"CASE WHEN v IS NULL THEN {MISSING_BIN} ELSE (CASE v {cases} ELSE {other} END) END"
                    if cases else f"CASE WHEN v IS NULL THEN {MISSING_BIN} ELSE {other} END")
        stats = "NULL::DOUBLE AS s1, NULL::DOUBLE AS s2, NULL::DOUBLE AS lo, NULL::DOUBLE AS hi"
    return (f"SELECT {group_cols}{bin_expr} AS bin, count(*) AS n, {stats} "
            f"FROM (SELECT {groups}{value} AS v FROM {source}{_where(where)}) GROUP BY ALL")


def reference_layout(read, feature: FeatureSpec, config: DriftConfig, source: str, where: str | None = None,
                     params: Mapping[str, Any] | None = None) -> Layout:
    """The reference's layout for ``feature`` (empty when the reference has no value of it)."""
    if feature.kind == "numeric":
        levels = quantile_levels(config.fine_bins)
        edges = exact_quantiles(read, reference_layout_sql(feature, config, source, where), levels, params)
        probs = levels if edges else ()
        shift = edges[probs.index(0.5)] if 0.5 in probs else edges[len(edges) // 2] if edges else 0.0
        return Layout(feature.name, "numeric", edges=edges, probs=probs, shift=shift)
    rows = run_read(read, reference_layout_sql(feature, config, source, where), params)
    return Layout(feature.name, "categorical", categories=tuple(str(r[0]) for r in rows))


def summaries_from_rows(layout: Layout, rows: Sequence[tuple], groups: int = 0) -> dict[tuple, Summary]:
    """Fold :func:`summary_sql` rows into one :class:`Summary` per group (deterministic whatever the row order)."""
    by_group: dict[tuple, list[tuple]] = {}
    for row in rows:
        by_group.setdefault(tuple(row[:groups]), []).append(row[groups:])
    out = {}
    for key, bins in by_group.items():
        bins.sort(key=lambda r: r[0])
        counts = [0] * layout.bins
        missing = 0
        for b, n, *_ in bins:
            if b == MISSING_BIN:
                missing += int(n)
            else:
                counts[int(b)] += int(n)
        values = [r for r in bins if r[0] != MISSING_BIN]
        numeric = layout.kind == "numeric" and values
        out[key] = Summary(
            layout, tuple(counts), missing,
            stable_float(math.fsum(r[2] for r in values)) if numeric else 0.0,
            stable_float(math.fsum(r[3] for r in values)) if numeric else 0.0,
            min(r[4] for r in values) if numeric else None, max(r[5] for r in values) if numeric else None)
    return out


def profile_reference(read, source: str, features: Sequence[FeatureSpec], config: DriftConfig | None = None,
                      where: str | None = None, params: Mapping[str, Any] | None = None) -> dict[str, Summary]:
    """Profile every feature of the reference once: ``{name: Summary}`` on the reference's own layouts."""
    config = (config or DriftConfig()).validate()
    out = {}
    for feature in features:
        layout = reference_layout(read, feature, config, source, where, params)
        out[feature.name] = _summarise_one(read, layout, feature.sql, source, where, params, ())[()]
    return out


def summarise_groups(read, source: str, reference: Mapping[str, Summary], exprs: Mapping[str, str] | None = None,
                     where: str | None = None, params: Mapping[str, Any] | None = None,
                     group_by: Sequence[str] = ()) -> dict[tuple, dict[str, Summary]]:
    """Summaries of the current data on the reference's layouts, per group: ``{group: {name: Summary}}``.

    ``exprs`` maps feature names to SQL expressions (default: the column of the same name).
    A group without any row for a feature gets an empty summary, so groups always hold every feature.
    """
    exprs = exprs or {}
    out: dict[tuple, dict[str, Summary]] = {}
    for name, profile in reference.items():
        expr = exprs.get(name, quote_identifier(name))
        for key, summary in _summarise_one(read, profile.layout, expr, source, where, params, group_by).items():
            out.setdefault(key, {})[name] = summary
    for key, summaries in out.items():
        for name, profile in reference.items():
            summaries.setdefault(name, Summary(profile.layout, (0,) * profile.layout.bins))
    return out


def summarise(read, source: str, reference: Mapping[str, Summary], exprs: Mapping[str, str] | None = None,
              where: str | None = None, params: Mapping[str, Any] | None = None) -> dict[str, Summary]:
    """The current data's summaries on the reference's layouts: ``{name: Summary}``."""
    groups = summarise_groups(read, source, reference, exprs, where, params)
    return groups.get((), {name: Summary(p.layout, (0,) * p.layout.bins) for name, p in reference.items()})


def _summarise_one(read, layout: Layout, expr: str, source: str, where, params, group_by) -> dict[tuple, Summary]:
    rows = run_read(read, summary_sql(layout, expr, source, where, group_by), params)
    found = summaries_from_rows(layout, rows, len(group_by))
    if not group_by and () not in found:
        found[()] = Summary(layout, (0,) * layout.bins)
    return found
