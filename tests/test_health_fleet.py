"""Fleet health on a small hand-built fleet sent by the real OpenTelemetry SDK to a real collector.

Two devices, two hours (H, H+1) a few hours back. Every expected figure
below is worked out by hand from the samples and spans sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from analytics.api.catalog import CATALOG
from analytics.api.client import ReadApiClient
from analytics.health.config import HealthConfig
from analytics.health.failures import zero_tolerance_failures
from analytics.health.job import DeviceHealthHour
from analytics.jobs.framework import JobRunner
from analytics.schema import ANALYTICS
from bench.harness import CollectorProcess, jobs_caught_up, wait_until
from collector.config import ConfigError, config_from_dict
from collector.store.database import Store
from collector.store.versions import COLLECTOR
from tests.analytics_data import read, serve_and_get
from tests.sdk_devices import COOL, MIB, Device, emit_span

MIN = 60 * 10**9
HOT = 90.0
CONFIG = HealthConfig(cpu_utilization=0.9, temperature_c=85.0, memory_mib={"jetson-orin": "1000"},
                      sample_gap_cap=900.0, telemetry_mib_per_device_day=5500 / MIB)


def _deployment(tracer, at: datetime, outcome: str) -> None:
    emit_span(tracer, "deployment", at, {"deployment.kind": "model", "deployment.rollout.id": "r-1",
                                     "deployment.rollout.stage": "canary", "deployment.outcome": outcome,
                                     "deployment.version.from": "1.0", "deployment.version.to": "1.1"},
          error=outcome != "success")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Sends the fleet, runs the health job; yields (db, H, the two devices)."""
    db = tmp_path_factory.mktemp("fleet") / "fleet.duckdb"
    hour = (datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=3)).replace(
        minute=0, second=0, microsecond=0)
    hot = Device("cam-hot", "jetson-orin", hour - timedelta(hours=1))
    calm = Device("cam-calm", "coral-tpu", hour - timedelta(hours=1))

    def hot_spans(tracer):
        model = {"ml.model.name": "detector", "ml.model.version": "3"}
        for i in range(10):
            emit_span(tracer, "inference", hour + timedelta(minutes=2 + i),
                  {**model, "ml.inference.mode": "edge", **({"ml.inference.cold_start": True} if i < 2 else {})})
        emit_span(tracer, "model.load", hour + timedelta(minutes=1), {**model, "ml.model.integrity": "ok"})
        emit_span(tracer, "model.load", hour + timedelta(minutes=20), {**model, "ml.model.integrity": "ok"}, error=True)
        emit_span(tracer, "model.load", hour + timedelta(minutes=21), {**model, "ml.model.integrity": "failed"},
              error=True)
        _deployment(tracer, hour + timedelta(minutes=10), "failed")
        _deployment(tracer, hour + timedelta(minutes=30), "success")  # the retry: latest outcome counts

    def calm_spans(tracer):
        for i in range(4):
            emit_span(tracer, "inference", hour + timedelta(minutes=3 + i),
                  {"ml.model.name": "detector", "ml.model.version": "3", "ml.inference.mode": "edge"})
        _deployment(tracer, hour + timedelta(minutes=40), "in_progress")

    with CollectorProcess(db) as collector:
        hot.spans(collector.http_url, hot_spans)
        calm.spans(collector.http_url, calm_spans)
        for minute in (5, 15, 25, 35, 45, 55, 65):
            at = hour + timedelta(minutes=minute)
            hot.sample(collector.http_url, at, cpu=0.95 if minute == 45 else 0.3,
                       memory_mib=2000 if minute == 55 else 500,
                       temperature=HOT if minute in (15, 25, 65) else COOL, sent=1000)
            calm.sample(collector.http_url, at, sent=100)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    assert read(store, "SELECT count(*) AS n FROM span_rows WHERE clock_offset_ns IS NOT NULL")["n"][0].as_py() == 0
    runner = JobRunner(store, [DeviceHealthHour(CONFIG)])
    assert runner.run_due("device_health_hour", hour + timedelta(hours=3)).error is None
    yield store, runner, hour, calm, db
    store.close()


def _rows(store) -> dict:
    rows = read(store, "SELECT * FROM device_health_hour ORDER BY device_id, window_start").to_pylist()
    return {(r["device_id"], r["window_start"]): r for r in rows}


