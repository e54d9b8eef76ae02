"""SLI job benchmark (issue 10): CPU per minute of data for the SLI jobs, against the golden-signal rollup.

    python bench/slo_sli.py            # 5 minutes of spans
    python bench/slo_sli.py --quick    # 2 minutes

1. **Event SLIs.** A DuckDB file gets minutes of raw inference spans at
   50,000 inferences/s from a 1,000-device fleet (3M rows a minute,
   :mod:`bench.fleet_history`) through the Store with the collector's
   settings. The golden-signal minute rollup and the event SLI job with
   ten SLOs (:data:`SPECS`: success, latency, deployment and freshness,
   grouped by model and site) are run over the same minutes
   (``JobRunner.run_due``, as the scheduler calls it) and timed with
   ``time.process_time``: CPU seconds per minute of data, and their ratio.
   For comparison, the same event SLOs one scan each (the job as it was).
2. **Freshness.** The freshness job computes the last of those minutes
   alone (as the scheduler does once caught up) for the same 1,000 devices,
   with a day of per-device receive history before them
   (``device_receive_minute``, one row per device and minute, as a fleet
   reporting every minute leaves it): CPU seconds for that one minute.

:func:`measure_sli_jobs` is importable (``bench/slo.py``); the last line of
output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analytics.jobs.framework import JobOutput, JobRunner  # noqa: E402
from analytics.rollups import GoldenSignalsMinute  # noqa: E402
from analytics.schema import ANALYTICS  # noqa: E402
from analytics.slo.freshness_job import PRESENCE_TABLE, FreshnessMinute  # noqa: E402
from analytics.slo.sli_job import SliMinute, event_sli_sql  # noqa: E402
from analytics.slo.spec import slos_from_dict  # noqa: E402
from bench.fleet_history import Fleet, load_span_minutes  # noqa: E402
from bench.ingest import machine  # noqa: E402
from collector.config import default_config  # noqa: E402
from collector.selfmetrics import CollectorMetrics  # noqa: E402
from collector.store.database import Store  # noqa: E402
from collector.store.duckdb_exporter import collector_store  # noqa: E402

# Ten SLOs of mixed kinds, grouped by model and site as a fleet's SLO file would be.
SPECS = slos_from_dict({"slos": [
    {"name": "success-model-site", "objective": 0.995, "group_by": ["model_name", "site"]},
    {"name": "success-version", "objective": 0.99, "group_by": ["model_name", "model_version"]},
    {"name": "yolo-success-site", "objective": 0.999, "group_by": ["site"], "filters": {"model_name": "yolov8n"}},
    {"name": "latency-20ms", "objective": 0.95, "sli": {"kind": "latency", "threshold_ms": 20},
     "group_by": ["model_name", "site"]},
    {"name": "latency-50ms", "objective": 0.99, "sli": {"kind": "latency", "threshold_ms": 50},
     "group_by": ["model_name"]},
    {"name": "latency-12ms-eu", "objective": 0.5, "sli": {"kind": "latency", "threshold_ms": 12.5},
     "group_by": ["site"], "filters": {"region": "eu-west"}},
    {"name": "ota-region", "objective": 0.95, "sli": {"kind": "deployment"}, "group_by": ["region"]},
    {"name": "ota-site", "objective": 0.9, "sli": {"kind": "deployment"}, "group_by": ["site"]},
    {"name": "fresh-site", "objective": 0.99, "sli": {"kind": "freshness", "max_staleness_minutes": 5},
     "group_by": ["site"]},
    {"name": "fresh-region", "objective": 0.98, "sli": {"kind": "freshness", "max_staleness_minutes": 15},
     "group_by": ["region"]},
]})


def _timed(runner: JobRunner, name: str, now: datetime) -> dict:
    cpu, wall = time.process_time(), time.perf_counter()
    report = runner.run_due(name, now)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if report.error:
        raise RuntimeError(f"job {name} failed: {report.error}")
    return {"cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 3), "rows_out": report.rows_out}


def _write_receive_history(store: Store, fleet: Fleet, first_minute: datetime, history: timedelta) -> int:
    """One ``device_receive_minute`` row per device and minute of ``history`` before ``first_minute``."""
    minutes = int(history / timedelta(minutes=1))

    def write(con) -> None:
        con.register("fleet_devices", fleet.table())
        try:
            with Store.transaction(con):
                con.execute(f"""
                    INSERT INTO {PRESENCE_TABLE}
                    SELECT m.w, f.device_id, f.site, f.region, f.device_class,
                           (m.w + INTERVAL 30 SECOND)::TIMESTAMP_NS, 50
                    FROM (SELECT $first - INTERVAL 1 MINUTE * (1 + range) AS w FROM range($minutes)) m, fleet_devices f
                """, {"first": first_minute, "minutes": minutes})
        finally:
            con.unregister("fleet_devices")

    store.submit(write).result()
    return minutes * fleet.devices


def _sli_rows(store: Store) -> list[dict]:
    return store.reads.run("SELECT * FROM slo_sli_minute ORDER BY ALL", max_rows=10**7, timeout=600).table.to_pylist()


def measure_sli_jobs(workdir: Path, minutes: int = 1, fleet: Fleet | None = None) -> dict:
    """Load ``minutes`` of spans at the fleet's rate and time the rollup, the SLI jobs and per-SLO scans."""
    fleet = fleet or Fleet(devices=1000, rate_per_s=50_000)
    config = dataclasses.replace(default_config().exporters.duckdb, path=str(workdir / "sli.duckdb"))
    store = collector_store(config, CollectorMetrics(), [ANALYTICS])
    store.open()
    try:
        first = datetime.now(timezone.utc).replace(tzinfo=None, second=0, microsecond=0) - timedelta(hours=1)
        spans = load_span_minutes(store, fleet, first, minutes)
        history_rows = _write_receive_history(store, fleet, first, timedelta(days=1))
        now = first + timedelta(minutes=minutes, seconds=31)
        events = SliMinute(SPECS)
        runner = JobRunner(store, [GoldenSignalsMinute(), events, FreshnessMinute(SPECS)])
        rollup = _timed(runner, "rollup_minute", now)
        sli = _timed(runner, "slo_sli_minute", now)
        # Freshness as the scheduler runs it once caught up: the last minute alone, after the others.
        if minutes > 1:
            _timed(runner, "slo_freshness_minute", now - timedelta(minutes=1))
        freshness = _timed(runner, "slo_freshness_minute", now)
        shared = _sli_rows(store)
        assert sum(r["total"] for r in shared if r["slo"] == "success-model-site") == spans
        # The event SLOs one scan each, as the job computed them before it shared one scan: the same rows.
        separate = _timed(JobRunner(store, [_OneScanEach(events.specs)]), _OneScanEach.name, now)
        assert _sli_rows(store) == shared, "one scan per SLO and the shared scan disagree"
    finally:
        store.close()
    per_minute = lambda figures: round(figures["cpu_seconds"] / minutes, 3)  # noqa: E731
    return {
        "minutes": minutes, "spans": spans, "devices": fleet.devices, "slos": len(SPECS),
        "event_slos": len(events.specs), "receive_history_rows": history_rows,
        "rollup_minute_cpu_s_per_minute": per_minute(rollup),
        "slo_sli_minute_cpu_s_per_minute": per_minute(sli),
        "sli_over_rollup_cpu_ratio": round(sli["cpu_seconds"] / rollup["cpu_seconds"], 2),
        "one_scan_per_slo_cpu_s_per_minute": per_minute(separate),
        "one_scan_per_slo_over_shared_scan_ratio": round(separate["cpu_seconds"] / sli["cpu_seconds"], 2),
        "slo_freshness_minute_cpu_s_for_the_last_minute": freshness["cpu_seconds"],
        "jobs": {"rollup_minute": rollup, "slo_sli_minute": sli, "one_scan_per_slo": separate,
                 "slo_freshness_minute": freshness},
    }


