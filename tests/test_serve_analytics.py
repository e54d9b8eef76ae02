"""`fleetwatch serve` with its read API and analytics jobs, for real: subprocesses, sockets, kill -9."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from analytics.api.client import ApiError, ReadApiClient
from analytics.schema import ANALYTICS
from bench.harness import CollectorProcess, jobs_caught_up, metric_value, post, wait_until
from collector.store.bulk import ingest_request_log
from collector.request_log import RequestLogWriter
from collector.store.database import Store
from collector.store.versions import COLLECTOR
from tests.analytics_data import ADMIN, READ, analytics_config, expected_rollup, fleet_requests, read, stored_rollup

HOURS = 72


def history_start(hours: int) -> datetime:
    """A whole hour far enough back that ``hours`` of history all lie in the past."""
    return (datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=hours + 2)).replace(
        minute=0, second=0, microsecond=0)


def load_history(db, hours: int = HOURS, seed: int = 11) -> datetime:
    """``hours`` of a 12-device fleet's inferences ending over an hour ago, loaded through the bulk path."""
    start = history_start(hours)
    start_ns = int((start - datetime(1970, 1, 1)).total_seconds()) * 10**9
    log_path = db.with_suffix(".otlp.zst")
    with RequestLogWriter(log_path) as log:
        for i, body in enumerate(fleet_requests(np.random.default_rng(seed), minutes=hours * 60, per_device=900,
                                                start_ns=start_ns)):
            log.append("traces", start_ns + hours * 3600 * 10**9 + i, body)
    ingest_request_log(db, log_path)
    return start


def caught_up(collector: CollectorProcess) -> bool:
    return jobs_caught_up(collector.metrics_text())


def open_store(db) -> Store:
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS])
    store.open()
    return store


def test_read_api_and_cli_against_a_served_file(tmp_path):
    db = tmp_path / "central.duckdb"
    start = load_history(db, hours=3)
    with CollectorProcess(db, config=analytics_config(timeout="1s")) as central:
        wait_until(lambda: caught_up(central), timeout=300, what="jobs caught up")
        client = ReadApiClient(central.api_url, token=READ)
        names = {q["name"] for q in client.queries()}
        assert {"golden_signals", "fleet_inventory", "model_versions", "device_spans"} <= names
        signals = client.query("golden_signals", since=start, until=start + timedelta(hours=3), step="1h").records()
        assert sum(r["inferences"] for r in signals) == 12 * 900
        with pytest.raises(ApiError) as refused:
            ReadApiClient(central.api_url).queries()
        assert refused.value.status == 401
        env = {**os.environ, "FLEETWATCH_API_TOKEN": READ}
        cli = [sys.executable, "-m", "fleetwatch.cli"]
        table = subprocess.run(cli + ["query", "fleet_inventory", "--url", central.api_url, "--param", "stale_after=1d",
                                      "--format", "csv"], capture_output=True, text=True, env=env, timeout=60)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.strip().splitlines()
        assert lines[0].startswith("device_id,status,") and len(lines) == 13
        bad = subprocess.run(cli + ["query", "golden_signals", "--url", central.api_url, "--param", "since=soon"],
                             capture_output=True, text=True, env=env, timeout=60)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "parameter 'since'" in bad.stderr
        sql = subprocess.run(cli + ["sql", "SELECT count(*) AS n FROM spans WHERE name = 'inference'", "--url", central.api_url,
                                    "--format", "json"], capture_output=True, text=True,
                             env={**env, "FLEETWATCH_API_TOKEN": ADMIN}, timeout=60)
        assert sql.returncode == 0 and sql.stdout.strip() == '{"n": 10800}', sql.stderr
        refused_sql = subprocess.run(cli + ["sql", "DELETE FROM spans", "--url", central.api_url], capture_output=True,
                                     text=True, env={**env, "FLEETWATCH_API_TOKEN": ADMIN}, timeout=60)
        assert refused_sql.returncode == 1 and "refused: only a read-only SELECT" in refused_sql.stderr
        slow = "SELECT count(*) FROM span_rows a, span_rows b, range(100000)"
        with pytest.raises(ApiError) as stopped:
            ReadApiClient(central.api_url, token=ADMIN).sql(slow)
        assert stopped.value.status == 504
        assert client.query("device_spans", device_id="dev-01", since="-3650d").rows  # still serving
    store = open_store(db)
    try:
        assert read(store, "SELECT count(*) AS n FROM span_rows WHERE name = 'inference'")["n"][0].as_py() == 10800
    finally:
        store.close()


