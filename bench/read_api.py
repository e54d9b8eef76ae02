"""Read API benchmark (issue 9): reads beside ingest, query latency over a fleet's history, rollup job CPU.

    python bench/read_api.py            # full run (a few minutes)
    python bench/read_api.py --quick    # short run

1. **Rollup job CPU.** A DuckDB file gets minutes of raw inference spans at
   50,000 inferences/s (3M rows a minute, :mod:`bench.fleet_history`)
   through the Store with the collector's settings; the three rollup jobs
   (``JobRunner.run_due``, as the scheduler calls it) are timed in this
   process with ``time.process_time``: CPU seconds per minute of data.
2. **Latency over a fleet's history.** The same file gets 30 days of a
   1,000-device fleet's rollups; ``fleetwatch serve`` (with ``analytics``)
   serves it and each query kind is timed through the read API, one at a
   time: golden signals over 30 days, one device's spans over an hour,
   the fleet inventory.
3. **Ingest with and without read load**, same process: the ingest
   benchmark's load (:func:`bench.ingest.drive_load`, spans stamped with the
   current time) in alternating phases, alone and while reader threads
   loop over golden signals, device spans and the inventory with a pause
   between queries. Checkpoint counts, failures and seconds come from the
   server's ``/metrics`` per phase.

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analytics.api.client import ApiError, ReadApiClient  # noqa: E402
from analytics.jobs.framework import JobRunner  # noqa: E402
from analytics.rollups import rollup_jobs  # noqa: E402
from analytics.schema import ANALYTICS  # noqa: E402
from bench.fleet_history import Fleet, load_span_minutes, write_rollups  # noqa: E402
from bench.harness import CollectorProcess, metric_value, wait_until  # noqa: E402
from bench.ingest import _proc_stat as proc_stat  # noqa: E402
from bench.ingest import drive_load, machine  # noqa: E402
from bench.otlp_shapes import realistic_trace_request  # noqa: E402
from collector.config import default_config  # noqa: E402
from collector.store.duckdb_exporter import collector_store  # noqa: E402
from collector.selfmetrics import CollectorMetrics  # noqa: E402

def serve_config(api_readers: int) -> dict:
    return {"analytics": {"workers": 2}, "api": {"readers": api_readers}}


def current_trace_request(n_spans: int, seed: int = 0, device: int = 0) -> bytes:
    """The ingest benchmark's request with its spans moved to start now, as a live device sends them."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(realistic_trace_request(n_spans, seed=seed, device=device))
    spans = request.resource_spans[0].scope_spans[0].spans
    shift = time.time_ns() - spans[0].start_time_unix_nano
    for span in spans:
        span.start_time_unix_nano += shift
        span.end_time_unix_nano += shift
    return request.SerializeToString()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary_ms(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": _ms(percentile(values, 0.5)), "p95_ms": _ms(percentile(values, 0.95)),
            "max_ms": _ms(max(values) if values else None)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# -- 1. rollup job CPU -----------------------------------------------------------------------------
def build_history(db: Path, fleet: Fleet, minutes: int, days: int) -> dict:
    """Spans for ``minutes`` minutes in the last full hour, the jobs run over them, then 30 days of rollups."""
    config = dataclasses.replace(default_config().exporters.duckdb, path=str(db))
    store = collector_store(config, CollectorMetrics(), [ANALYTICS])
    store.open()
    try:
        hour = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0) - timedelta(hours=1)
        started = time.perf_counter()
        spans = load_span_minutes(store, fleet, hour, minutes)
        load_seconds = time.perf_counter() - started
        runner = JobRunner(store, rollup_jobs())
        jobs = {}
        for job in runner.jobs.values():
            now = hour + timedelta(hours=1) + job.delay + timedelta(seconds=1)
            cpu, wall = time.process_time(), time.perf_counter()
            report = runner.run_due(job.name, now)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if report.error:
                raise RuntimeError(f"job {job.name} failed: {report.error}")
            jobs[job.name] = {"cpu_seconds": round(cpu, 2), "wall_seconds": round(wall, 2),
                              "cpu_seconds_per_minute_of_data": round(cpu / minutes, 3),
                              "rows_out": report.rows_out}
        counted = store.reads.run("SELECT sum(inferences) AS n FROM rollup_minute", max_rows=1,
                                  timeout=600).table["n"][0].as_py()
        assert counted == spans, f"the minute rollups count {counted} inferences of {spans} spans"
        started = time.perf_counter()
        rollup_rows = write_rollups(store, fleet, hour, days=days)
        rollup_seconds = time.perf_counter() - started
    finally:
        store.close()
    return {"hour": hour, "spans": spans, "span_load_seconds": round(load_seconds, 1), "jobs": jobs,
            "rollup_rows": rollup_rows, "rollup_write_seconds": round(rollup_seconds, 1),
            "file_bytes": db.stat().st_size}