class _OneScanEach(SliMinute):
    """The event SLOs with one raw scan per SLO (for comparison only; writes nowhere new)."""

    name = "one_scan_per_slo"
    outputs = ("slo_sli_minute",)

    def __init__(self, specs) -> None:
        super().__init__(specs)
        self.queries = [event_sli_sql([spec]) for spec in self.specs]

    def compute(self, read, start, end):
        tables = []
        for sql in self.queries:
            self.sql = sql
            tables.append(super().compute(read, start, end).tables[self.outputs[0]])
        tables = [t for t in tables if t is not None]
        return JobOutput({self.outputs[0]: pa.concat_tables(tables) if tables else None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two minutes of spans instead of five")
    args = parser.parse_args()
    minutes = 2 if args.quick else 5
    workdir = Path(tempfile.mkdtemp(prefix="fw-bench-sli-"))
    try:
        figures = measure_sli_jobs(workdir, minutes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{figures['spans']:,} spans over {minutes} min at 50k/s, {figures['slos']} SLOs: "
          f"rollup_minute {figures['rollup_minute_cpu_s_per_minute']} CPU s per minute, "
          f"slo_sli_minute {figures['slo_sli_minute_cpu_s_per_minute']} "
          f"(ratio {figures['sli_over_rollup_cpu_ratio']}), one scan per SLO "
          f"{figures['one_scan_per_slo_cpu_s_per_minute']}; freshness of {figures['devices']:,} devices "
          f"{figures['slo_freshness_minute_cpu_s_for_the_last_minute']} CPU s for one minute", flush=True)
    print(json.dumps({"benchmark": "slo_sli", "quick": args.quick, "machine": machine(), **figures}), flush=True)


if __name__ == "__main__":
    main()
