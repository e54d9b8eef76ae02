"""Live mode: real SDK exporters (OTLP/HTTP and OTLP/gRPC) into a collector subprocess.

Also the ``--db`` bulk path, through ``collector.store.bulk.ingest_request_log``
(skipped, saying so, while the collector does not provide it).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from sample_data.device import HOUR
from sample_data.generator import FleetSimulation, SimConfig
from sample_data.live import LiveRunner

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Collector:
    """``fleetwatch serve`` on 127.0.0.1 with a temporary DuckDB file."""

    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "live.duckdb"
        self.http_port, self.grpc_port = _free_port(), _free_port()
        config = tmp / "collector.yaml"
        config.write_text("processors:\n  batch: {timeout: 20ms}\n")  # quick acks: the test sends serially
        self.log = open(tmp / "collector.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch.cli", "serve", "--config", str(config), "--db", str(self.db),
             "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"collector exited: {(tmp / 'collector.log').read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as r:
                    if json.loads(r.read()).get("ready"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.proc.kill()
        raise AssertionError("collector did not become ready")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.log.close()
        return code


def _expected_spans(cfg: SimConfig) -> set[tuple[str, str, str]]:
    out = set()
    for req in FleetSimulation(cfg).requests():
        if req.signal == "traces":
            for s in req.spans:
                out.add((f"{s.trace_id:032x}", f"{s.span_id:016x}", s.name))
    return out


@pytest.mark.skipif(not (REPO / "collector" / "server.py").exists(), reason="collector server not available yet")
def test_live_mode_over_http_and_grpc_lands_in_duckdb(tmp_path):
    runs = {
        "http": SimConfig(seed=21, devices=5, duration_ns=HOUR, inferences_per_hour=60, export_interval_s=60,
                          metric_interval_s=300, stage_ratio=0.5),
        "grpc": SimConfig(seed=22, devices=5, duration_ns=HOUR, inferences_per_hour=60, export_interval_s=60,
                          metric_interval_s=300, stage_ratio=0.5),
    }
    collector = _Collector(tmp_path)
    results = {}
    try:
        for protocol, cfg in runs.items():
            endpoint = (f"http://127.0.0.1:{collector.http_port}" if protocol == "http"
                        else f"127.0.0.1:{collector.grpc_port}")
            results[protocol] = LiveRunner(cfg, endpoint, protocol, speed=0).run()
    finally:
        assert collector.stop() == 0
    con = duckdb.connect(str(collector.db), read_only=True)
    try:
        for protocol, cfg in runs.items():
            r = results[protocol]
            assert r["failed"] == {"traces": 0, "metrics": 0}, protocol
            assert r["sent"] == r["manifest"]["counts"]["requests"], protocol
            expected = _expected_spans(cfg)
            ids = [t for t, _, _ in expected]
            rows = con.execute(
                "SELECT trace_id, span_id, name FROM spans WHERE trace_id IN (SELECT unnest(?))", [ids]
            ).fetchall()
            assert set(rows) == expected, f"{protocol}: spans in DuckDB differ from the simulation"
            assert len(rows) == len(expected)  # no duplicates
        # the data contract's columns are filled from the device resource and span attributes
        (n_bad,) = con.execute("""
            SELECT count(*) FROM spans
            WHERE name = 'inference' AND inference_mode = 'edge'
              AND (device_id IS NULL OR site IS NULL OR region IS NULL OR device_class IS NULL
                   OR firmware_version IS NULL OR model_name IS NULL OR model_version IS NULL
                   OR request_id IS NULL OR received_at IS NULL)
        """).fetchone()
        assert n_bad == 0
        (n_edge,) = con.execute(
            "SELECT count(*) FROM spans WHERE name = 'inference' AND inference_mode = 'edge'").fetchone()
        assert n_edge == sum(r["manifest"]["counts"]["inferences_edge"] for r in results.values())
        (n_cloud_joined,) = con.execute("""
            SELECT count(*) FROM spans c JOIN spans e USING (request_id)
            WHERE c.inference_mode = 'cloud' AND e.inference_mode = 'edge'
        """).fetchone()
        assert n_cloud_joined == sum(r["manifest"]["counts"]["spans"].get("inference.cloud", 0)
                                     for r in results.values())
        (n_temp,) = con.execute(
            "SELECT count(*) FROM metric_points WHERE metric_name = 'device.temperature'").fetchone()
        assert n_temp == sum(r["manifest"]["counts"]["requests"]["metrics"] for r in results.values())
        (n_hist,) = con.execute(
            "SELECT count(*) FROM histogram_points WHERE metric_name = 'ml.inference.duration'").fetchone()
        assert n_hist > 0
    finally:
        con.close()


def test_bulk_into_duckdb_through_the_collector(tmp_path):
    pytest.importorskip("collector.store.bulk", reason="collector.store.bulk.ingest_request_log is not there yet")
    from sample_data import cli

    db = tmp_path / "bulk.duckdb"
    # big enough for the site_offline incident to be in the run (a smaller one leaves it out)
    assert cli.main(["--devices", "6", "--duration", "4h", "--inferences-per-hour", "150", "--export-interval", "60",
                     "--metric-interval", "300", "--db", str(db), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "bulk.duckdb.manifest.json").read_text())
    con = duckdb.connect(str(db), read_only=True)
    try:
        (n_spans,) = con.execute("SELECT count(*) FROM spans").fetchone()
        assert n_spans == sum(manifest["counts"]["spans"].values())
        (late,) = con.execute("""
            SELECT count(*) FROM spans s
            WHERE site = ? AND received_at >= TIMESTAMP '1970-01-01' + INTERVAL (? // 1000) MICROSECOND
        """, [next(i for i in manifest["incidents"] if i["kind"] == "site_offline")["cohort"]["fleet.site"],
              next(i for i in manifest["incidents"] if i["kind"] == "site_offline")["end_unix_nano"]]).fetchone()
        assert late > 0
    finally:
        con.close()


@pytest.mark.skipif(not (REPO / "collector" / "server.py").exists(), reason="collector server not available yet")
def test_instrumenting_doc_example_lands_in_duckdb(tmp_path):
    """docs/instrumenting-a-device.md: its Python agent runs and fills the contract's columns."""
    import os
    import re

    text = (REPO / "docs" / "instrumenting-a-device.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    script = tmp_path / "agent.py"
    script.write_text(code)
    collector = _Collector(tmp_path)
    try:
        env = {**os.environ, "FLEETWATCH_ENDPOINT": f"http://127.0.0.1:{collector.http_port}",
               "FLEETWATCH_DEVICE_ID": "doc-device-1"}
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
    finally:
        assert collector.stop() == 0
    con = duckdb.connect(str(collector.db), read_only=True)
    try:
        names = dict(con.execute("SELECT name, count(*) FROM spans GROUP BY name").fetchall())
        assert names["inference"] == 21 and names["model.load"] == 1 and names["deployment"] == 1
        assert names["ground_truth"] == 1 and names["preprocess"] == 21 and names["execute"] == 20
        row = con.execute("""
            SELECT count(*), count(DISTINCT request_id), min(device_id), min(site), min(region),
                   min(device_class), min(firmware_version), min(model_name), min(model_version),
                   count(*) FILTER (WHERE status_code = 'ERROR'), count(*) FILTER (WHERE cold_start),
                   count(prediction_label)
            FROM spans WHERE name = 'inference'
        """).fetchone()
        assert row == (21, 21, "doc-device-1", "ams-factory-1", "eu-west", "jetson-orin", "6.1.0",
                       "defect-detector", "2.4.0", 1, 1, 20)
        (joined,) = con.execute("""
            SELECT count(*) FROM spans g JOIN spans i USING (request_id)
            WHERE g.name = 'ground_truth' AND i.name = 'inference' AND g.label = 'ok'
        """).fetchone()
        assert joined == 1
        metrics = {r[0] for r in con.execute("SELECT DISTINCT metric_name FROM metric_points").fetchall()}
        assert {"system.cpu.utilization", "system.memory.usage", "device.temperature",
                "telemetry.bytes_sent"} <= metrics
        (hist,) = con.execute("SELECT sum(count) FROM histogram_points WHERE metric_name = 'ml.inference.duration'"
                              ).fetchone()
        assert hist == 21
    finally:
        con.close()
