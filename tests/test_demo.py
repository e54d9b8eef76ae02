"""The README's main command: `fleetwatch demo` loads the shipped sample fleet, then serves."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.collector_process import free_port, metric_value, query

ROOT = Path(__file__).resolve().parent.parent


def test_demo_loads_the_sample_and_serves(tmp_path):
    db = tmp_path / "demo.duckdb"
    port = free_port()
    manifest = json.loads((ROOT / "sample_data" / "manifest.json").read_text())
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "demo", "--db", str(db), "--http-port", str(port),
                             "--grpc-port", str(free_port())], stderr=subprocess.PIPE, text=True)
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
