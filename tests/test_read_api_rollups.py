"""Fleet-wide named queries over the rollups, checked against numpy on the raw spans."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from analytics.jobs.framework import JobRunner
from analytics.rollups import rollup_jobs
from tests.analytics_data import T0, read, serve_and_get


def rows_of(answer: dict) -> list[dict]:
    names = [c["name"] for c in answer["columns"]]
    return [dict(zip(names, row)) for row in answer["rows"]]


def test_golden_signals_match_numpy_on_raw_spans(store):
    runner = JobRunner(store, rollup_jobs())
    for name in runner.jobs:
        assert runner.run_due(name, T0 + timedelta(hours=3)).error is None
    since, until = "2026-11-30T10:00:00Z", "2026-11-30T11:30:00Z"
    (answer,) = serve_and_get(store, [f"/api/v1/query/golden_signals?since={since}&until={until}"
                                      "&step=15m&group_by=model_version&site=site-1"])
    raw = read(store, "SELECT epoch_ns(start_time) AS t, duration_ns, status_code, model_name, model_version "
                      "FROM span_rows WHERE name = 'inference' AND site = 'site-1'")
    t = raw["t"].to_numpy()
    bucket = (t - t.min() // (900 * 10**9) * 900 * 10**9) // (900 * 10**9)
    group = np.array([f"{m}@{v}" for m, v in zip(raw["model_name"].to_pylist(), raw["model_version"].to_pylist())])
    ms = raw["duration_ns"].to_numpy() / 1e6
    errors = raw["status_code"].to_numpy() == 2
    got = rows_of(answer)
    assert len(got) == len({(b, g) for b, g in zip(bucket, group)})
    for row in got:
        b = int((np.datetime64(row["time"].rstrip("Z")) - np.datetime64("2026-11-30T10:00:00")) / np.timedelta64(15, "m"))
        mask = (bucket == b) & (group == row["group"])
        assert row["inferences"] == mask.sum() and row["errors"] == errors[mask].sum()
        assert row["error_ratio"] == errors[mask].sum() / mask.sum()
        assert abs(row["rate_per_s"] - mask.sum() / 900) < 1e-9
        assert abs(row["mean_ms"] - ms[mask].mean()) < 1e-6
        for q, column in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
            exact = np.quantile(ms[mask], q)
            # One bucket is 2**(1/4) wide: the estimate lies within it.
            assert abs(np.log2(row[column] / exact)) <= 0.25, (row["time"], row["group"], q, exact, row[column])


def test_inventory_and_model_versions(store):
    runner = JobRunner(store, rollup_jobs())
    for name in runner.jobs:
        runner.run_due(name, T0 + timedelta(hours=3))
    inventory, stale, versions = serve_and_get(store, [
        "/api/v1/query/fleet_inventory?as_of=2026-11-30T11:31:00Z&stale_after=1h",
        "/api/v1/query/fleet_inventory?as_of=2026-11-30T11:40:00Z&stale_after=5m&status=stale&site=site-0",
        "/api/v1/query/model_versions?since=2026-11-30T10:00:00Z&until=2026-11-30T12:00:00Z",
    ])
    devices = rows_of(inventory)
    assert [d["device_id"] for d in devices] == [f"dev-{i:02d}" for i in range(12)]
    assert {d["status"] for d in devices} == {"online"}
    assert devices[1]["model_versions"] == ["detector:v2"] and devices[0]["model_versions"] == ["classifier:v7"]
    assert devices[4]["site"] == "site-1" and devices[4]["firmware_version"] == "1.2"
    assert [d["device_id"] for d in rows_of(stale)] == ["dev-00", "dev-03", "dev-06", "dev-09"]
    spread = {(v["model_name"], v["model_version"]): v for v in rows_of(versions)}
    assert {k: v["devices"] for k, v in spread.items()} == {("classifier", "v7"): 4, ("detector", "v1"): 4,
                                                            ("detector", "v2"): 4}
    assert spread[("detector", "v1")]["inferences"] == 1600
    assert spread[("detector", "v1")]["inference_share"] == 0.5
    # Per-device and per-version counts and ratios against the raw spans.
    raw = read(store, "SELECT device_id, model_name, model_version, status_code FROM span_rows "
                      "WHERE name = 'inference'").to_pylist()
    for device in devices:
        mine = [r for r in raw if r["device_id"] == device["device_id"]]
        assert device["inferences_24h"] == len(mine) == 400
        assert device["errors_24h"] == sum(r["status_code"] == 2 for r in mine)
    for (model, version), row in spread.items():
        mine = [r for r in raw if (r["model_name"], r["model_version"]) == (model, version)]
        model_total = sum(1 for r in raw if r["model_name"] == model)
        assert row["inferences"] == len(mine)
        assert row["error_ratio"] == sum(r["status_code"] == 2 for r in mine) / len(mine)
        assert row["inference_share"] == len(mine) / model_total


def test_queries_over_a_range_without_data_answer_no_rows_not_zeros(store):
    runner = JobRunner(store, rollup_jobs())
    for name in runner.jobs:
        runner.run_due(name, T0 + timedelta(hours=3))
    before, after, versions = serve_and_get(store, [
        "/api/v1/query/golden_signals?since=2026-11-29T10:00:00Z&until=2026-11-29T12:00:00Z&step=15m",
        "/api/v1/query/golden_signals?since=2026-11-30T13:00:00Z&until=2026-11-30T15:00:00Z&group_by=site",
        "/api/v1/query/model_versions?since=2026-11-29T00:00:00Z&until=2026-11-30T00:00:00Z",
    ])
    assert before["rows"] == [] and after["rows"] == [] and versions["rows"] == []