def test_time_above_thresholds_by_the_documented_estimator(fleet):
    store, _, hour, _, _ = fleet
    rows = _rows(store)
    first, second = rows[("cam-hot", hour)], rows[("cam-hot", hour + timedelta(hours=1))]
    # Samples at :05 .. :55: the first also stands for :00-:05, the last for :55-:60.
    assert first["temperature_observed_s"] == first["cpu_observed_s"] == first["memory_observed_s"] == 3600
    assert first["temperature_above_s"] == 1200   # :15 and :25, ten minutes each
    assert first["cpu_above_s"] == 600            # :45
    assert first["memory_above_s"] == 300         # :55, to the end of the hour
    assert first["temperature_max_c"] == HOT and first["cpu_max"] == 0.95
    # H+1: one sample at :05, then silence: back to :00, forward capped at 15 minutes.
    assert second["temperature_observed_s"] == second["temperature_above_s"] == 1200
    calm = rows[("cam-calm", hour)]
    assert calm["temperature_above_s"] == calm["cpu_above_s"] == 0
    assert calm["memory_above_s"] is None and calm["memory_threshold_bytes"] is None  # no threshold for its class
    assert first["memory_threshold_bytes"] == 1000 * MIB
    assert (first["site"], first["device_class"], first["model_name"]) == ("site-a", "jetson-orin", "detector")


def test_counts_bytes_and_the_budget(fleet):
    store, _, hour, _, _ = fleet
    rows = _rows(store)
    first = rows[("cam-hot", hour)]
    assert (first["inferences"], first["cold_starts"]) == (10, 2)
    assert (first["model_loads"], first["load_failures"], first["integrity_failures"]) == (3, 1, 1)
    assert first["telemetry_bytes"] == 6000 and rows[("cam-hot", hour + timedelta(hours=1))]["telemetry_bytes"] == 1000
    assert rows[("cam-calm", hour)]["telemetry_bytes"] == 600
    bound = CATALOG["fleet_health"].bind({"since": (hour - timedelta(hours=1)).isoformat() + "Z",
                                          "until": (hour + timedelta(hours=3)).isoformat() + "Z"})
    health = {r["group"]: r for r in store.reads.run(bound.sql, bound.params, max_rows=100, timeout=60)
              .table.to_pylist()}
    assert health["cam-hot"]["cold_start_rate"] == pytest.approx(0.2)
    assert health["cam-hot"]["temperature_above_s"] == 2400
    assert health["cam-hot"]["temperature_above_share"] == pytest.approx(2400 / 4800)
    # 5,500 bytes a day: the hot device's hour H alone (6,000) is over it; the calm one (700) never.
    assert health["cam-hot"]["device_days_over_budget"] == 1 and health["cam-calm"]["device_days_over_budget"] == 0


def test_zero_tolerance_failures_and_rollout_status_through_the_read_api(fleet):
    store, runner, hour, _, _ = fleet
    failures = zero_tolerance_failures(runner._read, hour, hour + timedelta(hours=2)).to_pylist()
    assert [(f["device_id"], f["model_name"], f["model_version"], f["kind"], f["count"]) for f in failures] == [
        ("cam-hot", "detector", "3", "load_failed", 1), ("cam-hot", "detector", "3", "integrity_failed", 1)]
    assert failures[0]["site"] == "site-a" and failures[0]["device_class"] == "jetson-orin"
    assert zero_tolerance_failures(runner._read, hour + timedelta(minutes=22), hour + timedelta(hours=2)).num_rows == 0
    since = (hour - timedelta(hours=1)).isoformat() + "Z"
    rollout, zero = serve_and_get(store, [f"/api/v1/query/rollout_status?since={since}",
                                          f"/api/v1/query/zero_tolerance_failures?since={since}"])
    status = dict(zip([c["name"] for c in rollout["columns"]], rollout["rows"][0]))
    assert (status["rollout_id"], status["stage"]) == ("r-1", "canary")
    assert (status["devices_targeted"], status["succeeded"], status["failed"], status["in_progress"]) == (2, 1, 0, 1)
    assert status["success_ratio"] == 1.0
    assert zero["row_count"] == 2


