"""The freshness SLI job against a Python computation over the receive times read back from the DuckDB file.

A small fleet with a known receive history (T0 = 2026-11-30 10:00, minutes from T0):

- ``dev-a`` (site-x, eu): a span every minute, 0..179, 5 s into the minute;
- ``dev-b`` (site-x, eu): gauges 0..30, silent, histograms again 71..179 (it comes back);
- ``dev-c`` (site-y, eu): logs 0..20, exactly on the minute, then silent for good (site-y goes silent);
- ``dev-d`` (site-z, us): histograms 0..50, then spans from site-x 51..179 (its newest telemetry moves it);
- a device without ``device.id`` at site-w, every minute: never counted;
- ``dev-a`` once more 30 days later (a stretch with nobody known in between).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from datetime import timedelta

import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from analytics.jobs.framework import JobRunner
from analytics.schema import ANALYTICS
from analytics.slo.freshness_job import TELEMETRY_TABLES
from analytics.slo.sli_job import SLI_TABLES, sli_jobs
from analytics.slo.spec import slos_from_dict
from bench.otlp_shapes import kv
from collector.request_log import RequestLogWriter
from collector.store.bulk import ingest_request_log
from collector.store.database import Store
from collector.store.marks import next_seq, record_marks
from collector.store.versions import COLLECTOR
from tests.analytics_data import T0, T0_NS, read

MINUTE_NS = 60 * 10**9
SPECS = slos_from_dict({"slos": [
    {"name": "fresh-by-site", "objective": 0.99, "group_by": ["site"],
     "sli": {"kind": "freshness", "max_staleness_minutes": 10, "known_for": "2h"}},
    {"name": "fresh-eu", "objective": 0.99, "filters": {"region": "eu"},
     "sli": {"kind": "freshness", "max_staleness_minutes": 5}},
    {"name": "success", "objective": 0.99},
]})
MONTH_LATER = 30 * 24 * 60


def _resource(device: str | None, site: str, region: str) -> list:
    attributes = [kv("service.name", "cam"), kv("fleet.site", site), kv("fleet.region", region),
                  kv("device.class", "jetson")]
    return attributes + ([kv("device.id", device)] if device else [])


def telemetry(signal: str, device: str | None, site: str, region: str, at_ns: int) -> tuple[str, bytes]:
    """One OTLP request of ``signal`` (span, gauge, histogram, log) from a device, its event time ``at_ns``."""
    if signal == "span":
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(_resource(device, site, region))
        span = rs.scope_spans.add().spans.add()
        span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), "inference"
        span.start_time_unix_nano, span.end_time_unix_nano = at_ns, at_ns + 5_000_000
        return "traces", request.SerializeToString()
    if signal == "log":
        request = ExportLogsServiceRequest()
        rl = request.resource_logs.add()
        rl.resource.attributes.extend(_resource(device, site, region))
        record = rl.scope_logs.add().log_records.add()
        record.time_unix_nano, record.body.string_value = at_ns, f"heartbeat {at_ns}"
        return "logs", request.SerializeToString()
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(_resource(device, site, region))
    metric = rm.scope_metrics.add().metrics.add()
    if signal == "gauge":
        metric.name = "device.cpu.utilization"
        point = metric.gauge.data_points.add()
        point.as_double = at_ns % 1000 / 1000
    else:
        metric.name = "ml.inference.duration"
        metric.histogram.aggregation_temporality = 2
        point = metric.histogram.data_points.add()
        point.count, point.sum = 1, 3.0
        point.explicit_bounds.extend([5.0])
        point.bucket_counts.extend([1, 0])
    point.time_unix_nano = at_ns
    return "metrics", request.SerializeToString()


def receive_plan() -> list[tuple[int, str, str | None, str, str]]:
    """(receive time ns, signal, device, site, region) of the docstring's fleet."""
    plan = []
    for m in range(180):
        at = T0_NS + m * MINUTE_NS
        plan.append((at + 5 * 10**9, "span", "dev-a", "site-x", "eu"))
        plan.append((at + 7 * 10**9, "span", None, "site-w", "eu"))
        if m <= 30 or m >= 71:
            plan.append((at + 20 * 10**9, "gauge" if m <= 30 else "histogram", "dev-b", "site-x", "eu"))
        if m <= 20:
            plan.append((at, "log", "dev-c", "site-y", "eu"))
        plan.append((at + 30 * 10**9, "histogram" if m <= 50 else "span", "dev-d",
                     "site-z" if m <= 50 else "site-x", "us"))
    plan.append((T0_NS + MONTH_LATER * MINUTE_NS + 10**9, "span", "dev-a", "site-x", "eu"))
    return plan


