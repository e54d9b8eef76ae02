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