def test_a_late_gauge_sample_reopens_exactly_its_hour(fleet):
    store, runner, hour, calm, db = fleet
    store.close()  # one process owns the file: the collector takes it for the late upload
    try:
        with CollectorProcess(db) as collector:
            calm.sample(collector.http_url, hour + timedelta(minutes=50), temperature=HOT)
    finally:
        store.open()
    assert read(store, "SELECT count(*) AS n FROM ingest_marks WHERE table_name = 'metric_points' "
                       "AND minute = $m", {"m": hour + timedelta(minutes=50)})["n"][0].as_py() > 0
    report = runner.run_due("device_health_hour", hour + timedelta(hours=3))
    assert report.error is None
    assert [(s, e, reason) for s, e, reason in report.spans] == [(hour, hour + timedelta(hours=1), "late-data")]
    rows = _rows(store)
    assert rows[("cam-calm", hour)]["temperature_above_s"] == 300   # :50 to :55
    assert rows[("cam-calm", hour)]["temperature_observed_s"] == 3600
    assert rows[("cam-hot", hour)]["temperature_above_s"] == 1200   # untouched


@pytest.mark.parametrize("section, message", [
    ({"cpu_utilization": 1.5}, "health.cpu_utilization"),
    ({"memory_mib": {"jetson-orin": "lots"}}, "health.memory_mib.jetson-orin"),
    ({"sample_gap_cap": "2h"}, "health.sample_gap_cap"),
    ({"telemetry_mib_per_device_day": 0}, "health.telemetry_mib_per_device_day"),
    ({"temperature": 80}, "health.temperature"),
])
def test_bad_health_config_names_the_key(section, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config_from_dict({"health": section})


def test_serve_runs_the_health_job_with_the_configured_thresholds(tmp_path):
    hour = (datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=3)).replace(
        minute=0, second=0, microsecond=0)
    device = Device("cam-warm", "jetson-orin", hour - timedelta(hours=1))
    config = {"analytics": {"workers": 2}, "health": {"temperature_c": 40, "sample_gap_cap": "10m"}}
    with CollectorProcess(tmp_path / "central.duckdb", config=config) as central:
        for minute in (5, 15, 25, 35, 45, 55):
            device.sample(central.http_url, hour + timedelta(minutes=minute))  # 50 C: above the configured 40 C
        # An inference too: the span rollups start (and report a watermark) only once they have data.
        device.spans(central.http_url, lambda tracer: emit_span(tracer, "inference", hour + timedelta(minutes=7),
                                                            {"ml.model.name": "detector"}))
        wait_until(lambda: jobs_caught_up(central.metrics_text()), timeout=300, what="jobs caught up")
        rows = ReadApiClient(central.api_url).query(
            "fleet_health", since=hour, until=hour + timedelta(hours=2)).records()
    assert [(r["group"], r["temperature_above_s"], r["temperature_above_share"]) for r in rows] == \
        [("cam-warm", 3600.0, 1.0)]


def test_every_failed_load_and_integrity_check_pages_at_once_and_resolves_an_hour_after(fleet):
    from analytics.health.alerts import ZeroToleranceAlerts

    store, runner, hour, _, _ = fleet
    alerts = ZeroToleranceAlerts()
    transitions, messages = [], []
    # Evaluated in three chunks, as the live job would catch up: state carries across them.
    for start, end in ((hour, hour + timedelta(minutes=21)), (hour + timedelta(minutes=21), hour + timedelta(hours=1)),
                       (hour + timedelta(hours=1), hour + timedelta(hours=3))):
        result = alerts.evaluate(runner._read, start, end, notify_after=hour)
        transitions += [(t.alertname, t.state, t.at) for t in result.transitions]
        messages += result.messages
    # The load failed at :20 and the integrity check at :21: each fires at the next minute's instant (no
    # pending time) and resolves when an hour has passed without another (the instant after :20 + 1h).
    minute = timedelta(minutes=1)
    assert transitions == [("ModelLoadFailure", "firing", hour + 21 * minute),
                           ("ModelIntegrityFailure", "firing", hour + 22 * minute),
                           ("ModelLoadFailure", "resolved", hour + 81 * minute),
                           ("ModelIntegrityFailure", "resolved", hour + 82 * minute)]
    fired = messages[1]
    assert fired.state.key.labels == {"alertname": "ModelIntegrityFailure", "slo": "zero-tolerance",
                                      "severity": "page", "device_id": "cam-hot", "model_name": "detector",
                                      "model_version": "3", "site": "site-a", "region": "eu",
                                      "device_class": "jetson-orin"}
    assert "failed its integrity check" in fired.annotations["summary"]
    assert [m.state.state for m in messages] == ["firing", "firing", "resolved", "resolved"]
