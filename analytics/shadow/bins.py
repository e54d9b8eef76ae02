"""The fixed histogram bins of the shadow and ground-truth tables (docs/shadow.md).

Fixed bins, the same in every hour and on every gateway, so histograms of
any hours add up column by column. Bin ``i`` holds values in
``[EDGES[i-1], EDGES[i])``; the first bin everything below ``EDGES[0]``,
the last everything from ``EDGES[-1]`` up.
"""

from __future__ import annotations

# Edge score minus cloud score (both in [0, 1]): 20 bins of 0.1 on [-1, 1].
SCORE_DELTA_EDGES = tuple(round(-0.9 + 0.1 * i, 1) for i in range(19))
# Edge value minus cloud (or true) value, in the model's own unit.
VALUE_ERROR_EDGES = (-10.0, -5.0, -2.0, -1.0, -0.5, -0.2, 0.0, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
# Label time minus inference time, seconds: 1 min, 10 min, 1 h, 6 h, 1 d, 3 d, 7 d.
LABEL_LAG_EDGES_S = (60.0, 600.0, 3600.0, 21600.0, 86400.0, 259200.0, 604800.0)

SCORE_DELTA_COLUMNS = tuple(f"score_delta_b{i:02d}" for i in range(len(SCORE_DELTA_EDGES) + 1))
VALUE_ERROR_COLUMNS = tuple(f"value_error_b{i:02d}" for i in range(len(VALUE_ERROR_EDGES) + 1))
LABEL_LAG_COLUMNS = ("lag_lt_1m", "lag_lt_10m", "lag_lt_1h", "lag_lt_6h", "lag_lt_1d", "lag_lt_3d", "lag_lt_7d",
                     "lag_ge_7d")


def bin_sql(expression: str, edges: tuple[float, ...]) -> str:
    """SQL for the bin index (0 .. len(edges)) of ``expression``; NULL stays NULL."""
    cases = " ".join(f"WHEN {expression} < {edge!r} THEN {i}" for i, edge in enumerate(edges))
    return f"(CASE WHEN {expression} IS NULL THEN NULL {cases} ELSE {len(edges)} END)"


def pivot_sql(bin_column: str, columns: tuple[str, ...], where: str = "TRUE") -> str:
    """One ``count(*)`` column per bin, for rows where ``where`` holds."""
    return ", ".join(f"(count(*) FILTER (WHERE {where} AND {bin_column} = {i}))::UBIGINT AS {c}"
                     for i, c in enumerate(columns))