# -- 2. query latency ------------------------------------------------------------------------------
def query_kinds(hour: datetime | None) -> dict[str, dict]:
    """The query kinds timed, by name: golden signals, one device's spans, the inventory."""
    since = hour.isoformat() + "Z" if hour else "-1h"
    until = (hour + timedelta(hours=1)).isoformat() + "Z" if hour else "now"
    return {
        "golden_signals_30d": {"name": "golden_signals", "since": "-30d"},
        "golden_signals_30d_by_model_version": {"name": "golden_signals", "since": "-30d",
                                                "group_by": "model_version"},
        "golden_signals_1h_by_site": {"name": "golden_signals", "since": since, "until": until,
                                      "group_by": "site"},
        "device_spans_1h": {"name": "device_spans", "device_id": "dev-00007", "since": since,
                            "until": until},
        "fleet_inventory": {"name": "fleet_inventory"},
    }


def api_ready(client: ReadApiClient) -> bool:
    """The API listens (it starts after the OTLP receivers report ready) and serves the rollup queries."""
    try:
        return "golden_signals" in {q["name"] for q in client.queries()}
    except ApiError:
        return False


def timed_query(client: ReadApiClient, kind: dict) -> tuple[float, int]:
    params = {k: v for k, v in kind.items() if k != "name"}
    started = time.perf_counter()
    table = client.query_arrow(kind["name"], **params)
    return time.perf_counter() - started, table.num_rows


def measure_latency(client: ReadApiClient, kinds: dict[str, dict], rounds: int, server_pid: int) -> dict:
    """Each kind ``rounds`` times, one query at a time: latency and the server's CPU per query."""
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, float] = {k: 0.0 for k in kinds}
    rows: dict[str, int] = {}
    for _ in range(rounds):
        for name, kind in kinds.items():
            before = proc_stat(server_pid)[0]
            seconds, rows[name] = timed_query(client, kind)
            cpu[name] += proc_stat(server_pid)[0] - before
            times[name].append(seconds)
    return {name: {**summary_ms(times[name]), "server_cpu_ms_per_query": round(cpu[name] / rounds * 1000, 1),
                   "rows": rows[name]} for name in kinds}


# -- 3. ingest with and without readers ------------------------------------------------------------
class Readers:
    """``count`` threads looping over the query kinds (a pause between queries), latency per kind."""

    def __init__(self, url: str, kinds: dict[str, dict], count: int, pause: float) -> None:
        self.client = ReadApiClient(url, timeout=120)
        self.kinds = kinds
        self.pause = pause
        self.times: dict[str, list[float]] = {k: [] for k in kinds}
        self.errors: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(count)]

    def _loop(self, offset: int) -> None:
        names = list(self.kinds)
        i = offset
        while not self._stop.is_set():
            name = names[i % len(names)]
            i += 1
            try:
                seconds, _ = timed_query(self.client, self.kinds[name])
                with self._lock:
                    self.times[name].append(seconds)
            except ApiError as exc:
                with self._lock:
                    self.errors[f"{name}: HTTP {exc.status}"] = self.errors.get(f"{name}: HTTP {exc.status}", 0) + 1
            self._stop.wait(self.pause)

    def start(self) -> None:
        self.started = time.perf_counter()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        self.seconds = time.perf_counter() - self.started

    @property
    def queries(self) -> int:
        return sum(len(v) for v in self.times.values()) + sum(self.errors.values())


