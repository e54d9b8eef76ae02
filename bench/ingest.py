"""Ingest benchmark: many concurrent OTLP/HTTP protobuf clients → collector subprocess → DuckDB.

Counts end to end: a span counts once its request was acknowledged, which the
collector does only after the batch holding it is committed to DuckDB.

    python bench/ingest.py            # full run (about a minute)
    python bench/ingest.py --quick    # short run

Reports spans/s, collector CPU seconds per million spans, peak RSS, bytes on
disk per span and disk bytes as a share of the uncompressed OTLP received.
Baseline, in the same run and with the same load: a null OTLP/HTTP sink that
reads each body and answers 200, so the ratio shows what the collector costs
on top of the machine's raw HTTP capacity. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.otlp_shapes import realistic_trace_request  # noqa: E402
from bench.harness import CollectorProcess, free_port  # noqa: E402


def _proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds user+system, peak RSS bytes) of a process, including its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return cpu, peak


def _client_worker(worker: int, n_requests: int, spans: int, port: int, threads: int,
                   start_barrier, results, shape, seed_base: int) -> None:
    bodies = [shape(spans, seed=seed_base + worker * 100_000 + i, device=(worker * 997 + i) % 5000)
              for i in range(n_requests)]
    raw_bytes = sum(len(b) for b in bodies)
    lock = threading.Lock()
    state = {"acked": 0, "failed": 0, "next": 0}

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                index = state["next"]
                state["next"] += 1
            if index >= len(bodies):
                break
            body = bodies[index]
            while True:
                conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
                if response.status not in (429, 503):
                    with lock:
                        state["failed"] += 1
                    break
                time.sleep(float(response.getheader("Retry-After", "1")))
            if response.status == 200:
                with lock:
                    state["acked"] += spans
        conn.close()

    start_barrier.wait()
    started = time.perf_counter()
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put({"worker": worker, "acked": state["acked"], "failed": state["failed"], "raw_bytes": raw_bytes,
                 "started": started, "finished": time.perf_counter()})


def drive_load(port: int, pid: int, *, processes: int, threads: int, requests_per_process: int, spans: int,
               shape=realistic_trace_request, seed_base: int = 0, on_start=None) -> dict:
    """Run the client processes against ``port``; measure the server process ``pid``.

    ``shape(n_spans, seed=, device=)`` builds each request body (forked, so any callable works);
    ``on_start()``, if given, runs once every client has built its requests, as the load begins.
    """
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    workers = [ctx.Process(target=_client_worker,
                           args=(w, requests_per_process, spans, port, threads, barrier, results, shape,
                                 seed_base))
               for w in range(processes)]
    for w in workers:
        w.start()
    barrier.wait()  # every client has built its requests
    if on_start is not None:
        on_start()
    cpu_before, _ = _proc_stat(pid)
    wall_start = time.perf_counter()
    outcomes = [results.get(timeout=1800) for _ in workers]
    wall = time.perf_counter() - wall_start
    cpu_after, peak_rss = _proc_stat(pid)
    for w in workers:
        w.join()
    acked = sum(o["acked"] for o in outcomes)
    return {
        "spans_acked": acked,
        "requests_failed": sum(o["failed"] for o in outcomes),
        "raw_otlp_bytes": sum(o["raw_bytes"] for o in outcomes),
        "wall_seconds": wall,
        "spans_per_second": acked / wall,
        "server_cpu_seconds": cpu_after - cpu_before,
        "server_peak_rss_bytes": peak_rss,
    }


NULL_SINK = """
import sys
from aiohttp import web
async def sink(request):
    await request.read()
    return web.Response(body=b"", content_type="application/x-protobuf")
app = web.Application(client_max_size=64 << 20)
app.router.add_post("/v1/traces", sink)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def run_null_sink(load: dict) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", NULL_SINK, str(port)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                time.sleep(0.1)
        return drive_load(port, proc.pid, **load)
    finally:
        proc.terminate()
        proc.wait()


def run_collector(load: dict, workdir: Path) -> dict:
    db = workdir / "bench.duckdb"
    collector = CollectorProcess(db).start()
    try:
        result = drive_load(collector.http_port, collector.proc.pid, **load)
    finally:
        code = collector.stop()
    if code != 0:
        raise RuntimeError(f"collector exited {code}:\n{collector.logs()}")
    disk = db.stat().st_size + (Path(str(db) + ".wal").stat().st_size if Path(str(db) + ".wal").exists() else 0)
    result["disk_bytes"] = disk
    result["disk_bytes_per_span"] = disk / max(1, result["spans_acked"])
    result["disk_share_of_raw_otlp"] = disk / result["raw_otlp_bytes"]
    result["cpu_seconds_per_million_spans"] = result["server_cpu_seconds"] / max(1, result["spans_acked"]) * 1e6
    from collector.store.files import open_database

    con = open_database(str(db), read_only=True)
    result["spans_in_table"] = con.execute("SELECT count(*) FROM spans").fetchone()[0]
    con.close()
    return result


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu}, {mem_gib:.0f} GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    args = parser.parse_args()
    load = {"processes": 2, "threads": 32, "spans": 512,
            "requests_per_process": 60 if args.quick else 1000}
    from collector.decoding.trace_decode import SPEEDUPS_AVAILABLE

    workdir = Path(tempfile.mkdtemp(prefix="fw-bench-"))
    try:
        baseline = run_null_sink(load)
        print(f"null sink:  {baseline['spans_per_second']:,.0f} spans/s", flush=True)
        result = run_collector(load, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert result["spans_in_table"] == result["spans_acked"], "acknowledged spans missing from the table"
    print(f"collector:  {result['spans_per_second']:,.0f} spans/s "
          f"({result['spans_per_second'] / baseline['spans_per_second']:.2f} of the null sink), "
          f"{result['cpu_seconds_per_million_spans']:.1f} CPU s per million spans, "
          f"peak RSS {result['server_peak_rss_bytes'] / 2**20:.0f} MiB, "
          f"{result['disk_bytes_per_span']:.1f} B on disk per span "
          f"({result['disk_share_of_raw_otlp']:.1%} of raw OTLP)", flush=True)
    summary = {
        "benchmark": "ingest",
        "quick": args.quick,
        "machine": machine(),
        "c_decoder": SPEEDUPS_AVAILABLE,
        "load": load,
        "baseline_null_sink_spans_per_second": round(baseline["spans_per_second"]),
        "spans_per_second": round(result["spans_per_second"]),
        "ratio_to_baseline": round(result["spans_per_second"] / baseline["spans_per_second"], 3),
        "cpu_seconds_per_million_spans": round(result["cpu_seconds_per_million_spans"], 2),
        "peak_rss_mib": round(result["server_peak_rss_bytes"] / 2**20, 1),
        "disk_bytes_per_span": round(result["disk_bytes_per_span"], 1),
        "disk_share_of_raw_otlp": round(result["disk_share_of_raw_otlp"], 4),
        "raw_otlp_bytes_per_span": round(result["raw_otlp_bytes"] / max(1, result["spans_acked"]), 1),
        "spans_acked": result["spans_acked"],
        "requests_failed": result["requests_failed"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
