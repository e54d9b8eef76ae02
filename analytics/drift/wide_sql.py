"""Every feature of a source in one scan: each row is read (and its JSON parsed) once, whatever the features.

A query per feature reads every row again for each feature. When features
are paths into a JSON attribute column, parsing that JSON once per feature
per row is where the time goes (52 features: 52 parses of every span). The
queries here compute all features' values in one projection of the source,
turn each row into one row per feature with ``unnest`` (``f``: the
feature's index in the list given, ``bin``, the numeric value ``v``) and
group by group x feature x bin::

    specs = [WideFeature("numeric", "fw_json[1]"), WideFeature("categorical", "fw_json[2]")]
    source = "(SELECT json_extract_string(attributes, ['$.a', '$.b']) AS fw_json, site FROM span_rows)"
    numeric_edges(read, specs, levels, source)        # {0: (edges...)}: exact quantiles, every numeric feature
    top_categories(read, specs, 20, source)           # {1: ("x", "y", ...)}
    sql = summaries_sql(specs, layouts, source, group_by=["site"])
    # columns g0 (site), f, bin, n, s1, s2, lo, hi: what profile_sql.summary_sql gives for one feature

An expression every feature uses (the JSON extraction above) goes into
``source``: it is then computed once per row, not once per feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from analytics.drift.profiles import Layout
from analytics.drift.quantiles import exact_quantiles_by_feature
from analytics.drift.sql_text import bin_sql, categorical_value_sql, double_literal, numeric_value_sql, run_read


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


def _unnested(features: Sequence[WideFeature], indices: Sequence[int], values: Sequence[str], typed: str,
              group_by: Sequence[str], extra: str = "") -> str:
    """``typed``'s rows as one row per feature of ``indices``: ``f`` and the unnested ``values`` (SQL per feature)."""
    groups = "".join(f"g{i}, " for i in range(len(group_by)))
    return (f"SELECT {groups}unnest([{', '.join(str(i) for i in indices)}]) AS f, "
            f"unnest([{', '.join(values)}]) AS v{extra} FROM ({typed})")


def numeric_edges(read, features: Sequence[WideFeature], levels: Sequence[float], source: str,
                  where: str | None = None, params: Mapping[str, Any] | None = None) -> dict[int, tuple[float, ...]]:
    """The exact quantiles at ``levels`` of every numeric feature (by index; empty when it has no value)."""
    numeric = [i for i, f in enumerate(features) if f.kind == "numeric"]
    if not numeric:
        return {}
    values = f"({_unnested(features, numeric, [f'v{i}' for i in numeric], _typed_sql(features, source, where, ()), ())})"
    return exact_quantiles_by_feature(read, values, numeric, levels, params)


def top_categories(read, features: Sequence[WideFeature], top_k: int, source: str, where: str | None = None,
                   params: Mapping[str, Any] | None = None) -> dict[int, tuple[str, ...]]:
    """Every categorical feature's ``top_k`` values by count (ties by value), by index."""
    indices = [i for i, f in enumerate(features) if f.kind == "categorical"]
    if not indices:
        return {}
    values = _unnested(features, indices, [f"v{i}" for i in indices], _typed_sql(features, source, where, ()), ())
    rows = run_read(read, f"SELECT f, v FROM (SELECT f, v, count(*) AS n FROM ({values}) WHERE v IS NOT NULL "
                          f"GROUP BY f, v) QUALIFY row_number() OVER (PARTITION BY f ORDER BY n DESC, v) <= "
                          f"{int(top_k)} ORDER BY f, n DESC, v", params)
    out: dict[int, list[str]] = {i: [] for i in indices}
    for f, v in rows:
        out[int(f)].append(str(v))
    return {i: tuple(v) for i, v in out.items()}


def summaries_sql(features: Sequence[WideFeature], layouts: Sequence[Layout], source: str, where: str | None = None,
                  group_by: Sequence[str] = ()) -> str:
    """One row per (group..., feature, bin): ``g0..gN``, ``f``, ``bin``, ``n``, ``s1``, ``s2``, ``lo``, ``hi``.

    As :func:`analytics.drift.profile_sql.summary_sql` for each feature, on ``layouts[f]``: ``s1``,
    ``s2`` the sums of ``x - shift`` and its square, ``lo``, ``hi`` min and max (NULL for categorical).
    """
    bins, numbers, shifted = [], [], []
    for i, (feature, layout) in enumerate(zip(features, layouts)):
        bins.append(bin_sql(layout.kind, f"v{i}", layout.edges, layout.categories))
        numeric = layout.kind == "numeric"
        numbers.append(f"v{i}" if numeric else "NULL::DOUBLE")
        shifted.append(f"(v{i} - {double_literal(layout.shift)})" if numeric else "NULL::DOUBLE")
    extra = f", unnest([{', '.join(bins)}]) AS bin, unnest([{', '.join(shifted)}]) AS x"
    rows = _unnested(features, range(len(features)), numbers, _typed_sql(features, source, where, group_by),
                     group_by, extra)
    groups = "".join(f"g{i}, " for i in range(len(group_by)))
    return (f"SELECT {groups}f, bin, count(*) AS n, fsum(x) AS s1, fsum(x * x) AS s2, min(v) AS lo, max(v) AS hi "
            f"FROM ({rows}) GROUP BY ALL")
