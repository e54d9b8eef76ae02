"""The read API benchmark's synthetic fleet (bench/fleet_history.py) has the shapes the rollup jobs write."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from analytics.jobs.framework import JobRunner
from analytics.latency_buckets import COLUMNS as LATENCY_COLUMNS
from analytics.rollups import rollup_jobs
from analytics.schema import ANALYTICS
from bench.fleet_history import Fleet, load_span_minutes, write_rollups
from collector.config import default_config
from collector.store.duckdb_exporter import collector_store
from collector.selfmetrics import CollectorMetrics

HOUR = datetime(2026, 11, 30, 10, 0)


def _store(tmp_path):
    config = dataclasses.replace(default_config().exporters.duckdb, path=str(tmp_path / "fleet.duckdb"))
    store = collector_store(config, CollectorMetrics(), [ANALYTICS])
    store.open()
    return store


def _rows(store, sql: str) -> list[tuple]:
    table = store.reads.run(sql, max_rows=100_000, timeout=60).table
    return list(zip(*(column.to_pylist() for column in table.columns)))


def test_synthetic_rollups_are_whole_histograms_for_every_group_and_window(tmp_path):
    fleet = Fleet(devices=40, rate_per_s=400)
    store = _store(tmp_path)
    try:
        written = write_rollups(store, fleet, HOUR, days=2, minute_hours=3)
        groups = len(fleet.groups()[1])
        assert written == {"rollup_hour": groups * 48, "rollup_minute": groups * 180, "device_hour": 40 * 48,
                           "devices": 40}
        buckets = " + ".join(LATENCY_COLUMNS)
        for table, windows in (("rollup_hour", 48), ("rollup_minute", 180)):
            assert _rows(store, f"SELECT count(*) FILTER (WHERE {buckets} <> inferences), count(DISTINCT window_start), "
                                f"max(window_start) FROM {table}") == [(0, windows, HOUR - (timedelta(hours=1)
                                                                           if table == "rollup_hour" else timedelta(minutes=1)))]
        # 400 inferences/s within the daily cycle (±30 %).
        (per_second,), = _rows(store, "SELECT sum(inferences) / (48 * 3600) FROM rollup_hour")
        assert 280 < per_second < 520
    finally:
        store.close()


def test_synthetic_spans_roll_up_through_the_real_jobs(tmp_path):
    fleet = Fleet(devices=40, rate_per_s=2000)
    store = _store(tmp_path)
    try:
        spans = load_span_minutes(store, fleet, HOUR, minutes=2)
        assert spans == 240_000
        runner = JobRunner(store, rollup_jobs())
        for job in runner.jobs.values():
            report = runner.run_due(job.name, HOUR + timedelta(hours=1) + job.delay)
            assert report.error is None
        assert _rows(store, "SELECT sum(inferences), count(DISTINCT window_start) FROM rollup_minute") == [(spans, 2)]
        assert _rows(store, "SELECT sum(inferences), count(*) FROM device_hour") == [(spans, 40)]
        (groups,), = _rows(store, "SELECT count(*) FROM rollup_hour")
        assert groups == len(fleet.groups()[1])
        (errors,), = _rows(store, "SELECT sum(errors) / sum(inferences) FROM rollup_hour")
        assert 0.04 < errors < 0.06
    finally:
        store.close()
