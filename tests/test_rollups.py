"""Golden-signal rollups and the window-job framework, against an independent numpy computation."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from analytics.jobs.framework import JobRunner
from analytics.latency_buckets import BOUNDS_MS, N_BUCKETS, quantile
from analytics.rollups import rollup_jobs
from analytics.jobs.scheduler import AnalyticsScheduler
from bench.harness import wait_until
from collector.config import default_config
from collector.request_log import RequestLogWriter
from collector.selfmetrics import Registry
from collector.store.bulk import ingest_request_log
from collector.store.database import Store
from collector.store.duckdb_exporter import DuckDBExporter
from collector.store.marks import compact_marks, next_seq, record_marks
from tests.analytics_data import MINUTES, T0, T0_NS, expected_rollup, fleet_requests, read, stored_rollup

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


class _Follower:
    """A task that runs behind rollup_minute, as the SLO evaluation runs behind its SLI jobs: it notes the
    watermark it saw at each run."""

    name = "follower"
    window = timedelta(hours=1)  # its own tick: the scheduler's longest, 20 s
    after = ("rollup_minute",)
    on_run = None
    watermark = None

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self.seen: list[datetime | None] = []

    def run_due(self) -> None:
        self.seen.append(self.runner.watermark("rollup_minute"))


def test_a_task_runs_as_soon_as_the_job_it_follows_has_run_not_at_its_next_tick(store):
    runner = JobRunner(store, rollup_jobs())
    follower = _Follower(runner)
    scheduler = AnalyticsScheduler(runner, Registry(), tasks=[follower])
    scheduler.start()
    try:
        # Both first run at start; the catch-up of these 90 minutes takes a second or two. Without the
        # nudge the follower's next run, and so its first sight of the caught-up job, would be 20 s later.
        wait_until(lambda: follower.seen and follower.seen[-1] is not None
                   and follower.seen[-1] > datetime.utcnow() - timedelta(minutes=5), timeout=15,
                   what="the follower to see rollup_minute caught up")
    finally:
        scheduler.shutdown()


def test_device_hours_match_the_raw_spans(store):
    runner = JobRunner(store, rollup_jobs())
    assert runner.run_due("device_hour", T0 + timedelta(hours=3)).error is None
    raw = read(store, "SELECT device_id, epoch_ns(start_time) AS t, status_code, cold_start, received_at, "
                      "site, firmware_version, model_name, model_version FROM span_rows WHERE name = 'inference'")
    expected = {}
    for row in raw.to_pylist():
        hour = T0.replace(minute=0) + timedelta(hours=(row["t"] - int((T0 - datetime(1970, 1, 1)).total_seconds()) * 10**9)
                                             // (3600 * 10**9))
        entry = expected.setdefault((hour, row["device_id"]), {"inferences": 0, "errors": 0, "cold_starts": 0,
                                                               "versions": set(), "site": row["site"]})
        entry["inferences"] += 1
        entry["errors"] += row["status_code"] == 2
        entry["cold_starts"] += bool(row["cold_start"])
        entry["versions"].add(f"{row['model_name']}:{row['model_version']}")
    stored = {(r["window_start"], r["device_id"]): {"inferences": r["inferences"], "errors": r["errors"],
                                                     "cold_starts": r["cold_starts"],
                                                     "versions": set(r["model_versions"]), "site": r["site"]}
              for r in read(store, "SELECT * FROM device_hour").to_pylist()}
    assert stored == expected
    assert len({hour for hour, _ in stored}) == 2


def _write_late(store, minute: datetime, shift: int) -> None:
    """What the writer does with a backlog: one old row and its mark, in one transaction."""
    def write(con):
        with Store.transaction(con):
            con.execute("CREATE TEMP TABLE late AS SELECT * REPLACE (?::TIMESTAMP_NS AS start_time, "
                        "span_id + ? AS span_id) FROM span_rows WHERE name = 'inference' LIMIT 1", [minute, shift])
            con.execute("INSERT INTO span_rows SELECT * FROM late")
            record_marks(con, next_seq(con), "span_rows", "late")
            con.execute("DROP TABLE late")

    store.submit(write).result()


def test_seen_marks_are_merged_per_minute_and_late_data_is_still_found(store):
    runner = JobRunner(store, rollup_jobs())
    run_all(runner, T0 + timedelta(hours=3))
    _write_late(store, T0 + timedelta(minutes=5, seconds=1), 11)  # a second mark for minute 5
    run_all(runner, T0 + timedelta(hours=3))
    before = read(store, "SELECT count(*) AS n, max(seq) AS top FROM ingest_marks").to_pylist()[0]
    floor = runner.marks_floor()
    assert floor == before["top"] > 0

    def merge(con):
        with Store.transaction(con):
            compact_marks(con, floor)

    store.submit(merge).result()
    after = read(store, "SELECT count(*) AS n, count(DISTINCT (table_name, minute)) AS minutes, max(seq) AS top "
                        "FROM ingest_marks").to_pylist()[0]
    assert after["n"] == after["minutes"] == before["n"] - 1 and after["top"] == before["top"]
    _write_late(store, T0 + timedelta(minutes=12, seconds=30), 7)
    report = runner.run_due("rollup_minute", T0 + timedelta(hours=3))
    assert [(s, reason) for s, _, reason in report.spans] == [(T0 + timedelta(minutes=12), "late-data")]
    assert stored_rollup(store, "rollup_minute") == expected_rollup(store, 60)


def test_a_gateway_merges_its_own_marks(tmp_path, monkeypatch):
    """Without jobs nobody reads the marks: the writer's hourly prune merges them to one row per minute."""

    monkeypatch.setattr(DuckDBExporter, "PRUNE_INTERVAL", 0.0)
    log_path, db = tmp_path / "gw.otlp.zst", tmp_path / "gw.duckdb"
    with RequestLogWriter(log_path) as log:
        for i, body in enumerate(fleet_requests(np.random.default_rng(3), n_devices=3, minutes=2, per_device=40,
                                                per_request=10)):
            log.append("traces", T0_NS + i, body)
    config = default_config()
    config.processors.batch.send_batch_size = 10  # a batch (and marks) per request
    ingest_request_log(db, log_path, config)
    gateway = Store(str(db))
    gateway.open()
    try:
        marks = read(gateway, "SELECT count(*) AS n, count(DISTINCT minute) AS minutes FROM ingest_marks "
                              "WHERE table_name = 'span_rows'").to_pylist()[0]
    finally:
        gateway.close()
    assert marks["n"] == marks["minutes"] <= 3
