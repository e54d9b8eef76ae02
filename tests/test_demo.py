"""The README's main command: `fleetwatch demo` loads the shipped sample fleet, then serves."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from analytics.api.client import ReadApiClient
from bench.harness import free_port, jobs_caught_up, metric_value, query, wait_until

ROOT = Path(__file__).resolve().parent.parent


def test_demo_loads_the_sample_and_serves(tmp_path):
    db = tmp_path / "demo.duckdb"
    port = free_port()
    manifest = json.loads((ROOT / "sample_data" / "manifest.json").read_text())
    api_port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fleetwatch.cli", "demo", "--db", str(db), "--http-port", str(port),
                             "--grpc-port", str(free_port()), "--api-port", str(api_port)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    if json.loads(response.read())["ready"]:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "demo did not come up"
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics_text = response.read().decode()
        # The analytics jobs catch up on the sample's two days; then the read API serves their rollups.
        wait_until(lambda: _jobs_caught_up(port), timeout=600, what="the rollup jobs to catch up")
        client = ReadApiClient(f"http://127.0.0.1:{api_port}")
        daily = client.query("golden_signals", since="2026-11-01T00:00:00Z", until="2026-11-05T00:00:00Z",
                             step="1d", group_by="inference_mode").records()
        versions = client.query("model_versions", since="2026-11-01T00:00:00Z", until="2026-11-05T00:00:00Z").records()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "sample fleet loaded" in stderr
    assert "loading fleet-sample.otlp.zst: " in stderr  # progress lines (stderr is not a terminal here)
    assert metric_value(metrics_text, "fleetwatch_bulk_items_written_total", signal="traces") == \
        sum(manifest["counts"]["spans"].values())
    assert metric_value(metrics_text, "fleetwatch_bulk_requests_written_total", signal="metrics") == \
        manifest["counts"]["requests"]["metrics"]
    spans, devices = query(db, "SELECT count(*), count(DISTINCT device_id) FROM spans")[0]
    assert spans == sum(manifest["counts"]["spans"].values())
    assert devices == len(manifest["fleet"]["devices"])
    # Rollups through the read API equal counts straight from the raw spans.
    raw = dict(query(db, "SELECT inference_mode, count(*) FROM spans WHERE name = 'inference' GROUP BY ALL"))
    by_mode: dict[str, int] = {}
    for row in daily:
        by_mode[row["group"]] = by_mode.get(row["group"], 0) + row["inferences"]
    assert by_mode == raw and by_mode["edge"] == manifest["counts"]["inferences_edge"]
    assert sum(v["inferences"] for v in versions) == raw["edge"]


def _jobs_caught_up(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return jobs_caught_up(response.read().decode())