@pytest.fixture()
def fleet_store(tmp_path):
    db, log_path = tmp_path / "fresh.duckdb", tmp_path / "fresh.otlp.zst"
    with RequestLogWriter(log_path) as log:
        for received, signal, device, site, region in sorted(receive_plan(), key=lambda p: p[0]):
            signal_name, body = telemetry(signal, device, site, region, received - 10**9)
            log.append(signal_name, received, body)
    ingest_request_log(db, log_path)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    yield store
    store.close()


def expected(store, last_minute: int) -> dict:
    """(minute, slo, group) -> [good, total] from every telemetry row's receive time, per device with numpy."""
    union = " UNION ALL ".join(f"SELECT device_id, site, region, epoch_ns(received_at) AS r FROM {t} "
                               "WHERE device_id IS NOT NULL" for t in TELEMETRY_TABLES)
    rows = read(store, f"SELECT * FROM ({union}) ORDER BY device_id, r").to_pylist()
    by_device: dict = defaultdict(list)
    for row in rows:
        by_device[row["device_id"]].append(row)
    ends = T0_NS + (np.arange(last_minute + 1) + 1) * MINUTE_NS  # the end of each minute from T0 on
    out: dict = defaultdict(lambda: [0, 0])
    for history in by_device.values():
        received = np.array([h["r"] for h in history])
        newest = np.searchsorted(received, ends, side="left") - 1  # the newest receive before each minute's end
        for minute in np.flatnonzero(newest >= 0):
            last = history[newest[minute]]
            age = int(ends[minute]) - last["r"]
            window = (T0_NS + int(minute) * MINUTE_NS) // 10**9
            for spec in SPECS[:2]:
                if any(last[d] not in values for d, values in spec.filters.items()):
                    continue
                if age <= spec.sli.known_for_duration.total_seconds() * 10**9:
                    counts = out[(window, spec.name, json.dumps({d: last[d] for d in spec.group_by}, sort_keys=True))]
                    counts[0] += age <= spec.sli.max_staleness_minutes * MINUTE_NS
                    counts[1] += 1
    return dict(out)


def stored(store) -> dict:
    rows = read(store, "SELECT epoch(window_start)::BIGINT AS w, slo, group_key, good, total "
                       "FROM slo_freshness_minute").to_pylist()
    return {(r["w"], r["slo"], json.dumps(json.loads(r["group_key"]), sort_keys=True)): [r["good"], r["total"]]
            for r in rows}


def run(store, now_minutes: int) -> JobRunner:
    runner = JobRunner(store, sli_jobs(SPECS))
    report = runner.run_due("slo_freshness_minute", T0 + timedelta(minutes=now_minutes))
    assert report.error is None
    return runner


def at(minute: int) -> int:
    return T0_NS // 10**9 + minute * 60


def test_sli_tables_and_jobs_by_kind():
    assert SLI_TABLES == ("slo_sli_minute", "slo_freshness_minute")
    assert [job.name for job in sli_jobs(SPECS)] == ["slo_sli_minute", "slo_freshness_minute"]
    assert [job.name for job in sli_jobs(SPECS[2:])] == ["slo_sli_minute"]
    assert [job.name for job in sli_jobs(SPECS[:1])] == ["slo_freshness_minute"]


