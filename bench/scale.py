"""The same day of a large simulated fleet through DuckDB and through Spark local mode (issue 13).

For each size (inference spans in the day), a 1,000-device fleet's day of
raw spans is written by :func:`bench.fleet_history.load_span_minutes`
(the read API benchmark's synthetic fleet), exported to the Parquet archive
(:func:`analytics.archive.offline.export_file`), then the window jobs run
over that archive with ``fleetwatch analytics run`` once per engine, each
in its own process::

    python bench/scale.py                      # sizes 2M, 8M, 24M spans (about 25 min here)
    python bench/scale.py --quick              # 0.5M and 2M
    python bench/scale.py --sizes 1e6,4e6 --jobs rollup_minute
    python bench/scale.py --sizes 8e6 --spark-conf spark.driver.memory=3g

Per run: wall time, CPU seconds and peak resident memory of the whole
process tree (the Python driver and, for Spark, its JVM: psutil over the
tree every 50 ms, RSS summed), and the archive's bytes. Jobs: rollups,
device hours, event SLIs, shadow and ground truth (the fleet has no
features, so drift has nothing to compute). ``--drift-sample`` runs the
drift job instead, on the shipped sample's archive (one day, Nov 3, its
pinned references from Nov 2), on both engines. The last line is one JSON
object with the figures.

    python bench/scale.py --drift-sample
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analytics.archive.config import ArchiveConfig  # noqa: E402
from analytics.archive.offline import export_file  # noqa: E402
from analytics.schema import ANALYTICS  # noqa: E402
from bench.fleet_history import Fleet, load_span_minutes  # noqa: E402
from bench.ingest import machine  # noqa: E402
from collector.config import default_config  # noqa: E402
from collector.selfmetrics import CollectorMetrics  # noqa: E402
from collector.store.duckdb_exporter import collector_store  # noqa: E402

DAY = datetime(2026, 11, 2)
SAMPLE_DAY = datetime(2026, 11, 3)  # the sample's second day: drift against the versions' pinned Nov 2 references
JOBS = "rollup_minute,rollup_hour,device_hour,slo_sli_minute,shadow_hour,ground_truth_hour"
SLOS = ROOT / "sample_data" / "slos.yaml"


class TreeSampler:
    """Peak RSS (summed over a process and its descendants) and their CPU seconds, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            rss = 0
            for process in processes:
                try:
                    rss += process.memory_info().rss
                    times = process.cpu_times()
                    self.cpu[process.pid] = times.user + times.system
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            time.sleep(0.05)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def build_day(workdir: Path, spans: int) -> tuple[Path, dict]:
    """One day of ``spans`` inference spans of a 1,000-device fleet, exported to an archive."""
    db = workdir / f"day-{spans}.duckdb"
    fleet = Fleet(devices=1000, rate_per_s=spans / 86_400)
    config = dataclasses.replace(default_config().exporters.duckdb, path=str(db))
    store = collector_store(config, CollectorMetrics(), [ANALYTICS])
    store.open()
    started = time.perf_counter()
    try:
        written = load_span_minutes(store, fleet, DAY, 24 * 60)
    finally:
        store.close()
    load_seconds = time.perf_counter() - started
    archive = workdir / f"archive-{spans}"
    started = time.perf_counter()
    export_file(str(db), ArchiveConfig(path=str(archive), hot_period=0), until=DAY + timedelta(days=2))
    export_seconds = time.perf_counter() - started
    info = {"spans": written, "duckdb_file_bytes": db.stat().st_size,
            "archive_bytes": sum(p.stat().st_size for p in archive.rglob("*.parquet")),
            "load_seconds": round(load_seconds, 1), "export_seconds": round(export_seconds, 1)}
    db.unlink()
    return archive, info


def sample_archive(workdir: Path) -> tuple[Path, dict]:
    """The shipped sample (``fleetwatch ingest``) exported to an archive."""
    db = workdir / "sample.duckdb"
    subprocess.run([sys.executable, "-m", "fleetwatch", "ingest", "--db", str(db),
                    str(ROOT / "sample_data" / "fleet-sample.otlp.zst")], check=True, capture_output=True, cwd=ROOT)
    archive = workdir / "archive-sample"
    export_file(str(db), ArchiveConfig(path=str(archive), hot_period=0), until=SAMPLE_DAY + timedelta(days=3))
    info = {"archive_bytes": sum(p.stat().st_size for p in archive.rglob("*.parquet"))}
    db.unlink()
    return archive, info


