"""Checkpoints on row-group boundaries: the batch that completes a row group is split around a checkpoint."""

from __future__ import annotations

import http.client
import os
import threading
import time

import duckdb
import pytest

from collector.store.checkpoints import ROW_GROUP_ROWS, CheckpointPolicy
from collector.config import ConfigError, config_from_dict
from bench.harness import CollectorProcess, metric_value, query, wait_until
from tests.otlp_requests import trace_request
from bench.harness import post


def test_policy_cuts_the_batch_that_reaches_a_row_group_boundary():
    policy = CheckpointPolicy(wal_threshold_bytes=1 << 20)
    assert policy.split_point({"span_rows": ROW_GROUP_ROWS - 1}) is None
    policy.written({"span_rows": ROW_GROUP_ROWS - 100})
    assert policy.split_point({"span_rows": 99}) is None
    assert policy.split_point({"span_rows": 100}) == ("span_rows", 100)
    assert policy.split_point({"span_rows": 5_000, "metric_points": 7}) == ("span_rows", 100)
    policy.checkpointed()
    assert policy.split_point({"span_rows": 5_000}) is None


def test_policy_lets_the_largest_crossing_table_lead_and_ignores_bookkeeping_tables():
    policy = CheckpointPolicy(wal_threshold_bytes=1 << 20)
    policy.written({"span_rows": ROW_GROUP_ROWS - 10, "metric_points": ROW_GROUP_ROWS - 2_000})
    assert policy.split_point({"span_rows": 1_000, "metric_points": 3_000}) == ("metric_points", 2_000)
    assert policy.split_point({"ingest_log": 10 * ROW_GROUP_ROWS}) is None
    # a table that crossed unaligned (another table led) is cut at its next boundary
    policy.written({"span_rows": 1_000})
    assert policy.split_point({"span_rows": ROW_GROUP_ROWS}) == ("span_rows", ROW_GROUP_ROWS - 990)


def test_policy_validates_and_reports_a_large_write_ahead_log():
    with pytest.raises(ValueError, match="wal_threshold_bytes"):
        CheckpointPolicy(wal_threshold_bytes=0)
    policy = CheckpointPolicy(wal_threshold_bytes=1000)
    assert not policy.wal_due(999)
    assert policy.wal_due(1000)


