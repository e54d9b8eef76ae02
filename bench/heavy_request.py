"""Peak memory of a collector receiving requests whose resource is repeated into every row.

    python bench/heavy_request.py            # the issue's cases plus requests within the cap
    python bench/heavy_request.py --quick    # the 1,900-span case only

Each case starts a fresh ``fleetwatch serve`` subprocess (default config,
memory_limiter.limit_mib 256), posts one request over OTLP/HTTP and reports
its answer, the rows stored, and the process's peak RSS: VmHWM (the kernel's
high-water mark) and the highest of psutil samples taken every 5 ms, before
and after the request. The cases: a 1 MiB ``service.name`` over 1,900 and
2,049 minimal spans (about 1.1 MiB on the wire, about 2 GB once every row
carries the name), and requests within the default per-request cap of
64 MiB: a 100 kB name over 300 and 650 spans (about 30 and 65 MB of rows)
and a 10 kB name over 6,500 spans. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import _proc_stat  # noqa: E402
from bench.harness import CollectorProcess, query  # noqa: E402
from bench.otlp_shapes import heavy_resource_request  # noqa: E402
from bench.harness import post  # noqa: E402

MiB = 1 << 20
CASES = [("1 MiB name x 1,900 spans", 1900, MiB), ("1 MiB name x 2,049 spans", 2049, MiB),
         ("100 kB name x 300 spans", 300, 100_000), ("100 kB name x 650 spans", 650, 100_000),
         ("10 kB name x 6,500 spans", 6500, 10_000)]


class RssSampler:
    """Highest RSS of a process seen by psutil while running (5 ms period)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.005)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_case(name: str, spans: int, value_bytes: int, workdir: Path) -> dict:
    body = heavy_resource_request(spans, value_bytes)
    db = workdir / f"heavy-{spans}-{value_bytes}.duckdb"
    with CollectorProcess(db) as collector:
        idle_hwm = _proc_stat(collector.proc.pid)[1]
        with RssSampler(collector.proc.pid) as sampler:
            started = time.perf_counter()
            status, _, _ = post(collector.http_port, "/v1/traces", body, token=None)
            seconds = time.perf_counter() - started
        hwm = _proc_stat(collector.proc.pid)[1]
    rows = query(db, "SELECT count(*) FROM spans")[0][0] if db.exists() else None
    result = {"case": name, "wire_bytes": len(body), "status": status, "rows_stored": rows,
              "seconds": round(seconds, 2), "idle_peak_rss_mib": round(idle_hwm / MiB),
              "peak_rss_mib": round(hwm / MiB), "psutil_peak_rss_mib": round(sampler.peak / MiB)}
    print(f"{name}: {status}, {rows} rows, peak RSS {idle_hwm / MiB:.0f} -> {hwm / MiB:.0f} MiB "
          f"(psutil {sampler.peak / MiB:.0f} MiB), {seconds:.1f} s")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the 1,900-span case only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fw-heavy-") as tmp:
        cases = [run_case(name, spans, size, Path(tmp)) for name, spans, size in CASES[: 1 if args.quick else None]]
    result = {"benchmark": "heavy_request", "quick": args.quick, "cases": cases}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
