"""The SLO evaluator against brute-force window sums and the SRE Workbook's arithmetic, on a real DuckDB file.

SLI minutes are written straight into ``slo_sli_minute`` (the SLI job has
its own tests); every expected number here is recomputed from the
per-minute arrays by plain Python sums, never by the evaluator's code.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from analytics.slo.evaluator import SloEvaluator
from analytics.slo.lifecycle import LifecycleConfig
from analytics.slo.spec import slos_from_dict
from tests.analytics_data import read

T = datetime(2026, 10, 1)
M = timedelta(minutes=1)


def write_minutes(store, slo: str, group: dict[str, str], start: datetime, good: np.ndarray, total: np.ndarray) -> None:
    """One SLI row per minute with events, from ``start``."""
    idx = np.flatnonzero(total)
    table = pa.table({
        "window_start": pa.array([start + int(i) * M for i in idx], pa.timestamp("us")),
        "slo": pa.array([slo] * len(idx)),
        **{d: pa.array([group.get(d)] * len(idx), pa.string())
           for d in ("model_name", "model_version", "site", "region", "device_class")},
        "group_key": pa.array([json.dumps(group, sort_keys=True, separators=(",", ":"))] * len(idx)),
        "good": pa.array(good[idx], pa.uint64()), "total": pa.array(total[idx], pa.uint64())})

    def write(con):
        con.register("rows", table)
        con.execute("INSERT INTO slo_sli_minute BY NAME SELECT * FROM rows")
        con.unregister("rows")
    store.submit(write).result()


def reader(store):
    return lambda sql, params: read(store, sql, params)


def brute(series: np.ndarray, end_index: int, minutes: int) -> int:
    """Sum of the ``minutes`` minutes before instant ``end_index`` (minutes [end - w, end))."""
    return int(series[max(0, end_index - minutes):end_index].sum())


SPEC = slos_from_dict({"slos": [{"name": "s", "objective": 0.999, "period": "7d", "group_by": ["site"]}]})


def test_window_sums_and_burn_rates_equal_brute_force_at_every_minute_whatever_the_chunks(store):
    rng = np.random.default_rng(3)
    minutes = 9 * 1440  # longer than the 7-day period: minutes leave the period window
    totals = {site: rng.integers(0, 40, minutes) * (rng.random(minutes) < 0.7) for site in ("a", "b")}
    goods = {site: totals[site] - rng.binomial(totals[site], 0.002) for site in totals}
    for site in totals:
        write_minutes(store, "s", {"site": site}, T, goods[site], totals[site])
    windows = {"5m": 5, "30m": 30, "1h": 60, "2h": 120, "6h": 360, "1d": 1440, "3d": 4320, "period": 7 * 1440}
    checks = [3, 61, 4321, 7 * 1440, 7 * 1440 + 1, 8 * 1440 + 17, minutes]  # instants (minutes after T)
    for chunking in ([timedelta(days=1)] * 9, [timedelta(hours=5), timedelta(days=1, minutes=7)] * 8):
        evaluator = SloEvaluator(SPEC)
        start, got = T, {}
        for step in chunking:
            end = min(start + step, T + minutes * M)
            if end <= start:
                break
            result = evaluator.evaluate(reader(store), start, end, keep_evaluations=lambda t: True)
            for row in result.evaluation_table().to_pylist():
                got[(row["evaluated_at"], json.loads(row["group_key"])["site"])] = row
            start = end
        for site in totals:
            for i in checks:
                row = got[(T + i * M, site)]
                for name, w in windows.items():
                    total = brute(totals[site], i, w)
                    bad = total - brute(goods[site], i, w)
                    want = None if total == 0 else bad / total / (1 - 0.999)
                    assert row[f"burn_{name}"] == (None if want is None else pytest.approx(want, rel=1e-12)), (site, i, name)
                total, good = brute(totals[site], i, 7 * 1440), brute(goods[site], i, 7 * 1440)
                assert (row["good_period"], row["total_period"]) == (good, total)
                assert row["budget_remaining"] == pytest.approx(1 - (total - good) / (0.001 * total), rel=1e-12)


def test_a_fourteen_point_four_burn_for_one_hour_spends_two_percent_of_a_30_day_budget(store):
    # The Workbook: 14.4x for 1h spends 14.4 x 1h / 720h = 2 % of a 30-day budget (steady traffic).
    spec = slos_from_dict({"slos": [{"name": "w", "objective": 0.999}]})
    minutes = 30 * 1440
    total = np.full(minutes, 10000)
    good = total.copy()
    good[-60:] = 10000 - 144  # the last hour: error ratio 1.44 % = 14.4 x the 0.1 % budget
    write_minutes(store, "w", {}, T, good, total)
    evaluator = SloEvaluator(spec)
    start, row = T, None
    while start < T + minutes * M:
        end = min(start + timedelta(days=1), T + minutes * M)
        result = evaluator.evaluate(reader(store), start, end, keep_evaluations=lambda t: t == T + minutes * M)
        row = result.evaluation_table().to_pylist()[-1] if result.evaluations else row
        start = end
    assert row["burn_1h"] == pytest.approx(14.4) and row["burn_5m"] == pytest.approx(14.4)
    assert 1 - row["budget_remaining"] == pytest.approx(0.02)
    assert row["exhaustion_seconds"] == pytest.approx(0.98 * 30 * 86400 / 14.4)  # what is left, at this pace


def test_an_outage_pages_after_pending_and_resolves_minutes_after_recovery(store):
    spec = slos_from_dict({"slos": [{"name": "o", "objective": 0.99, "period": "30d", "group_by": ["site"]}]})
    minutes = 6 * 60
    total = np.full(minutes, 100)
    good = total.copy()
    good[120:180] = 0  # a total outage of one hour
    write_minutes(store, "o", {"site": "x"}, T, good, total)
    evaluator = SloEvaluator(spec, LifecycleConfig())
    result = evaluator.evaluate(reader(store), T, T + minutes * M)
    page = [(t.at, t.state) for t in result.transitions if t.severity == "page" and t.alertname == "SLOBurnRate"]
    # Brute force: the first instant the 1h and 5m windows burn > 14.4 or the 6h and 30m windows > 6,
    # plus the 2-minute pending time; the first instant neither holds resolves it.
    def burn(i, w):
        return (brute(total, i, w) - brute(good, i, w)) / brute(total, i, w) / 0.01

    def pages(i):
        return (burn(i, 60) > 14.4 and burn(i, 5) > 14.4) or (burn(i, 360) > 6 and burn(i, 30) > 6)

    first = next(i for i in range(1, minutes) if pages(i))
    last = next(i for i in range(first, minutes) if not pages(i))
    assert page[0] == (T + (first + 2) * M, "firing")
    assert page[1] == (T + last * M, "resolved")
    assert first - 120 <= 10 and last - 180 <= 30  # caught within minutes; resolved within half an hour