def test_known_and_fresh_devices_per_minute_and_group_equal_the_receive_times(fleet_store):
    run(fleet_store, MONTH_LATER + 60)
    got = stored(fleet_store)
    assert got == expected(fleet_store, MONTH_LATER + 58)  # minutes closed 30 s before "now"
    site = lambda name: json.dumps({"site": name})  # noqa: E731
    # dev-c's last log is at minute 20 exactly: fresh (10 min) through minute 29, known (2h) through minute 139.
    assert [got.get((at(m), "fresh-by-site", site("site-y"))) for m in (29, 30, 139, 140)] == [[1, 1], [0, 1], [0, 1], None]
    # site-y silent for 110 minutes: every one of them computed, every one bad.
    assert all(got[(at(m), "fresh-by-site", site("site-y"))] == [0, 1] for m in range(30, 140))
    # dev-b goes silent after minute 30 and comes back at 71; dev-d reports from site-x from minute 51.
    assert [got[(at(m), "fresh-by-site", site("site-x"))] for m in (39, 40, 45, 60, 70, 71)] == [
        [2, 2], [1, 2], [1, 2], [2, 3], [2, 3], [3, 3]]
    assert max(w for w, slo, group in got if group == site("site-z")) == at(50)
    assert not any("site-w" in group for _, _, group in got)  # no device.id: not a device
    # The default lookback (1d): dev-c counts in fresh-eu until a day after its last log.
    day = 24 * 60
    assert got[(at(day + 19), "fresh-eu", "{}")][1] - got[(at(day + 20), "fresh-eu", "{}")][1] == 1


def test_a_month_without_known_devices_costs_no_computation_per_minute(fleet_store):
    run(fleet_store, MONTH_LATER + 60)
    runs = read(fleet_store, "SELECT reason, epoch(window_start)::BIGINT AS s, epoch(window_end)::BIGINT AS e FROM job_runs "
                             "WHERE job = 'slo_freshness_minute'").to_pylist()
    computed = [r for r in runs if r["reason"] != "no-data"]
    assert len(computed) < 40  # about a day and three hours of known devices, then an hour: 60-minute chunks
    assert any(r["reason"] == "no-data" and r["e"] - r["s"] > 25 * 86400 for r in runs)
    # The month-later minute is computed again: dev-a alone, fresh.
    assert stored(fleet_store)[(at(MONTH_LATER), "fresh-by-site", json.dumps({"site": "site-x"}))] == [1, 1]


def test_re_running_gives_identical_rows_and_late_event_time_data_re_opens_nothing(fleet_store):
    runner = run(fleet_store, 200)
    first = read(fleet_store, "SELECT * FROM slo_freshness_minute ORDER BY ALL").to_pylist()
    assert first
    # A backlog received at minute 200 with event times of minute 40: marked like any write.

    def write_backlog(con):
        with Store.transaction(con):
            con.execute("CREATE TEMP TABLE backlog AS SELECT * REPLACE (?::TIMESTAMP_NS AS start_time, "
                        "?::TIMESTAMP_NS AS received_at) FROM span_rows WHERE device_id = 'dev-a' LIMIT 1",
                        [T0 + timedelta(minutes=40), T0 + timedelta(minutes=200, seconds=10)])
            con.execute("INSERT INTO span_rows SELECT * FROM backlog")
            record_marks(con, next_seq(con), "span_rows", "backlog")
            con.execute("DROP TABLE backlog")

    fleet_store.submit(write_backlog).result()
    report = runner.run_due("slo_freshness_minute", T0 + timedelta(minutes=202))
    assert [r for _, _, r in report.spans] == ["scheduled"]  # minutes 199..200: nothing behind the watermark
    assert read(fleet_store, "SELECT * FROM slo_freshness_minute WHERE window_start < $w ORDER BY ALL",
                {"w": T0 + timedelta(minutes=199)}).to_pylist() == first
    fleet_store.submit(lambda con: con.execute("DELETE FROM job_state")).result()
    run(fleet_store, 202)
    assert read(fleet_store, "SELECT * FROM slo_freshness_minute WHERE window_start < $w ORDER BY ALL",
                {"w": T0 + timedelta(minutes=199)}).to_pylist() == first
    assert stored(fleet_store) == expected(fleet_store, 200)