class _Clock:
    """A hand-moved clock for the policy's timing."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_policy_checkpoints_after_idle_time_and_after_elapsed_time():
    clock = _Clock()
    policy = CheckpointPolicy(1 << 20, idle_seconds=30, max_interval_seconds=300, clock=clock)
    assert policy.seconds_until_due() is None and policy.time_due() is None  # nothing written: nothing to do
    policy.written({"span_rows": 20})
    assert policy.seconds_until_due() == 30 and policy.time_due() is None
    clock.now += 30
    assert policy.time_due() == "idle"
    policy.checkpointed()
    assert policy.time_due() is None and policy.seconds_until_due() is None
    for _ in range(31):  # a write every 10 s: never idle, so elapsed time bounds the log
        clock.now += 10
        policy.written({"span_rows": 20})
    assert policy.time_due() == "elapsed"
    policy.failed()  # a failed checkpoint is retried after a pause, not in a busy loop
    assert policy.time_due() is None and policy.seconds_until_due() == 30
    with pytest.raises(ValueError, match="idle_seconds"):
        CheckpointPolicy(1 << 20, idle_seconds=0)


def _post_all(port: int, bodies: list[bytes], threads: int) -> list[int]:
    statuses: list[int] = []
    lock = threading.Lock()
    queue = list(bodies)

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            response.read()
            with lock:
                statuses.append(response.status)
        conn.close()

    workers = [threading.Thread(target=sender) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return statuses


def test_concurrent_load_across_a_row_group_boundary_is_stored_once_in_full_row_groups(tmp_path):
    db = tmp_path / "fw.duckdb"
    # 500-span requests: the boundary falls inside a request, whose rows are then split between head and tail
    requests = [trace_request(500, device=f"dev-{i % 7}") for i in range(300)]
    with CollectorProcess(db) as collector:
        done = threading.Event()
        scrapes: list[str] = []

        def scrape() -> None:  # as Prometheus would; a scrape must never stand in a checkpoint's way
            while not done.wait(0.2):
                scrapes.append(collector.metrics_text())

        scraper = threading.Thread(target=scrape)
        scraper.start()
        statuses = _post_all(collector.http_port, [body for body, _ in requests], threads=6)
        done.set()
        scraper.join(30)
        metrics = collector.metrics_text()
    assert statuses == [200] * len(requests)
    assert scrapes
    assert metric_value(metrics, "fleetwatch_exporter_checkpoints_total", reason="row_group") == 1
    assert metric_value(metrics, "fleetwatch_exporter_checkpoints_total", reason="wal_size") == 0
    assert metric_value(metrics, "fleetwatch_exporter_checkpoint_failures_total") == 0
    assert metric_value(metrics, "fleetwatch_duckdb_memory_bytes") > 0

    sent = sorted(span_id for _, ids in requests for span_id in ids)
    assert sorted(r[0] for r in query(db, "SELECT span_id FROM spans")) == sent
    assert query(db, "SELECT count(*) FROM batch_heads") == [(0,)]
    first_row_group = query(db, "SELECT count FROM pragma_storage_info('span_rows') "
                                "WHERE row_group_id = 0 AND column_id = 0 AND segment_type <> 'VALIDITY'")
    assert sum(count for (count,) in first_row_group) == ROW_GROUP_ROWS


def _one_collector_run(db, n_spans: int) -> list[str]:
    body, ids = trace_request(n_spans)
    with CollectorProcess(db) as collector:
        assert post(collector.http_port, "/v1/traces", body, token=None)[0] == 200
    return ids


def test_a_head_whose_tail_never_committed_is_removed_at_start_up(tmp_path):
    """The state a kill -9 between a batch's head and tail leaves behind: unacknowledged rows, marked."""
    db = tmp_path / "fw.duckdb"
    ids = _one_collector_run(db, 1_000)
    con = duckdb.connect(str(db))
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO span_rows SELECT * FROM span_rows LIMIT 300")
    con.execute("INSERT INTO batch_heads VALUES ('span_rows', 300, now()::TIMESTAMP_NS)")
    con.execute("COMMIT")
    con.close()

    with CollectorProcess(db) as collector:
        more, more_ids = trace_request(20)
        assert post(collector.http_port, "/v1/traces", more, token=None)[0] == 200
    assert "removed 300 rows of a batch whose commit did not finish" in collector.logs()
    assert sorted(r[0] for r in query(db, "SELECT span_id FROM spans")) == sorted(ids + more_ids)
    assert query(db, "SELECT count(*) FROM batch_heads") == [(0,)]


def test_start_up_refuses_a_head_record_that_does_not_match_the_table(tmp_path):
    db = tmp_path / "fw.duckdb"
    _one_collector_run(db, 100)
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO batch_heads VALUES ('span_rows', 5000, now()::TIMESTAMP_NS)")
    con.close()

    with pytest.raises(RuntimeError) as failure:
        CollectorProcess(db).start()
    assert "fleetwatch: cannot start: batch_heads says the last 5000 rows of span_rows are an unfinished batch" \
        in str(failure.value)
    assert "Traceback" not in str(failure.value)
    assert query(db, "SELECT count(*) FROM span_rows") == [(100,)], "nothing may be deleted on a mismatch"



def test_kill_9_between_a_batch_head_and_its_tail_loses_nothing_acknowledged_and_doubles_nothing(tmp_path):
    """DuckDB's debug setting holds every checkpoint open for 3 s, so the kill lands inside the window."""
    db = tmp_path / "fw.duckdb"
    config = {"exporters": {"duckdb": {"settings": {"debug_checkpoint_scan_sleep_ms": "3000"}}}}
    collector = CollectorProcess(db, config=config).start()
    head_requests = [trace_request(500) for _ in range(245)]  # 122,500 spans: just short of a row group
    acked = [span for body, ids in head_requests for span in ids]
    assert _post_all(collector.http_port, [body for body, _ in head_requests], threads=4) == [200] * 245
    crossing, crossing_ids = trace_request(1_000)  # its first 380 spans complete the row group
    answers: list = []

    def send_crossing() -> None:
        try:
            answers.append(post(collector.http_port, "/v1/traces", crossing, token=None)[0])
        except (OSError, http.client.HTTPException) as exc:  # the collector dies before answering
            answers.append(exc)

    size_before = db.stat().st_size  # everything so far is in the write-ahead log
    sender = threading.Thread(target=send_crossing)
    sender.start()
    # The checkpoint writes the row group into the file, then sleeps before installing it.
    wait_until(lambda: db.stat().st_size > size_before + (1 << 20), timeout=60, what="the checkpoint's writes")
    collector.kill()
    sender.join(30)
    assert len(answers) == 1 and not isinstance(answers[0], int), "the crossing request must not be answered"

    with CollectorProcess(db) as restarted:
        pass
    assert "removed 380 rows of a batch whose commit did not finish" in restarted.logs()
    assert sorted(r[0] for r in query(db, "SELECT span_id FROM spans")) == sorted(acked)
    assert query(db, "SELECT count(*) FROM batch_heads") == [(0,)]
    with CollectorProcess(db) as again:  # the client re-sends the unanswered request: written once, whole
        assert post(again.http_port, "/v1/traces", crossing, token=None)[0] == 200
    assert sorted(r[0] for r in query(db, "SELECT span_id FROM spans")) == sorted(acked + crossing_ids)


