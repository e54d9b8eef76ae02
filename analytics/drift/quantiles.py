"""Exact reference quantiles in DuckDB with memory that does not grow with the number of rows.

``quantile_cont`` (and a sort) hold every value of a column; at 4M rows
that is what dominates a profile's memory. Here order statistics are found
by zooming instead, each step a streaming scan:

1. count, min and max of the values;
2. a histogram of 65,536 equal-width buckets between min and max: the
   cumulative counts say which bucket holds each wanted position;
3. the values of just those buckets are ranked (``row_number`` partitioned by
   bucket): about 110 buckets of n / 65,536 values each for smooth data.

A bucket still holding more than ``max_ranked`` values (a heavy point mass,
or far outliers squeezing everything into one bucket) is zoomed into the
same way with its own min and max; a bucket whose min equals its max needs
no ranking. Every step is exact and deterministic: the result equals
``numpy.quantile`` of the values (linear interpolation).

::

    edges = exact_quantiles(read, "(SELECT x AS v FROM t)", [0.0, 0.5, 1.0])   # NULLs are left out
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from analytics.drift.sql_text import double_literal as _double, run_read

BUCKETS = 65_536
MAX_RANKED = 200_000


def order_statistics(read, values: str, positions: Sequence[int], params: Mapping[str, Any] | None = None,
                     condition: str = "v IS NOT NULL", base: int = 0, max_ranked: int = MAX_RANKED) -> dict[int, float]:
    """``{position: value}`` of the sorted non-NULL values of ``values`` (a FROM clause with a column ``v``).

    ``condition`` restricts to a subset whose first value has overall position ``base`` (the zoom).
    """
    params = dict(params or {})
    count, lo, hi = run_read(read, f"SELECT count(v), min(v), max(v) FROM {values} WHERE {condition}", params)[0]
    if not count:
        return {}
    if lo == hi:
        return {p: float(lo) for p in positions}
    wanted = sorted({p - base for p in positions})
    if count <= max_ranked:
        return _ranked(read, values, condition, params, base, wanted)
    scale = BUCKETS / (hi - lo)
    bucket = f"least(floor((v - {_double(lo)}) * {_double(scale)})::BIGINT, {BUCKETS - 1})"
    rows = run_read(read, f"SELECT {bucket} AS b, count(*) FROM {values} WHERE {condition} GROUP BY b ORDER BY b",
                    params)
    targets: dict[int, tuple[int, list[int]]] = {}  # bucket -> (values before it, positions inside it)
    before, i = 0, 0
    for b, n in rows:
        while i < len(wanted) and wanted[i] < before + n:
            targets.setdefault(b, (before, []))[1].append(wanted[i] - before)
            i += 1
        before += n
    sizes = dict(rows)
    found: dict[int, float] = {}
    small = [b for b in targets if sizes[b] <= max_ranked]
    for b in targets:
        if b not in small:  # still too many values in one bucket: zoom into it
            start, inside = targets[b]
            found.update(order_statistics(read, values, [base + start + p for p in inside], params,
                                          f"{condition} AND {bucket} = {b}", base + start, max_ranked))
    if small:
        keys = [b * (count + 1) + p for b in small for p in targets[b][1]]
        params["fw_rank_keys"] = keys
        ranked = run_read(read, f"SELECT b, r, v FROM (SELECT {bucket} AS b, v, row_number() OVER "
                                f"(PARTITION BY {bucket} ORDER BY v) - 1 AS r FROM {values} WHERE {condition} "
                                f"AND list_contains({[*small]}, {bucket})) "
                                f"WHERE list_contains($fw_rank_keys, b * {count + 1} + r)", params)
        for b, r, v in ranked:
            found[base + targets[b][0] + r] = float(v)
    return found


def _ranked(read, values: str, condition: str, params: dict, base: int, wanted: list[int]) -> dict[int, float]:
    params = {**params, "fw_positions": wanted}
    rows = run_read(read, f"SELECT i, v FROM (SELECT v, row_number() OVER (ORDER BY v) - 1 AS i FROM {values} "
                          f"WHERE {condition}) WHERE list_contains($fw_positions, i)", params)
    return {base + int(i): float(v) for i, v in rows}


def quantile_positions(count: int, levels: Sequence[float]) -> list[int]:
    return sorted({p for q in levels for p in (math.floor((count - 1) * q), math.ceil((count - 1) * q))})


def interpolated_quantiles(values: Mapping[int, float], count: int, levels: Sequence[float]) -> tuple[float, ...]:
    """Quantiles by linear interpolation between order statistics, exactly as numpy's default ("linear")."""
    out = []
    for q in levels:
        h = (count - 1) * q
        lo, hi = values[math.floor(h)], values[math.ceil(h)]
        t = h - math.floor(h)
        diff = hi - lo
        out.append(hi - diff * (1 - t) if t >= 0.5 else lo + diff * t)
    return tuple(out)


def exact_quantiles(read, values: str, levels: Sequence[float], params: Mapping[str, Any] | None = None,
                    max_ranked: int = MAX_RANKED) -> tuple[float, ...]:
    """The quantiles of ``values`` at ``levels`` (empty when there is no value)."""
    count = run_read(read, f"SELECT count(v) FROM {values}", params)[0][0]
    if not count:
        return ()
    found = order_statistics(read, values, quantile_positions(count, levels), params, max_ranked=max_ranked)
    return interpolated_quantiles(found, count, levels)