CHECKPOINT_FIGURES = {
    "checkpoints": "fleetwatch_exporter_checkpoints_total",
    "checkpoint_failures": "fleetwatch_exporter_checkpoint_failures_total",
    "checkpoint_seconds": "fleetwatch_exporter_checkpoint_duration_seconds_sum",
    "job_seconds": "fleetwatch_job_seconds_total",
    "write_failures": "fleetwatch_exporter_write_failures_total",
}


def server_counters(collector: CollectorProcess) -> dict[str, float]:
    text = collector.metrics_text()
    return {key: metric_value(text, name) for key, name in CHECKPOINT_FIGURES.items()}


def ingest_phase(collector: CollectorProcess, load: dict, seed_base: int, readers: Readers | None) -> dict:
    before = server_counters(collector)
    try:
        result = drive_load(collector.http_port, collector.proc.pid, **load, shape=current_trace_request,
                            seed_base=seed_base, on_start=readers.start if readers else None)
    finally:
        if readers is not None:
            readers.stop()
    after = server_counters(collector)
    return {"spans_per_second": round(result["spans_per_second"]), "spans_acked": result["spans_acked"],
            "requests_failed": result["requests_failed"], "wall_seconds": round(result["wall_seconds"], 1),
            "server_cpu_seconds": round(result["server_cpu_seconds"], 1),
            **{key: round(after[key] - before[key], 2) for key in CHECKPOINT_FIGURES}}


LOOP_KINDS = ("golden_signals_30d", "golden_signals_1h_by_site", "device_spans_1h", "fleet_inventory")