def test_duckdb_settings_pass_through_but_not_the_ones_the_exporter_owns(tmp_path):
    config = config_from_dict({"exporters": {"duckdb": {"path": str(tmp_path / "x.duckdb"),
                                                        "settings": {"temp_directory": str(tmp_path)}}}})
    assert config.exporters.duckdb.settings == {"temp_directory": str(tmp_path)}
    with pytest.raises(ConfigError, match="exporters.duckdb.settings.memory_limit: set exporters.duckdb.memory_limit_mib"):
        config_from_dict({"exporters": {"duckdb": {"settings": {"memory_limit": "1GB"}}}})
    with pytest.raises(RuntimeError) as failure:
        CollectorProcess(tmp_path / "y.duckdb",
                         config={"exporters": {"duckdb": {"settings": {"no_such_option": "1"}}}}).start()
    assert "configuration error: exporters.duckdb.settings: DuckDB refused an option" in str(failure.value)
    assert "no_such_option" in str(failure.value)


def test_checkpoint_times_are_durations_with_units():
    config = config_from_dict({"exporters": {"duckdb": {"checkpoint_idle": "2s", "checkpoint_max_interval": "5m"}}})
    assert (config.exporters.duckdb.checkpoint_idle, config.exporters.duckdb.checkpoint_max_interval) == (2.0, 300.0)
    with pytest.raises(ConfigError, match="exporters.duckdb.checkpoint_idle: must be at least 100ms"):
        config_from_dict({"exporters": {"duckdb": {"checkpoint_idle": "10ms"}}})
    with pytest.raises(ConfigError, match="exporters.duckdb.checkpoint_max_interval: expected a duration"):
        config_from_dict({"exporters": {"duckdb": {"checkpoint_max_interval": "often"}}})


def _wal_bytes(db) -> int:
    try:
        return os.path.getsize(str(db) + ".wal")
    except OSError:
        return 0


SMALL_WAL = 256 << 10


def test_a_quiet_gateway_keeps_its_write_ahead_log_small_and_restarts_with_little_to_replay(tmp_path):
    """20 devices' small requests, far from filling a row group: time-based checkpoints keep the log small."""
    db = tmp_path / "fw.duckdb"
    config = {"exporters": {"duckdb": {"checkpoint_idle": "1s", "checkpoint_max_interval": "1s"}}}
    collector = CollectorProcess(db, config=config).start()
    sent, largest_wal = [], 0
    try:
        for i in range(400):  # a steady trickle, never idle for a second: elapsed time bounds the log
            body, ids = trace_request(20, device=f"dev-{i % 20}")
            assert post(collector.http_port, "/v1/traces", body, token=None)[0] == 200
            sent += ids
            largest_wal = max(largest_wal, _wal_bytes(db))
            time.sleep(0.01)
        # then quiet: the idle checkpoint empties the log
        wait_until(lambda: _wal_bytes(db) < SMALL_WAL, timeout=60, what="an idle checkpoint")
        metrics = collector.metrics_text()
        assert metric_value(metrics, "fleetwatch_exporter_checkpoints_total", reason="elapsed") >= 1
        assert metric_value(metrics, "fleetwatch_duckdb_wal_bytes") < SMALL_WAL
    finally:
        collector.kill()  # no shutdown checkpoint: the next start replays what the log holds

    with CollectorProcess(db, config=config) as restarted:
        replayed = metric_value(restarted.metrics_text(), "fleetwatch_duckdb_wal_replayed_bytes")
    assert replayed < SMALL_WAL
    assert f"replayed {int(replayed)} bytes of write-ahead log in" in restarted.logs()
    assert sorted(r[0] for r in query(db, "SELECT span_id FROM spans")) == sorted(sent)
    assert largest_wal < 4 * SMALL_WAL, f"the log reached {largest_wal} bytes while requests kept coming"