def exact_quantiles_by_feature(read, values: str, features: Sequence[int], levels: Sequence[float],
                               params: Mapping[str, Any] | None = None,
                               max_ranked: int = MAX_RANKED) -> dict[int, tuple[float, ...]]:
    """:func:`exact_quantiles` of many features in a few scans of ``values`` (a FROM clause with ``f``, ``v``).

    The same steps, each for every feature at once (grouped or partitioned by ``f``): counts,
    minima and maxima; the ranks of features with at most ``max_ranked`` values; the buckets of the
    others; their wanted buckets' ranks. A bucket still too full is zoomed into feature by feature
    (:func:`order_statistics`). ``{feature: quantiles}``, empty for a feature without values.
    """
    params = dict(params or {})
    stats = {int(f): (n, lo, hi) for f, n, lo, hi in run_read(
        read, f"SELECT f, count(v), min(v), max(v) FROM {values} WHERE v IS NOT NULL GROUP BY f", params)}
    found: dict[int, dict[int, float]] = {}
    ranked, bucketed = [], []
    for f, (count, lo, hi) in stats.items():
        positions = quantile_positions(count, levels)
        if lo == hi:
            found[f] = {p: float(lo) for p in positions}
        else:
            (ranked if count <= max_ranked else bucketed).append(f)
    width = max((n for n, _, _ in stats.values()), default=0) + 1
    if ranked:
        keys = [f * width + p for f in ranked for p in quantile_positions(stats[f][0], levels)]
        rows = run_read(read, f"SELECT f, i, v FROM (SELECT f, v, row_number() OVER (PARTITION BY f ORDER BY v) - 1 "
                              f"AS i FROM {values} WHERE v IS NOT NULL AND f IN (SELECT unnest($fw_features))) "
                              f"WHERE f * {width} + i IN (SELECT unnest($fw_keys))",
                        {**params, "fw_features": ranked, "fw_keys": keys})
        for f, i, v in rows:
            found.setdefault(int(f), {})[int(i)] = float(v)
    if bucketed:
        found.update(_bucketed(read, values, {f: stats[f] for f in bucketed}, levels, params, max_ranked))
    return {f: interpolated_quantiles(found[f], stats[f][0], levels) if f in stats and stats[f][0] else ()
            for f in features}


def _bucket_sql(lo: float, hi: float) -> str:
    return f"least(floor((v - {_double(lo)}) * {_double(BUCKETS / (hi - lo))})::BIGINT, {BUCKETS - 1})"


def _bucketed(read, values: str, stats: dict[int, tuple], levels: Sequence[float], params: dict,
              max_ranked: int) -> dict[int, dict[int, float]]:
    """Order statistics of features with many values: one histogram scan and one ranking scan for all of them."""
    bucket = "CASE f " + " ".join(f"WHEN {f} THEN {_bucket_sql(lo, hi)}" for f, (_, lo, hi) in stats.items()) + " END"
    rows = run_read(read, f"SELECT f, b, n FROM (SELECT f, {bucket} AS b, count(*) AS n FROM {values} "
                          f"WHERE v IS NOT NULL AND f IN (SELECT unnest($fw_features)) GROUP BY ALL) ORDER BY f, b",
                    {**params, "fw_features": list(stats)})
    histograms: dict[int, list[tuple[int, int]]] = {}
    for f, b, n in rows:
        histograms.setdefault(int(f), []).append((int(b), int(n)))
    found: dict[int, dict[int, float]] = {f: {} for f in stats}
    targets: dict[tuple[int, int], tuple[int, list[int]]] = {}  # (feature, bucket) -> (values before, positions)
    for f, histogram in histograms.items():
        wanted, before, i = quantile_positions(stats[f][0], levels), 0, 0
        sizes = dict(histogram)
        for b, n in histogram:
            while i < len(wanted) and wanted[i] < before + n:
                targets.setdefault((f, b), (before, []))[1].append(wanted[i] - before)
                i += 1
            before += n
        for (g, b), (start, inside) in list(targets.items()):
            if g == f and sizes[b] > max_ranked:  # a heavy bucket: zoom into it alone
                del targets[(g, b)]
                lo, hi = stats[f][1], stats[f][2]
                found[f].update(order_statistics(read, f"(SELECT v FROM {values} WHERE f = {f})",
                                                 [start + p for p in inside], params,
                                                 f"v IS NOT NULL AND {_bucket_sql(lo, hi)} = {b}", start, max_ranked))
    if targets:
        width = max(n for n, _, _ in stats.values()) + 1
        keys = [(f * BUCKETS + b) * width + p for (f, b), (_, inside) in targets.items() for p in inside]
        rows = run_read(read, f"SELECT f, b, r, v FROM (SELECT f, b, v, row_number() OVER (PARTITION BY f, b "
                              f"ORDER BY v) - 1 AS r FROM (SELECT f, {bucket} AS b, v FROM {values} "
                              f"WHERE v IS NOT NULL AND f IN (SELECT unnest($fw_features))) "
                              f"WHERE f * {BUCKETS} + b IN (SELECT unnest($fw_buckets))) "
                              f"WHERE (f * {BUCKETS} + b) * {width} + r IN (SELECT unnest($fw_keys))",
                        {**params, "fw_features": list(stats), "fw_keys": keys,
                         "fw_buckets": sorted({f * BUCKETS + b for f, b in targets})})
        for f, b, r, v in rows:
            found[int(f)][targets[(int(f), int(b))][0] + int(r)] = float(v)
    return found
