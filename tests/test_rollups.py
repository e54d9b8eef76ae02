"""Golden-signal rollups and the window-job framework, against an independent numpy computation."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from analytics.jobs.framework import JobRunner
from analytics.latency_buckets import BOUNDS_MS, COLUMNS, N_BUCKETS, quantile
from analytics.rollups import GROUP_COLUMNS, rollup_jobs
from analytics.schema import ANALYTICS
from bench.otlp_shapes import kv
from collector.bulk import ingest_request_log
from collector.request_log import RequestLogWriter
from collector.store.database import Store
from collector.store.marks import next_seq, record_marks
from collector.store.versions import COLLECTOR

T0 = datetime(2026, 11, 30, 10, 0)
T0_NS = int((T0 - datetime(1970, 1, 1)).total_seconds()) * 10**9
MINUTES = 90


def fleet_requests(rng: np.random.Generator, n_devices: int = 12, per_request: int = 60):
    """Inference spans with known shapes: two models, three sites, lognormal latency, 7 % errors."""
    for device in range(n_devices):
        model, version = ("detector", f"v{1 + device % 2}") if device % 3 else ("classifier", "v7")
        site = f"site-{device % 3}"
        times = np.sort(rng.integers(0, MINUTES * 60 * 10**9, 400)) + T0_NS
        for first in range(0, len(times), per_request):
            request = ExportTraceServiceRequest()
            rs = request.resource_spans.add()
            rs.resource.attributes.extend([kv("service.name", "cam"), kv("device.id", f"dev-{device:02d}"),
                                           kv("fleet.site", site), kv("fleet.region", "eu"),
                                           kv("device.class", "jetson"), kv("device.firmware.version", "1.2")])
            scope = rs.scope_spans.add()
            for start in times[first:first + per_request]:
                span = scope.spans.add()
                span.trace_id, span.span_id = os.urandom(16), os.urandom(8)
                span.name = "inference"
                span.start_time_unix_nano = int(start)
                span.end_time_unix_nano = int(start) + int(rng.lognormal(np.log(8e6), 0.6))
                if rng.random() < 0.07:
                    span.status.code = 2
                attrs = [kv("ml.model.name", model), kv("ml.model.version", version),
                         kv("ml.inference.mode", "edge")]
                if rng.random() < 0.02:
                    attrs.append(kv("ml.inference.cold_start", True))
                span.attributes.extend(attrs)
            # A non-inference child span: rollups must ignore it.
            child = scope.spans.add()
            child.trace_id, child.span_id, child.name = os.urandom(16), os.urandom(8), "preprocess"
            child.start_time_unix_nano, child.end_time_unix_nano = int(times[first]), int(times[first]) + 10**6
            yield request.SerializeToString()


@pytest.fixture()
def store(tmp_path):
    log_path, db = tmp_path / "fleet.otlp.zst", tmp_path / "fw.duckdb"
    with RequestLogWriter(log_path) as log:
        for i, body in enumerate(fleet_requests(np.random.default_rng(7))):
            log.append("traces", T0_NS + (MINUTES + 1) * 60 * 10**9 + i, body)
    ingest_request_log(db, log_path)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    yield store
    store.close()


def read(store, sql, params=None):
    return store.reads.run(sql, params, max_rows=10**7, timeout=60).table


def expected_rollup(store, window_seconds: int) -> dict:
    """The rollup computed independently: raw spans into numpy, grouped in Python, np.searchsorted buckets."""
    raw = read(store, "SELECT epoch_ns(start_time) AS t, duration_ns, status_code, cold_start, "
                      + ", ".join(GROUP_COLUMNS) + " FROM span_rows WHERE name = 'inference'")
    t = raw["t"].to_numpy()
    window = (t // (window_seconds * 10**9)) * window_seconds
    bucket = np.searchsorted(np.asarray(BOUNDS_MS), raw["duration_ns"].to_numpy() / 1e6, side="left")
    groups = list(zip(*(raw[c].to_pylist() for c in GROUP_COLUMNS)))
    out: dict = {}
    for i, key in enumerate(groups):
        row = out.setdefault((int(window[i]), *key), {"inferences": 0, "errors": 0, "cold_starts": 0,
                                                      "latency_sum_ns": 0, "hist": [0] * N_BUCKETS})
        row["inferences"] += 1
        row["errors"] += raw["status_code"][i].as_py() == 2
        row["cold_starts"] += bool(raw["cold_start"][i].as_py())
        row["latency_sum_ns"] += raw["duration_ns"][i].as_py()
        row["hist"][int(bucket[i])] += 1
    return out


def stored_rollup(store, table: str) -> dict:
    rows = read(store, f"SELECT epoch(window_start)::BIGINT AS w, * FROM {table}").to_pylist()
    return {(r["w"], *(r[c] for c in GROUP_COLUMNS)): {
        "inferences": r["inferences"], "errors": r["errors"], "cold_starts": r["cold_starts"],
        "latency_sum_ns": r["latency_sum_ns"], "hist": [r[c] for c in COLUMNS]} for r in rows}


def run_all(runner, now):
    return {name: runner.run_due(name, now) for name in runner.jobs}


def test_rollups_equal_an_independent_computation_and_hours_are_sums_of_minutes(store):
    runner = JobRunner(store, rollup_jobs())
    reports = run_all(runner, T0 + timedelta(hours=3))
    assert all(r.error is None for r in reports.values()), reports
    for table, seconds in (("rollup_minute", 60), ("rollup_hour", 3600)):
        assert stored_rollup(store, table) == expected_rollup(store, seconds), table
    summed = read(store, "SELECT sum(inferences)::BIGINT AS n, sum(lat_b40)::BIGINT AS b FROM rollup_minute")
    hours = read(store, "SELECT sum(inferences)::BIGINT AS n, sum(lat_b40)::BIGINT AS b FROM rollup_hour")
    assert summed.to_pylist() == hours.to_pylist() and summed["n"][0].as_py() == 12 * 400
    runs = read(store, "SELECT job, outcome, count(*) AS n FROM job_runs GROUP BY ALL ORDER BY 1").to_pylist()
    assert {r["job"] for r in runs} == {"rollup_minute", "rollup_hour", "device_hour"}
    assert all(r["outcome"] == "ok" for r in runs)


def test_rerunning_a_window_changes_nothing_and_a_restart_leaves_no_gap(store):
    runner = JobRunner(store, rollup_jobs())
    run_all(runner, T0 + timedelta(minutes=45))
    first = stored_rollup(store, "rollup_minute")
    # A new runner (a restart) picks up at the watermark and catches up to the end.
    runner = JobRunner(store, rollup_jobs())
    report = runner.run_due("rollup_minute", T0 + timedelta(minutes=MINUTES + 10))
    assert report.spans[0][0] == T0 + timedelta(minutes=44)  # 45 min - 30 s delay, floored
    after = stored_rollup(store, "rollup_minute")
    assert {k: v for k, v in after.items() if k in first} == first
    assert after == expected_rollup(store, 60)
    windows = read(store, "SELECT window_start, count(*) AS n FROM job_runs WHERE job = 'rollup_minute' "
                          "GROUP BY ALL HAVING n > 1")
    assert windows.num_rows == 0


def test_late_rows_recompute_exactly_the_windows_they_touch(store):
    runner = JobRunner(store, rollup_jobs())
    run_all(runner, T0 + timedelta(hours=3))
    late_minutes = [T0 + timedelta(minutes=3, seconds=20), T0 + timedelta(minutes=61, seconds=5)]

    def write_late(con):
        # What the writer does with a backlog: rows and their marks in one transaction.
        with Store.transaction(con):
            one = ("(SELECT * REPLACE (?::TIMESTAMP_NS AS start_time, span_id + {k} AS span_id) "
                   "FROM span_rows WHERE name = 'inference' LIMIT 1 OFFSET {k})")
            con.execute(f"CREATE TEMP TABLE late AS {one.format(k=1)} UNION ALL {one.format(k=2)}", late_minutes)
            con.execute("INSERT INTO span_rows SELECT * FROM late")
            record_marks(con, next_seq(con), "span_rows", "late")
            con.execute("DROP TABLE late")

    store.submit(write_late).result()
    report = runner.run_due("rollup_minute", T0 + timedelta(hours=3))
    late = [(s, e) for s, e, reason in report.spans if reason == "late-data"]
    assert late == [(T0 + timedelta(minutes=3), T0 + timedelta(minutes=4)),
                    (T0 + timedelta(minutes=61), T0 + timedelta(minutes=62))]
    assert stored_rollup(store, "rollup_minute") == expected_rollup(store, 60)
    hour = runner.run_due("rollup_hour", T0 + timedelta(hours=3))
    assert [(s, e) for s, e, _ in hour.spans] == [(T0, T0 + timedelta(hours=1)),
                                                  (T0 + timedelta(hours=1), T0 + timedelta(hours=2))]
    assert stored_rollup(store, "rollup_hour") == expected_rollup(store, 3600)


def test_a_failing_job_is_recorded_backs_off_and_holds_up_no_other(store):
    class Broken(rollup_jobs()[0].__class__):
        name = "broken"

        def compute(self, read, start, end):
            raise RuntimeError("disk on fire")

    runner = JobRunner(store, [Broken(), *rollup_jobs()])
    now = T0 + timedelta(minutes=MINUTES + 10)
    broken = runner.run_due("broken", now)
    assert broken.error == "RuntimeError: disk on fire"
    assert runner.run_due("broken", now).skipped.startswith("backing off")
    assert runner.run_due("rollup_minute", now).error is None
    failed = read(store, "SELECT outcome, error FROM job_runs WHERE job = 'broken'").to_pylist()
    assert failed == [{"outcome": "failed", "error": "RuntimeError: disk on fire"}]
    assert read(store, "SELECT count(*) AS n FROM job_state WHERE job = 'broken'")["n"][0].as_py() == 0


def test_bucket_quantiles_are_within_one_bucket_of_numpy():
    rng = np.random.default_rng(3)
    values = rng.lognormal(np.log(20), 0.8, 50_000)
    counts = np.bincount(np.searchsorted(np.asarray(BOUNDS_MS), values, side="left"), minlength=N_BUCKETS)
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(values, q))
        estimate = quantile(counts.tolist(), q)
        assert abs(np.log2(estimate / exact)) <= 0.25, (q, exact, estimate)
    assert quantile([0] * N_BUCKETS, 0.5) is None


def test_the_scheduler_catches_up_every_job_and_reports_it_in_metrics(store):
    from analytics.jobs.scheduler import AnalyticsScheduler
    from collector.selfmetrics import Registry
    from tests.collector_process import wait_until

    registry = Registry()
    runner = JobRunner(store, rollup_jobs())
    scheduler = AnalyticsScheduler(runner, registry)
    scheduler.start()
    try:
        wait_until(lambda: all(runner.watermark(name) and runner.watermark(name) > datetime.utcnow() - timedelta(hours=2)
                               for name in runner.jobs), timeout=300)
    finally:
        scheduler.shutdown()
    assert stored_rollup(store, "rollup_minute") == expected_rollup(store, 60)
    assert stored_rollup(store, "rollup_hour") == expected_rollup(store, 3600)
    metrics = registry.render()
    assert 'fleetwatch_job_runs_total{job="rollup_minute",outcome="ok"}' in metrics
    assert 'fleetwatch_job_watermark_lag_seconds{job="device_hour"}' in metrics
    assert "outcome=\"failed\"" not in metrics
