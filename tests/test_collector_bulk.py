"""Request logs go through the collector's own pipeline: counted, validated, deduplicated."""

from __future__ import annotations

import subprocess
import sys

import pytest

from collector.bulk import ingest_request_log
from collector.duckdb_exporter import DatabaseLockedError
from collector.request_log import RequestLogWriter
from tests.collector_process import CollectorProcess, query
from tests.otlp_requests import gauge_request, histogram_request, log_request, trace_request

BACKFILL_NS = 1_767_225_600_000_000_000  # 2026-01-01: a backfill's receive times lie in the past


@pytest.fixture()
def request_log(tmp_path):
    path = tmp_path / "backfill.otlp.zst"
    ids = []
    with RequestLogWriter(path) as log:
        for i in range(20):
            body, span_ids = trace_request(50, device=f"dev-{i}", bad_ids=1 if i == 3 else 0,
                                           start_ns=BACKFILL_NS - 10**9)
            ids += span_ids
            log.append("traces", BACKFILL_NS + i, body)
        log.append("metrics", BACKFILL_NS + 100, gauge_request(5))
        log.append("metrics", BACKFILL_NS + 101, histogram_request())
        log.append("logs", BACKFILL_NS + 102, log_request(7, missing_time=1)[0])
        log.append("traces", BACKFILL_NS + 103, b"\xff\xffnot protobuf")
    return path, ids


def test_ingest_request_log_counts_and_is_idempotent(tmp_path, request_log):
    log_path, ids = request_log
    db = tmp_path / "fw.duckdb"
    counts = ingest_request_log(db, log_path)
    assert counts == {"requests": 24, "spans": 1000, "points": 6, "log_records": 7, "rejected": 2, "duplicates": 0,
                      "bad_requests": 1}
    again = ingest_request_log(db, log_path)
    assert again["duplicates"] == 23 and again["bad_requests"] == 1 and again["spans"] == 0
    assert sorted(r[0] for r in query(db, "SELECT span_id FROM spans")) == sorted(ids)
    received = query(db, "SELECT min(epoch_ns(received_at)), max(epoch_ns(received_at)) FROM spans")[0]
    assert received == (BACKFILL_NS, BACKFILL_NS + 19)
    assert query(db, "SELECT count(*) FROM metric_points")[0][0] == 5
    assert query(db, "SELECT count(*) FROM histogram_points")[0][0] == 1
    assert query(db, "SELECT count(*), min(epoch_ns(received_at)) FROM log_records")[0] == (7, BACKFILL_NS + 102)


def test_ingest_refuses_a_file_a_server_owns(tmp_path, request_log):
    log_path, _ = request_log
    db = tmp_path / "fw.duckdb"
    with CollectorProcess(db):
        with pytest.raises(DatabaseLockedError, match="already open in another process"):
            ingest_request_log(db, log_path)
        result = subprocess.run([sys.executable, "-m", "collector.cli", "ingest", "--db", str(db), str(log_path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "already open in another process" in result.stderr


def test_ingest_cli(tmp_path, request_log):
    log_path, _ = request_log
    db = tmp_path / "fw.duckdb"
    result = subprocess.run([sys.executable, "-m", "collector.cli", "ingest", "--db", str(db), str(log_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "1000 spans" in result.stdout and "7 log records" in result.stdout and "1 bad requests" in result.stdout
    broken = tmp_path / "broken.otlp.zst"
    broken.write_bytes(log_path.read_bytes()[:-40])
    result = subprocess.run([sys.executable, "-m", "collector.cli", "ingest", "--db", str(tmp_path / "b.duckdb"),
                             str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "cannot ingest" in result.stderr
