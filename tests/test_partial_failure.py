"""A gateway with a local DuckDB copy and the forwarding exporter, when one exporter fails and the other does not.

The failures are real ones, made by occupying a path the exporter must
create with a directory: the forwarder's next queue segment (its ``O_EXCL``
open fails) or DuckDB's write-ahead log, which DuckDB creates at the first
commit after a checkpoint (the commit fails, "Is a directory"). The other
exporter makes the same batch durable. The client gets a retryable error and
re-sends; the re-send must go only to the exporter that does not hold the
request yet, while the gateway runs and after a restart.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from collector.decoding.arrow_batches import TableBuilder
from collector.processing.exporters import BatchedRequest, WriteBatch
from collector.forwarding.queue_recovery import segment_path
from collector.decoding.trace_decode import decode_traces
from bench.harness import CollectorProcess, gateway_config, metric_value, query, queue_empty, wait_until
from tests.otlp_requests import trace_request
from bench.harness import post


def test_a_batch_cut_to_some_of_its_requests_keeps_exactly_their_rows():
    bodies = [trace_request(n, device=f"dev-{n}") for n in (3, 5, 2)]
    builder = TableBuilder("span_rows")
    requests, request_rows = [], []
    for index, (body, _) in enumerate(bodies):
        decoded = decode_traces(body)
        builder.add(decoded, decoded["count"], 1_000 + index, "gw")
        requests.append(BatchedRequest(f"d{index}", "traces", decoded["count"], 1_000 + index, "gw", body))
        request_rows.append({"span_rows": decoded["count"]})
    batch = WriteBatch({"span_rows": builder}, requests, lambda error: None, 10, request_rows)

    cut = batch.only([0, 2], lambda error: None)
    assert [r.digest for r in cut.requests] == ["d0", "d2"] and cut.rows == 5
    table = cut.tables["span_rows"].build()
    assert isinstance(table, pa.Table) and table.num_rows == 5
    assert table.column("device_id").to_pylist() == ["dev-3"] * 3 + ["dev-2"] * 2
    assert batch.only([0, 1, 2], lambda error: None).tables is batch.tables  # nothing to cut: shared as it is


def _block_forwarder(tmp_path: Path) -> list[Path]:
    """Occupy the paths of the queue's next segment files, so creating one fails (EEXIST)."""
    queue_dir = tmp_path / "gw-queue"
    existing = [int(p.stem.split("-")[1]) for p in queue_dir.glob("segment-*.fwq")]
    first = max(existing, default=0)
    blocked = [Path(segment_path(queue_dir, first + i)) for i in range(64)]
    blocked = [path for path in blocked if not path.exists()]
    for path in blocked:
        path.mkdir()
    return blocked


def _block_local_copy(tmp_path: Path) -> list[Path]:
    """Occupy the write-ahead log's path once the idle checkpoint removed the log, so the next commit fails."""
    wal = tmp_path / "gateway.duckdb.wal"
    wait_until(lambda: not wal.exists(), timeout=60, what="the idle checkpoint to remove the write-ahead log")
    wal.mkdir()
    return [wal]


def _unblock(blocked: list[Path]) -> None:
    for path in blocked:
        path.rmdir()


def _gateway(tmp_path: Path, central: CollectorProcess) -> CollectorProcess:
    config = gateway_config(tmp_path, central.http_url)
    for pipeline in config["service"]["pipelines"].values():
        pipeline["exporters"] = ["duckdb", "otlp"]
    config["exporters"]["duckdb"] = {"checkpoint_idle": "200ms"}
    config["processors"] = {"batch": {"timeout": "1s"}}  # requests sent together share a batch
    return CollectorProcess(tmp_path / "gateway.duckdb", config=config)


def _span_counts(db: Path) -> dict[str, int]:
    return dict(query(db, "SELECT span_id, count(*) FROM spans GROUP BY span_id"))


@pytest.fixture
def central(tmp_path):
    """The upstream: a real second collector."""
    process = CollectorProcess(tmp_path / "central.duckdb").start()
    yield process
    if process.proc.poll() is None:
        process.stop()


