"""Request logs go through the collector's own pipeline: counted, validated, deduplicated."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.store.bulk import ingest_request_log, last_receive_time, shift_to
from collector.store.files import DatabaseLockedError, open_database
from collector.request_log import RequestLogWriter
from collector.selfmetrics import CollectorMetrics
from bench.harness import CollectorProcess, query
from tests.conftest import SAMPLE_DIR
from tests.otlp_requests import gauge_request, histogram_request, log_request, trace_request

BACKFILL_NS = 1_767_225_600_000_000_000  # 2026-01-01: a backfill's receive times lie in the past
SAMPLE_LOG = SAMPLE_DIR / "fleet-sample.otlp.zst"


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
        result = subprocess.run([sys.executable, "-m", "fleetwatch.cli", "ingest", "--db", str(db), str(log_path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "already open in another process" in result.stderr


def _ingest_cli(db, *logs, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetwatch.cli", "ingest", "--db", str(db), *map(str, logs)],
                          capture_output=True, text=True, timeout=300, **popen)


def test_ingest_cli(tmp_path, request_log):
    log_path, _ = request_log
    db = tmp_path / "fw.duckdb"
    result = _ingest_cli(db, log_path)
    assert result.returncode == 0, result.stderr
    assert "24 requests read; 1,000 spans, 6 metric points and 7 log records written" in result.stdout
    assert "2 items rejected as invalid, 1 request not decodable" in result.stdout
    assert "{" not in result.stdout  # words, not a Python dict


def test_a_log_cut_short_keeps_every_intact_record(tmp_path):
    """A request log cut inside its last record used to lose every good record before it."""
    log_path = tmp_path / "cut.otlp.zst"
    with RequestLogWriter(log_path) as log:
        for i in range(120):
            log.append("traces", BACKFILL_NS + i, trace_request(50, device=f"dev-{i}")[0])
    log_path.write_bytes(log_path.read_bytes()[:-100])  # into the last compressed block
    db = tmp_path / "fw.duckdb"
    result = _ingest_cli(db, log_path)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    match = re.fullmatch(rf"fleetwatch: damaged request log: {re.escape(str(log_path))}: truncated request log: "
                         r"end of data inside record (\d+) \(payload\) \(the damage starts at byte (\d+) of the "
                         r"decompressed body; the (\d+) records before it are intact\)", line)
    assert match, line
    intact = int(match.group(1))
    assert int(match.group(3)) == intact and 100 <= intact < 120  # only the last compressed block is lost
    assert f"{intact} requests read; {intact * 50:,} spans" in result.stdout
    assert query(db, "SELECT count(*), count(DISTINCT device_id) FROM spans")[0] == (intact * 50, intact)


def test_ingest_of_a_file_that_is_not_a_request_log_creates_no_database(tmp_path):
    not_a_log = tmp_path / "notes.txt"
    not_a_log.write_text("these are not OTLP requests\n")
    db = tmp_path / "fw.duckdb"
    result = _ingest_cli(db, not_a_log)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"fleetwatch: cannot ingest: {not_a_log}: not a request log (bad magic b'these ar')"]
    assert list(tmp_path.iterdir()) == [not_a_log]


def test_bulk_writes_are_counted_in_the_metrics(tmp_path, request_log):
    log_path, _ = request_log
    metrics = CollectorMetrics()
    counts = ingest_request_log(tmp_path / "fw.duckdb", log_path, metrics=metrics)
    assert metrics.bulk_items_written.value(signal="traces") == counts["spans"] == 1000
    assert metrics.bulk_items_written.value(signal="metrics") == counts["points"] == 6
    assert metrics.bulk_requests_written.value(signal="traces") == 20
    assert metrics.bulk_requests_written.value(signal="metrics") == 2
    assert "fleetwatch_bulk_items_written_total{signal=\"traces\"} 1000" in metrics.registry.render()


SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "fleet-sample.otlp.zst"


@pytest.mark.parametrize("verb, signum", [("ingest", signal.SIGTERM), ("ingest", signal.SIGINT),
                                          ("demo", signal.SIGTERM)])
def test_a_signal_during_a_bulk_load_commits_what_was_loaded(tmp_path, verb, signum):
    """SIGTERM / Ctrl-C mid-load: one line, exit 128+signal, and the database holds what that line reports."""
    db = tmp_path / "fw.duckdb"
    args = ([str(SAMPLE)] if verb == "ingest" else ["--http-port", "0", "--grpc-port", "0", "--api-port", "0"])
    proc = subprocess.Popen([sys.executable, "-m", "fleetwatch.cli", verb, "--db", str(db), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        while not (seen and seen[-1].startswith("loading fleet-sample.otlp.zst: ")):
            seen.append(proc.stderr.readline())  # not a terminal: a plain progress line every few seconds
            assert seen[-1], seen
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, stderr
    last = stderr.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    loading = f"loading {re.escape(str(SAMPLE))}" if verb == "ingest" else "loading the sample"
    match = re.fullmatch(rf"fleetwatch: stopped by {name} while {loading}; committed so far: "
                         r"([\d,]+) requests read; ([\d,]+) spans and ([\d,]+) metric points written", last)
    assert match, stderr
    assert "Traceback" not in stderr and "collector ready" not in stderr
    requests, spans, points = (int(g.replace(",", "")) for g in match.groups())
    assert 0 < requests < 80204 + 57700  # stopped part-way
    assert query(db, "SELECT count(*) FROM spans")[0][0] == spans
    assert query(db, "SELECT (SELECT count(*) FROM metric_points) + (SELECT count(*) FROM histogram_points)")[0][0] \
        == points
    assert query(db, "SELECT count(*) FROM ingest_log")[0][0] <= requests


# -- shifted loads: a recorded history replayed as if it had happened later ------------------------------

SHIFTED_TABLES = ("span_rows", "metric_points", "histogram_points", "log_rows")


def _rows_moved_back(con, table: str, shift_ns: int) -> str:
    """SELECT over ``s.table`` with every timestamp column moved back by ``shift_ns`` (the others as they are)."""
    columns = con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = 's' "
                          "AND table_name = ? ORDER BY column_index", [table]).fetchall()
    assert any(kind.startswith("TIMESTAMP") for _, kind in columns)
    return "SELECT " + ", ".join(
        f"make_timestamp_ns(epoch_ns({name}) - {shift_ns}) AS {name}" if kind.startswith("TIMESTAMP") else name
        for name, kind in columns) + f" FROM s.{table}"


def assert_shifted_copy(shifted_db, original_db, shift_ns: int) -> dict[str, int]:
    """Every stored row of ``shifted_db`` is one of ``original_db`` with all its times moved by ``shift_ns``."""
    con = open_database(":memory:")
    try:
        con.execute(f"ATTACH '{shifted_db}' AS s (READ_ONLY)")
        con.execute(f"ATTACH '{original_db}' AS o (READ_ONLY)")
        rows = {}
        for table in SHIFTED_TABLES:
            moved_back = _rows_moved_back(con, table, shift_ns)
            rows[table] = con.execute(f"SELECT count(*) FROM o.{table}").fetchone()[0]
            assert con.execute(f"SELECT count(*) FROM s.{table}").fetchone()[0] == rows[table], table
            assert con.execute(f"SELECT count(*) FROM ({moved_back} EXCEPT ALL SELECT * FROM o.{table})"
                               ).fetchone()[0] == 0, table
        receipts = ("SELECT request_digest, epoch_ns(received_at) - {shift} FROM {db}.ingest_log "
                    "EXCEPT SELECT request_digest, epoch_ns(received_at) FROM o.ingest_log")
        assert con.execute(f"SELECT count(*) FROM ({receipts.format(shift=shift_ns, db='s')})").fetchone()[0] == 0
        return rows
    finally:
        con.close()


def test_a_shifted_load_moves_every_time_by_the_same_offset_and_nothing_else(tmp_path, request_log):
    log_path, _ = request_log
    shift = timedelta(days=400, hours=3, minutes=7, microseconds=11)
    plain, shifted = tmp_path / "plain.duckdb", tmp_path / "shifted.duckdb"
    counts = ingest_request_log(plain, log_path)
    assert ingest_request_log(shifted, log_path, shift=shift) == counts
    rows = assert_shifted_copy(shifted, plain, int(shift / timedelta(microseconds=1)) * 1000)
    assert rows == {"span_rows": 1000, "metric_points": 5, "histogram_points": 1, "log_rows": 7}
    # A gauge point has no start time and keeps none (a null is not moved); the same shift again loads nothing.
    assert query(shifted, "SELECT count(*) FROM metric_points WHERE start_time IS NULL") == \
        query(plain, "SELECT count(*) FROM metric_points WHERE start_time IS NULL") != [(0,)]
    assert ingest_request_log(shifted, log_path, shift=shift)["duplicates"] == 23


def test_shift_to_lands_the_logs_newest_receive_time_on_whole_units_before_the_target(request_log):
    log_path, _ = request_log
    newest = last_receive_time(log_path)
    assert newest == datetime(2026, 1, 1, tzinfo=timezone.utc)  # BACKFILL_NS + 103 ns, to the microsecond
    target = datetime(2026, 12, 2, 3, 17, 45, tzinfo=timezone.utc)
    assert shift_to(log_path, target) == timedelta(days=335, hours=3, minutes=17)
    assert shift_to(log_path, target, whole=timedelta(hours=1)) == timedelta(days=335, hours=3)
    with pytest.raises(ValueError, match="no time zone"):
        shift_to(log_path, target.replace(tzinfo=None))


def test_the_sample_shifted_to_now_has_the_samples_rows_with_every_time_moved(tmp_path, sample_db):
    shift = shift_to(SAMPLE_LOG, datetime.now(timezone.utc), whole=timedelta(hours=1))
    shifted = tmp_path / "shifted.duckdb"
    counts = ingest_request_log(shifted, SAMPLE_LOG, shift=shift)
    manifest = json.loads((SAMPLE_DIR / "manifest.json").read_text())
    assert counts["spans"] == sum(manifest["counts"]["spans"].values()) and counts["rejected"] == 0
    rows = assert_shifted_copy(shifted, sample_db, int(shift / timedelta(microseconds=1)) * 1000)
    assert rows["span_rows"] == counts["spans"] and rows["metric_points"] + rows["histogram_points"] == counts["points"]
    newest = query(shifted, "SELECT max(received_at) FROM span_rows")[0][0]
    assert datetime.now() - timedelta(hours=2) < newest <= datetime.now()  # ends within the last whole hour


def test_ingest_cli_shifts_a_log_to_end_at_the_given_instant(tmp_path, request_log):
    log_path, _ = request_log
    db = tmp_path / "fw.duckdb"
    result = subprocess.run([sys.executable, "-m", "fleetwatch.cli", "ingest", "--db", str(db), "--shift-to",
                             "2027-01-01T12:30:00Z", str(log_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "(times moved by 365 days, 12:30:00)" in result.stdout
    newest = query(db, "SELECT max(received_at) FROM span_rows")[0][0]
    assert datetime(2027, 1, 1, 12, 29) < newest <= datetime(2027, 1, 1, 12, 30)
    bad = subprocess.run([sys.executable, "-m", "fleetwatch.cli", "ingest", "--db", str(tmp_path / "other.duckdb"),
                          "--shift-to", "next tuesday", str(log_path)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "neither NOW nor an ISO 8601 instant" in bad.stderr
