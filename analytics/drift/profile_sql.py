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

:func:`profile_reference` and :func:`summarise_groups` read the source once
for every feature (:mod:`analytics.drift.wide_sql`: with JSON features that
is one parse per row instead of one per feature). The per-feature SQL
builders (:func:`reference_layout`, :func:`reference_layout_sql`,
:func:`summary_sql`) are public too, for callers that run them in their own
queries; they are the direct computation the one-scan path is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from analytics.drift.config import DriftConfig
from analytics.drift.profiles import Layout, Summary, quantile_levels, stable_float
from analytics.drift.quantiles import exact_quantiles
from analytics.drift.sql_text import (  # noqa: F401  (Read, quote_literal, MISSING_BIN: part of this module's API)
    MISSING_BIN, Read, bin_sql, categorical_value_sql, double_literal, numeric_value_sql, quote_identifier,
    quote_literal, run_read)
from analytics.drift.wide_sql import WideFeature, group_parts, numeric_edges, top_categories

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


def _where(where: str | None) -> str:
    return f" WHERE {where}" if where else ""


def reference_layout_sql(feature: FeatureSpec, config: DriftConfig, source: str, where: str | None = None) -> str:
    """SQL for the reference's layout: a FROM clause of the values ``v``, NULL when missing (numeric; its
    quantiles come from :func:`analytics.drift.quantiles.exact_quantiles`) or the top-K categories."""
    if feature.kind == "numeric":
        return f"(SELECT {numeric_value_sql(feature.sql)} AS v FROM {source}{_where(where)})"
    return (f"SELECT v, count(*) AS n FROM (SELECT {categorical_value_sql(feature.sql)} AS v FROM {source}"
            f"{_where(where)}) WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT {int(config.top_k)}")


def summary_sql(layout: Layout, expr: str, source: str, where: str | None = None,
                group_by: Sequence[str] = ()) -> str:
    """SQL summarising ``expr`` on ``layout``: one row per (group..., bin) with count and sums.

    Columns: ``g0..gN`` (the group_by expressions), ``bin`` (-1 missing; numeric: the bin index;
    categorical: the category's index, ``len(categories)`` for "other"), ``n``, ``s1``, ``s2``,
    ``lo``, ``hi`` (numeric sums of ``x - shift``, min, max; NULL for categorical).
    """
    groups = "".join(f"{g} AS g{i}, " for i, g in enumerate(group_by))
    group_cols = "".join(f"g{i}, " for i in range(len(group_by)))
    bin_expr = bin_sql(layout.kind, "v", layout.edges, layout.categories)
    if layout.kind == "numeric":
        value = numeric_value_sql(expr)
        shifted = f"(v - {double_literal(layout.shift)})"
        stats = f"fsum({shifted}) AS s1, fsum({shifted} * {shifted}) AS s2, min(v) AS lo, max(v) AS hi"
    else:
        value = categorical_value_sql(expr)
        stats = "NULL::DOUBLE AS s1, NULL::DOUBLE AS s2, NULL::DOUBLE AS lo, NULL::DOUBLE AS hi"
    return (f"SELECT {group_cols}{bin_expr} AS bin, count(*) AS n, {stats} "
            f"FROM (SELECT {groups}{value} AS v FROM {source}{_where(where)}) GROUP BY ALL")


def numeric_layout(name: str, edges: Sequence[float], levels: Sequence[float]) -> Layout:
    """A numeric layout on the reference's quantile ``edges`` at ``levels`` (no edges: no value)."""
    probs = tuple(levels) if edges else ()
    shift = edges[probs.index(0.5)] if 0.5 in probs else edges[len(edges) // 2] if edges else 0.0
    return Layout(name, "numeric", edges=tuple(edges), probs=probs, shift=shift)


def reference_layout(read, feature: FeatureSpec, config: DriftConfig, source: str, where: str | None = None,
                     params: Mapping[str, Any] | None = None) -> Layout:
    """The reference's layout for ``feature`` (empty when the reference has no value of it)."""
    if feature.kind == "numeric":
        levels = quantile_levels(config.fine_bins)
        return numeric_layout(feature.name, exact_quantiles(read, reference_layout_sql(feature, config, source, where),
                                                            levels, params), levels)
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
    """Profile every feature of the reference once: ``{name: Summary}`` on the reference's own layouts.

    Every feature in the same few scans of ``source`` (:mod:`analytics.drift.wide_sql`): its layouts
    (quantiles, top categories), then the summaries on them.
    """
    config = (config or DriftConfig()).validate()
    wide = [WideFeature(f.kind, f.sql) for f in features]
    levels = quantile_levels(config.fine_bins)
    edges = numeric_edges(read, wide, levels, source, where, params)
    categories = top_categories(read, wide, config.top_k, source, where, params)
    layouts = {f.name: numeric_layout(f.name, edges[i], levels) if f.kind == "numeric"
               else Layout(f.name, "categorical", categories=categories[i]) for i, f in enumerate(features)}
    found = _summarise_wide(read, layouts, {f.name: f.sql for f in features}, source, where, params, ())
    return found.get((), {name: Summary(layout, (0,) * layout.bins) for name, layout in layouts.items()})


def summarise_groups(read, source: str, reference: Mapping[str, Summary], exprs: Mapping[str, str] | None = None,
                     where: str | None = None, params: Mapping[str, Any] | None = None,
                     group_by: Sequence[str] = ()) -> dict[tuple, dict[str, Summary]]:
    """Summaries of the current data on the reference's layouts, per group: ``{group: {name: Summary}}``.

    ``exprs`` maps feature names to SQL expressions (default: the column of the same name).
    A group without any row for a feature gets an empty summary, so groups always hold every feature.
    All features are summarised in one scan of ``source`` (:func:`analytics.drift.wide_sql.summaries_sql`).
    """
    exprs = exprs or {}
    layouts = {name: profile.layout for name, profile in reference.items()}
    return _summarise_wide(read, layouts, {name: exprs.get(name, quote_identifier(name)) for name in reference},
                           source, where, params, group_by)


def summarise(read, source: str, reference: Mapping[str, Summary], exprs: Mapping[str, str] | None = None,
              where: str | None = None, params: Mapping[str, Any] | None = None) -> dict[str, Summary]:
    """The current data's summaries on the reference's layouts: ``{name: Summary}``."""
    groups = summarise_groups(read, source, reference, exprs, where, params)
    return groups.get((), {name: Summary(p.layout, (0,) * p.layout.bins) for name, p in reference.items()})


def _summarise_wide(read, layouts: Mapping[str, Layout], exprs: Mapping[str, str], source: str, where, params,
                    group_by: Sequence[str]) -> dict[tuple, dict[str, Summary]]:
    if not layouts:
        return {}
    wide = [WideFeature(layout.kind, exprs[name]) for name, layout in layouts.items()]
    groups = group_parts(read, wide, list(layouts.values()), source, where, params, group_by)
    return {key: {name: part.summary(layout) for (name, layout), part in zip(layouts.items(), parts)}
            for key, parts in groups.items()}
