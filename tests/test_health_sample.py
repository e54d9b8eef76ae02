"""Fleet health on the shipped sample, against its manifest and direct counts over the raw spans and points."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from analytics.health.config import HealthConfig
from analytics.health.failures import zero_tolerance_failures
from analytics.health.job import DeviceHealthHour
from analytics.jobs.framework import JobRunner
from analytics.schema import ANALYTICS
from collector.store.database import Store
from collector.store.versions import COLLECTOR
from tests.analytics_data import named, read

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
MANIFEST = json.loads((SAMPLE / "manifest.json").read_text())
START = datetime(2026, 11, 1)
END = datetime(2026, 11, 5)
THERMAL = next(i for i in MANIFEST["incidents"] if i["kind"] == "thermal_throttling")


@pytest.fixture(scope="module")
def sample(tmp_path_factory, sample_db):
    """The shipped sample loaded once for the module, with the health job run over all of it."""
    db = tmp_path_factory.mktemp("health") / "sample.duckdb"
    shutil.copyfile(sample_db, db)  # the session's one load of the sample (tests/conftest.py)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    config = HealthConfig(temperature_c=THERMAL["magnitude"]["threshold_c"])
    runner = JobRunner(store, [DeviceHealthHour(config)])
    report = runner.run_due("device_health_hour", END)
    assert report.error is None
    yield store, runner
    store.close()


RANGE = {"since": "2026-11-01T00:00:00Z", "until": "2026-11-05T00:00:00Z"}


def test_rollout_status_equals_the_manifest(sample):
    store, _ = sample
    outcomes = Counter((d["rollout_id"], d["stage"], d["outcome"]) for d in MANIFEST["deployments"])
    expected = {}
    for rollout in MANIFEST["rollouts"]:
        for stage in rollout["stages"]:
            key = (rollout["rollout_id"], stage["stage"])
            done = {o: n for (r, s, o), n in outcomes.items() if (r, s) == key}
            expected[key] = {"devices_targeted": stage["devices"], "succeeded": done.get("success", 0),
                             "failed": sum(n for o, n in done.items() if o != "success"),
                             "rolled_back": done.get("rolled_back", 0), "in_progress": 0,
                             "kind": rollout["kind"], "version_to": rollout["to_version"]}
    rows = named(store, "rollout_status", **RANGE)
    got = {(r["rollout_id"], r["stage"]): {k: r[k] for k in expected[(r["rollout_id"], r["stage"])]} for r in rows}
    assert got == expected
    assert any(0 < r["success_ratio"] < 1 for r in rows)
    one = named(store, "rollout_status", **RANGE, rollout_id="rollout-ef-0.9.5")
    assert {r["rollout_id"] for r in one} == {"rollout-ef-0.9.5"}


def test_time_above_the_temperature_threshold_only_for_the_thermal_cohort_in_its_window(sample):
    store, _ = sample
    start = datetime.fromisoformat(THERMAL["start"].replace("Z", ""))
    end = datetime.fromisoformat(THERMAL["end"].replace("Z", ""))
    cohort = set(THERMAL["devices"])
    rows = read(store, "SELECT device_id, site, device_class, window_start, temperature_above_s, "
                       "temperature_observed_s FROM device_health_hour").to_pylist()
    assert len({r["device_id"] for r in rows}) == len(MANIFEST["fleet"]["devices"])
    hot = [r for r in rows if r["temperature_above_s"] > 0]
    assert {r["device_id"] for r in hot} == cohort
    assert all(start <= r["window_start"] < end for r in hot)
    for device in cohort:
        inside = [r for r in rows if r["device_id"] == device and start <= r["window_start"] < end]
        assert len(inside) == (end - start) / timedelta(hours=1)
        total = sum(r["temperature_above_s"] for r in inside)
        # The whole window but its ramps (manifest: "the whole window but its ramps").
        ramps = 2 * THERMAL["magnitude"]["ramp_minutes"] * 60
        assert (end - start).total_seconds() - 2 * ramps <= total <= (end - start).total_seconds()
    assert {r["site"] for r in hot} == {THERMAL["cohort"]["fleet.site"]}
    assert {r["device_class"] for r in hot} == {THERMAL["cohort"]["device.class"]}
    by_site = {r["group"]: r for r in named(store, "fleet_health", **RANGE, group_by="site")}
    assert {s for s, r in by_site.items() if r["temperature_above_s"] > 0} == {THERMAL["cohort"]["fleet.site"]}


def test_cold_start_rate_equals_a_direct_count_over_the_spans(sample):
    store, _ = sample
    direct = {r["site"]: r for r in read(
        store, "SELECT site, count(*) AS inferences, count(*) FILTER (WHERE cold_start) AS cold_starts "
               "FROM spans WHERE name = 'inference' AND device_id IS NOT NULL GROUP BY site").to_pylist()}
    got = named(store, "fleet_health", **RANGE, group_by="site")
    assert {r["group"]: (r["inferences"], r["cold_starts"]) for r in got} == \
        {s: (r["inferences"], r["cold_starts"]) for s, r in direct.items()}
    for r in got:
        site = direct[r["group"]]
        assert r["cold_start_rate"] == pytest.approx(site["cold_starts"] / site["inferences"])
    assert sum(r["cold_starts"] for r in got) > 0
    by_device = named(store, "fleet_health", **RANGE, group_by="device")
    # Cloud shadows are inference spans of no device: not a device's health.
    assert sum(r["inferences"] for r in by_device) == MANIFEST["counts"]["inferences_edge"]


def test_zero_tolerance_failures_equal_a_direct_count(sample):
    store, runner = sample
    loads = read(store, "SELECT device_id, model_name, model_version, status_code, attributes "
                        "FROM spans WHERE name = 'model.load'").to_pylist()
    assert len(loads) == MANIFEST["counts"]["spans"]["model.load"]
    direct: Counter = Counter()
    for load in loads:
        integrity = json.loads(load["attributes"] or "{}").get("ml.model.integrity")
        if integrity == "failed":
            direct[(load["device_id"], load["model_name"], load["model_version"], "integrity_failed")] += 1
        elif load["status_code"] == "ERROR":
            direct[(load["device_id"], load["model_name"], load["model_version"], "load_failed")] += 1
    assert direct, "the sample has integrity failures"
    table = zero_tolerance_failures(runner._read, START, END)
    got = {(r["device_id"], r["model_name"], r["model_version"], r["kind"]): r["count"] for r in table.to_pylist()}
    assert got == dict(direct)
    assert named(store, "zero_tolerance_failures", **RANGE) == table.to_pylist()
    # Outside their times, nothing.
    first = min(r["first_at"] for r in table.to_pylist()).to_pydatetime(warn=False)
    assert zero_tolerance_failures(runner._read, START, first).num_rows == 0
    health = named(store, "fleet_health", **RANGE, group_by="none")[0]
    assert health["integrity_failures"] == sum(n for k, n in direct.items() if k[3] == "integrity_failed")
    assert health["model_loads"] == len(loads)


def test_telemetry_bytes_equal_the_counters_growth(sample):
    store, _ = sample
    # Every series (device x start time) starts inside the sample or within a day before it, so its
    # bytes are its last cumulative value; the hourly increases must add up to exactly that.
    direct = {r["device_id"]: r["bytes"] for r in read(
        store, "SELECT device_id, sum(last)::BIGINT AS bytes FROM (SELECT device_id, start_time, "
               "arg_max(value, time) AS last FROM metric_points WHERE metric_name = 'telemetry.bytes_sent' "
               "GROUP BY ALL) GROUP BY device_id").to_pylist()}
    got = {r["group"]: r["telemetry_bytes"] for r in named(store, "fleet_health", **RANGE, group_by="device")}
    assert got == direct
    assert all(r["device_days_over_budget"] == 0 for r in named(store, "fleet_health", **RANGE, group_by="site"))