def test_a_gateway_without_analytics_serves_only_raw_queries(tmp_path):
    db = tmp_path / "gw.duckdb"
    with CollectorProcess(db) as gateway:
        names = {q["name"] for q in ReadApiClient(gateway.api_url).queries()}
        assert names == {"device_spans", "trace_spans", "device_metrics"}
        assert "fleetwatch_job_runs_total" not in gateway.metrics_text()


def test_kill_9_mid_run_then_restart_leaves_rollups_equal_to_a_recompute(tmp_path):
    db = tmp_path / "central.duckdb"
    start = load_history(db)
    central = CollectorProcess(db, config=analytics_config()).start()
    try:
        wait_until(lambda: metric_value(central.metrics_text(), "fleetwatch_job_runs_total",
                                        job="rollup_minute", outcome="ok") >= 1, timeout=300, what="a first run")
    finally:
        central.kill()
    store = open_store(db)
    try:
        runs_before = read(store, "SELECT count(*) AS n FROM job_runs")["n"][0].as_py()
        minute_done = read(store, "SELECT watermark AS w FROM job_state WHERE job = 'rollup_minute'")["w"]
        assert minute_done[0].as_py() < start + timedelta(hours=HOURS)  # killed with windows still to compute
    finally:
        store.close()
    assert runs_before >= 1
    with CollectorProcess(db, config=analytics_config()) as central:
        wait_until(lambda: caught_up(central), timeout=300, what="jobs caught up after the restart")
    store = open_store(db)
    try:
        for table, seconds in (("rollup_minute", 60), ("rollup_hour", 3600)):
            assert stored_rollup(store, table) == expected_rollup(store, seconds), table
        spans = read(store, "SELECT job, window_start, window_end FROM job_runs WHERE outcome = 'ok' "
                            "ORDER BY job, window_start").to_pylist()
        for job in ("rollup_minute", "rollup_hour", "device_hour"):
            mine = [(r["window_start"], r["window_end"]) for r in spans if r["job"] == job]
            # Contiguous: every window once, none missing, from the first data to the watermark.
            assert all(a[1] == b[0] for a, b in zip(mine, mine[1:])), job
            assert mine[0][0] == start
    finally:
        store.close()


def test_a_late_backlog_recomputes_exactly_the_windows_it_touches(tmp_path):
    db = tmp_path / "central.duckdb"
    start = load_history(db, hours=3)
    start_ns = int((start - datetime(1970, 1, 1)).total_seconds()) * 10**9
    with CollectorProcess(db, config=analytics_config()) as central:
        wait_until(lambda: caught_up(central), timeout=300, what="jobs caught up")
        # A device that was offline uploads two old inferences, both in the history's 8th minute.
        late = next(fleet_requests(np.random.default_rng(5), n_devices=1, per_request=2, minutes=1, per_device=2,
                                   start_ns=start_ns + 7 * 60 * 10**9))
        assert post(central.http_port, "/v1/traces", late)[0] == 200
        def recomputed() -> list:
            store_rows = ReadApiClient(central.api_url, token=ADMIN).sql(
                "SELECT window_start FROM job_runs WHERE job = 'rollup_minute' AND reason = 'late-data' "
                "ORDER BY window_start").rows
            return store_rows
        wait_until(lambda: recomputed() != [], timeout=120, what="the late window recomputed")
        late_windows = recomputed()
    assert late_windows == [[(start + timedelta(minutes=7)).isoformat() + "Z"]]
    store = open_store(db)
    try:
        assert stored_rollup(store, "rollup_minute") == expected_rollup(store, 60)
    finally:
        store.close()