def _held_once_by_both(tmp_path: Path, central: CollectorProcess, span_ids: list[str]) -> None:
    assert central.stop() == 0
    expected = {span: 1 for span in span_ids}
    assert _span_counts(tmp_path / "gateway.duckdb") == expected, "the local copy holds the request exactly once"
    assert _span_counts(tmp_path / "central.duckdb") == expected, "upstream received the request exactly once"


FAILURES = {"forwarder": _block_forwarder, "local_copy": _block_local_copy}


def _refused_while_failing(tmp_path: Path, gateway: CollectorProcess, failing: str, body: bytes) -> list[Path]:
    """Make one exporter fail, then send: the client is told to retry. Returns the paths to unblock."""
    blocked = FAILURES[failing](tmp_path)
    status, _, answer = post(gateway.http_port, "/v1/traces", body, token=None)
    assert status == 503, answer
    return blocked


def _post_together(gateway: CollectorProcess, bodies: list[bytes]) -> list[int]:
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: post(gateway.http_port, "/v1/traces", body, token=None)[0], bodies))


def _retry(gateway: CollectorProcess, body: bytes) -> str:
    """Re-send until acknowledged, wait for the queue to drain; the gateway's /metrics after it."""
    assert post(gateway.http_port, "/v1/traces", body, token=None)[0] == 200
    wait_until(lambda: queue_empty(gateway), what="forwarding")
    return gateway.metrics_text()


@pytest.mark.parametrize("failing", FAILURES)
def test_a_client_retry_goes_only_to_the_exporter_that_failed(tmp_path, central, failing):
    body, span_ids = trace_request(7, device="dev-1")
    other, other_ids = trace_request(5, device="dev-3")
    with _gateway(tmp_path, central) as gateway:
        _unblock(_refused_while_failing(tmp_path, gateway, failing, body))
        metrics = gateway.metrics_text()
        assert metric_value(metrics, "fleetwatch_exporter_partly_held_requests") == 1
        batches = metric_value(metrics, "fleetwatch_exporter_batches_written_total", table="span_rows")
        # the retry shares a batch with a new request: the exporter that holds it gets only the new one's rows
        assert _post_together(gateway, [body, other]) == [200, 200]
        metrics = _retry(gateway, body)  # now a plain duplicate
        if failing == "forwarder":  # one upstream request carried both: they were one batch
            assert metric_value(metrics, "fleetwatch_forward_requests_total", outcome="delivered") == 1
        else:  # one DuckDB transaction wrote both
            assert metric_value(metrics, "fleetwatch_exporter_batches_written_total", table="span_rows") == batches + 1
        assert metric_value(metrics, "fleetwatch_exporter_rows_written_total", table="span_rows") == 7 + 5
        assert metric_value(metrics, "fleetwatch_forward_items_delivered_total") == 2
        assert metric_value(metrics, "fleetwatch_receiver_requests_total", outcome="duplicate") == 1
        assert metric_value(metrics, "fleetwatch_exporter_partly_held_requests") == 0
    _held_once_by_both(tmp_path, central, span_ids + other_ids)


@pytest.mark.parametrize("failing", FAILURES)
def test_after_a_restart_a_request_held_by_one_exporter_is_not_taken_as_held_by_both(tmp_path, central, failing):
    body, span_ids = trace_request(9, device="dev-2")
    with _gateway(tmp_path, central) as gateway:
        blocked = _refused_while_failing(tmp_path, gateway, failing, body)
        wait_until(lambda: queue_empty(gateway), what="forwarding what the forwarder holds")
    _unblock(blocked)
    with _gateway(tmp_path, central) as gateway:
        metrics = _retry(gateway, body)
        # only the exporter that failed writes the re-send
        written, forwarded = (0, 1) if failing == "forwarder" else (9, 0)
        assert metric_value(metrics, "fleetwatch_exporter_rows_written_total", table="span_rows") == written
        assert metric_value(metrics, "fleetwatch_forward_items_delivered_total") == forwarded
    _held_once_by_both(tmp_path, central, span_ids)
