"""Fixed log-spaced latency buckets: the one histogram layout every rollup shares.

Bucket ``i`` (0 <= i < 88) counts latencies in ``(BOUNDS_MS[i-1], BOUNDS_MS[i]]``
milliseconds, with ``BOUNDS_MS[i] = 2 ** ((i - 16) / 4)``: four buckets per
doubling (each 19 % wider than the last), from 0.0625 ms to about 220 s.
Bucket 0 also takes everything at or under 0.0625 ms (zero and negative
durations too); bucket 88 everything over the last bound. Because the
bounds are fixed, histograms of any two windows add column by column: the
sum of sixty minute rollups is exactly the hour's rollup.

A quantile read from the buckets is the geometric interpolation inside the
bucket holding it, so it is within one bucket (19 %) of the exact value and
usually much closer; docs/api.md states this next to the queries.
"""

from __future__ import annotations

import math

N_BOUNDS = 88
OFFSET = 16
PER_DOUBLING = 4
BOUNDS_MS: tuple[float, ...] = tuple(2.0 ** ((i - OFFSET) / PER_DOUBLING) for i in range(N_BOUNDS))
N_BUCKETS = N_BOUNDS + 1
COLUMNS: tuple[str, ...] = tuple(f"lat_b{i:02d}" for i in range(N_BUCKETS))


def bounds_sql() -> str:
    """The bounds as a DuckDB list literal, written with every digit (repr round-trips float64)."""
    return "[" + ", ".join(repr(b) for b in BOUNDS_MS) + "]::DOUBLE[]"


def bucket_sql(ms: str) -> str:
    """SQL for the bucket index of latency expression ``ms`` (milliseconds, DOUBLE).

    A first guess from log2, then one exact comparison each way against the
    literal bounds, so the index never depends on how an engine rounds log2.
    """
    bounds = f"({bounds_sql()})"
    g = f"(least({N_BOUNDS - 1}, greatest(0, ceil({PER_DOUBLING} * log2({ms}))::INTEGER + {OFFSET})))"
    # Lists are 1-based: bounds[g + 1] is BOUNDS_MS[g].
    return (f"(CASE WHEN {ms} IS NULL THEN NULL WHEN {ms} <= {BOUNDS_MS[0]!r} THEN 0 "
            f"WHEN {ms} > {BOUNDS_MS[-1]!r} THEN {N_BOUNDS} "
            f"ELSE {g} + ({ms} > {bounds}[{g} + 1])::INTEGER - ({ms} <= {bounds}[{g}])::INTEGER END)")


def quantile(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile (0 < q < 1) of one bucket histogram, or None when it holds nothing."""
    value = float(quantiles([counts], q)[0])
    return None if math.isnan(value) else value


def quantiles(counts, q: float):
    """:func:`quantile` for every row of a (rows x N_BUCKETS) count matrix; NaN where a row is empty.

    numpy is imported here, not at the top: the read API runs on gateways
    that have no numpy and serve no rollups.
    """
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    out = np.full(counts.shape[0], np.nan)
    if counts.size == 0:
        return out
    total = counts.sum(axis=1)
    cumulative = np.cumsum(counts, axis=1)
    rank = q * total
    # The first bucket whose cumulative count reaches the rank (and holds something).
    index = np.argmax((cumulative >= rank[:, None]) & (counts > 0), axis=1)
    ratio = 2 ** (1 / PER_DOUBLING)
    bounds = np.asarray(BOUNDS_MS)
    upper = np.concatenate([bounds, [bounds[-1] * ratio]])
    lower = np.concatenate([[bounds[0] / ratio], bounds])
    rows = np.arange(counts.shape[0])
    in_bucket = counts[rows, index]
    below = cumulative[rows, index] - in_bucket
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(in_bucket > 0, (rank - below) / in_bucket, 0.0)
        values = lower[index] * np.power(upper[index] / lower[index], share)
    return np.where(total > 0, values, np.nan)