def run_engine(engine: str, archive: Path, out: Path, jobs: str, master: str, spark_conf: list[str] = (),
               day: datetime = DAY) -> dict:
    command = [sys.executable, "-m", "fleetwatch", "analytics", "run", "--engine", engine, "--archive", str(archive),
               "--from", day.isoformat() + "Z", "--to", (day + timedelta(days=1)).isoformat() + "Z",
               "--out", str(out), "--jobs", jobs, "--slos", str(SLOS), "--master", master]
    if engine == "spark":
        command += [arg for conf in spark_conf for arg in ("--spark-conf", conf)]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    with TreeSampler(proc.pid) as sampler:
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        # A JVM failure ends in pages of stack frames: keep the lines that say what happened.
        said = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("\tat ", "    at "))]
        raise RuntimeError(f"{engine} run failed ({proc.returncode}): " + "\n".join(said[-15:]))
    manifest = json.loads((out / "_run.json").read_text())
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(sum(sampler.cpu.values()), 1),
            "peak_rss_mib": round(sampler.peak_rss / 2**20), "rows_out": sum(manifest["rows"].values()),
            "job_seconds": manifest["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.5M and 2M spans")
    parser.add_argument("--sizes", help="comma-separated spans per day (default 2e6,8e6,24e6)")
    parser.add_argument("--jobs", default=JOBS)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to the Spark runs, e.g. spark.driver.memory=3g (repeatable)")
    parser.add_argument("--drift-sample", action="store_true", help="the drift job on the shipped sample instead")
    args = parser.parse_args()
    if args.drift_sample:
        return drift_sample(args)
    sizes = [int(float(s)) for s in (args.sizes or ("5e5,2e6" if args.quick else "2e6,8e6,24e6")).split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="fw-scale-"))
    results = []
    try:
        for spans in sizes:
            archive, info = build_day(workdir, spans)
            row = {**info}
            for engine in ("duckdb", "spark"):
                row[engine] = run_engine(engine, archive, workdir / f"out-{engine}-{spans}", args.jobs, args.master,
                                         args.spark_conf)
                print(f"{spans:>12,} spans  {engine:6}  {row[engine]['wall_seconds']:7.1f} s wall  "
                      f"{row[engine]['cpu_seconds']:7.1f} CPU s  {row[engine]['peak_rss_mib']:6} MiB peak",
                      file=sys.stderr, flush=True)
            row["spark_over_duckdb_wall"] = round(row["spark"]["wall_seconds"] / row["duckdb"]["wall_seconds"], 2)
            results.append(row)
            shutil.rmtree(archive)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = psutil.getloadavg()
    print(json.dumps({"machine": machine(), "load_average_at_end": [round(x, 1) for x in load], "jobs": args.jobs,
                      "master": args.master, "spark_conf": args.spark_conf, "sizes": results}))


def drift_sample(args) -> None:
    """``--drift-sample``: the drift job over the sample's Nov 3 on both engines."""
    workdir = Path(tempfile.mkdtemp(prefix="fw-scale-drift-"))
    try:
        archive, row = sample_archive(workdir)
        for engine in ("duckdb", "spark"):
            row[engine] = run_engine(engine, archive, workdir / f"out-{engine}", "drift_hour", args.master,
                                     args.spark_conf, day=SAMPLE_DAY)
            print(f"sample drift  {engine:6}  {row[engine]['wall_seconds']:7.1f} s wall  "
                  f"{row[engine]['cpu_seconds']:7.1f} CPU s  {row[engine]['peak_rss_mib']:6} MiB peak",
                  file=sys.stderr, flush=True)
        row["spark_over_duckdb_wall"] = round(row["spark"]["wall_seconds"] / row["duckdb"]["wall_seconds"], 2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"machine": machine(), "load_average_at_end": [round(x, 1) for x in psutil.getloadavg()],
                      "jobs": "drift_hour", "master": args.master, "spark_conf": args.spark_conf,
                      "drift_sample": row}))


if __name__ == "__main__":
    main()