def run_ingest(collector: CollectorProcess, load: dict, rounds: int, reader_count: int, pause: float,
               loop_kinds: tuple[str, ...] = LOOP_KINDS) -> dict:
    """Alternating phases (alone, with readers, ...) so that drift on a shared machine hits both alike."""
    kinds = {k: v for k, v in query_kinds(None).items() if k in loop_kinds}
    phases: dict[str, list[dict]] = {"alone": [], "with_readers": []}
    all_readers = []
    for r in range(rounds):
        phases["alone"].append(ingest_phase(collector, load, seed_base=2 * r * 1_000_000, readers=None))
        readers = Readers(collector.api_url, kinds, reader_count, pause)
        all_readers.append(readers)
        phases["with_readers"].append(ingest_phase(collector, load, seed_base=(2 * r + 1) * 1_000_000,
                                                   readers=readers))
        print(f"round {r + 1}: alone {phases['alone'][-1]['spans_per_second']:,} spans/s, "
              f"with readers {phases['with_readers'][-1]['spans_per_second']:,} spans/s", flush=True)
    times = {k: [t for readers in all_readers for t in readers.times[k]] for k in kinds}
    errors: dict[str, int] = {}
    for readers in all_readers:
        for key, count in readers.errors.items():
            errors[key] = errors.get(key, 0) + count
    alone = sum(p["spans_acked"] for p in phases["alone"]) / sum(p["wall_seconds"] for p in phases["alone"])
    loaded = (sum(p["spans_acked"] for p in phases["with_readers"])
              / sum(p["wall_seconds"] for p in phases["with_readers"]))
    read_seconds = sum(readers.seconds for readers in all_readers)
    return {"phases": phases, "spans_per_second_alone": round(alone), "spans_per_second_with_readers": round(loaded),
            "ratio": round(loaded / alone, 3), "read_latency_under_ingest": {k: summary_ms(v) for k, v in times.items()},
            "reads_per_second": round(sum(r.queries for r in all_readers) / read_seconds, 2), "read_errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--readers", type=int, default=4, help="reader threads during the loaded phases")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds each reader waits between queries")
    parser.add_argument("--requests-per-process", type=int, help="requests of 512 spans per client process and phase")
    parser.add_argument("--rounds", type=int, help="pairs of phases (alone, with readers)")
    parser.add_argument("--loop", default=",".join(LOOP_KINDS), help="query kinds the readers loop over")
    parser.add_argument("--api-readers", type=int, default=2, help="the server's read pool size (api.readers)")
    args = parser.parse_args()
    minutes = 1 if args.quick else 3
    days = 30
    load = {"processes": 2, "threads": 32, "spans": 512,
            "requests_per_process": args.requests_per_process or (60 if args.quick else 1000)}
    rounds = args.rounds or (1 if args.quick else 2)
    fleet = Fleet(devices=1000, rate_per_s=50_000)
    workdir = Path(tempfile.mkdtemp(prefix="fw-bench-read-"))
    try:
        db = workdir / "fleet.duckdb"
        history = build_history(db, fleet, minutes, days)
        jobs = history["jobs"]
        print(f"rollup jobs over {minutes} min of spans at 50k/s: " + ", ".join(
            f"{name} {j['cpu_seconds_per_minute_of_data']:.2f} CPU s per minute of data" for name, j in jobs.items()),
            flush=True)
        collector = CollectorProcess(db, config=serve_config(args.api_readers)).start()
        try:
            client = ReadApiClient(collector.api_url, timeout=120)
            wait_until(lambda: api_ready(client), timeout=120, what="the read API")
            latency = measure_latency(client, query_kinds(history["hour"]), 5 if args.quick else 20, collector.proc.pid)
            for name, figures in latency.items():
                print(f"{name}: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, "
                      f"server CPU {figures['server_cpu_ms_per_query']} ms per query ({figures['rows']} rows)",
                      flush=True)
            ingest = run_ingest(collector, load, rounds, args.readers, args.pause, tuple(args.loop.split(",")))
        finally:
            code = collector.stop()
        if code != 0:
            raise RuntimeError(f"collector exited {code}:\n{collector.logs()}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"ingest alone {ingest['spans_per_second_alone']:,} spans/s, with {args.readers} readers "
          f"{ingest['spans_per_second_with_readers']:,} spans/s: ratio {ingest['ratio']}", flush=True)
    summary = {
        "benchmark": "read_api",
        "quick": args.quick,
        "machine": machine(),
        "load": load,
        "readers": args.readers,
        "reader_pause_seconds": args.pause,
        "api_readers": args.api_readers,
        "reader_loop": args.loop.split(","),
        "ingest_spans_per_second_alone": ingest["spans_per_second_alone"],
        "ingest_spans_per_second_with_readers": ingest["spans_per_second_with_readers"],
        "ingest_ratio_with_readers": ingest["ratio"],
        "reads_per_second": ingest["reads_per_second"],
        "read_errors": ingest["read_errors"],
        "read_latency_under_ingest": ingest["read_latency_under_ingest"],
        "phases": ingest["phases"],
        "read_latency_fleet_history": latency,
        "fleet": {"devices": fleet.devices, "groups": len(fleet.groups()[1]), "inferences_per_second": fleet.rate_per_s,
                  "days": days, "rollup_rows": history["rollup_rows"], "raw_span_minutes": minutes,
                  "raw_spans": history["spans"], "file_bytes": history["file_bytes"]},
        "rollup_jobs": jobs,
        "rollup_cpu_seconds_per_minute_of_data": round(sum(j["cpu_seconds_per_minute_of_data"] for j in jobs.values()), 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
