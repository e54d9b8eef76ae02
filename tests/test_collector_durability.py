"""Acknowledged means durable: kill -9, restarts, re-sent requests, clean shutdown."""

from __future__ import annotations

import http.client
import os
import threading
import time

import pytest

from bench.harness import CollectorProcess, query
from tests.otlp_requests import trace_request
from bench.harness import post


@pytest.mark.parametrize("acked_before_kill", [20_000, 140_000], ids=["within-a-row-group", "past-a-row-group"])
def test_kill_9_loses_no_acknowledged_span(tmp_path, acked_before_kill):
    """Past a row group, the writer has split a batch around a checkpoint (collector.store.checkpoints) at least once."""
    db = tmp_path / "fw.duckdb"
    collector = CollectorProcess(db).start()
    acked: list[str] = []
    sent: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def device(seed: int) -> None:
        while not stop.is_set():
            body, ids = trace_request(200, device=f"dev-{seed}")
            with lock:
                sent.extend(ids)
            try:
                status = post(collector.http_port, "/v1/traces", body, token=None)[0]
            except (OSError, http.client.HTTPException):
                return  # the collector is gone
            if status == 200:
                with lock:
                    acked.extend(ids)

    threads = [threading.Thread(target=device, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acked) < acked_before_kill and time.monotonic() < deadline:
        time.sleep(0.05)
    collector.kill()  # mid-load, requests in flight
    stop.set()
    for thread in threads:
        thread.join(30)
    assert len(acked) >= acked_before_kill, collector.logs()

    with CollectorProcess(db):  # replays the write-ahead log, removes a batch head left without its tail
        pass
    stored = [r[0] for r in query(db, "SELECT span_id FROM spans")]
    assert query(db, "SELECT count(*) FROM batch_heads") == [(0,)]
    stored_set = set(stored)
    assert len(stored) == len(stored_set), "a span was written twice"
    missing = set(acked) - stored_set
    assert not missing, f"{len(missing)} acknowledged spans lost"
    assert stored_set <= set(sent)


def test_resend_after_restart_is_not_counted_twice(tmp_path):
    db = tmp_path / "fw.duckdb"
    body, ids = trace_request(50)
    with CollectorProcess(db) as collector:
        assert post(collector.http_port, "/v1/traces", body, token=None)[0] == 200
    with CollectorProcess(db) as collector:
        assert post(collector.http_port, "/v1/traces", body, token=None)[0] == 200
        other, other_ids = trace_request(5)
        assert post(collector.http_port, "/v1/traces", other, token=None)[0] == 200
    assert sorted(r[0] for r in query(db, "SELECT span_id FROM spans")) == sorted(ids + other_ids)


def test_sigterm_flushes_and_closes_cleanly(tmp_path):
    db = tmp_path / "fw.duckdb"
    config = {"processors": {"batch": {"timeout": "3s", "send_batch_size": 1_000_000}}}
    collector = CollectorProcess(db, config=config).start()
    body, ids = trace_request(30)
    result = {}
    sender = threading.Thread(
        target=lambda: result.update(status=post(collector.http_port, "/v1/traces", body, token=None)[0]))
    sender.start()
    time.sleep(0.5)  # the request now waits in the batcher for its group commit
    assert collector.stop() == 0, collector.logs()
    sender.join(30)
    assert result["status"] == 200
    assert not os.path.exists(str(db) + ".wal"), "the database was not checkpointed at shutdown"
    assert query(db, "SELECT count(*) FROM spans")[0][0] == 30
    assert '"shut down cleanly"' in collector.logs()


def test_second_process_on_same_file_fails_clearly(tmp_path):
    db = tmp_path / "fw.duckdb"
    with CollectorProcess(db):
        second = CollectorProcess(db)
        try:
            second.start()
            raise AssertionError("a second collector started on the same file")
        except RuntimeError as exc:
            assert "already open in another process" in str(exc)


def test_a_thousand_devices_reconnecting_at_once(tmp_path):
    """After an outage every device reconnects at the same moment; all their data lands, nothing crashes."""
    import asyncio
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    db = tmp_path / "fw.duckdb"
    devices = 1000
    bodies = [trace_request(10, device=f"dev-{i}") for i in range(devices)]

    async def device(port: int, body: bytes) -> int:
        for _ in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/traces HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-protobuf\r\n"
                         + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            await reader.read()
            writer.close()
            status = int(status_line.split()[1])
            if status not in (429, 503):
                return status
            await asyncio.sleep(0.5)
        return 0

    async def storm(port: int) -> list[int]:
        return await asyncio.gather(*(device(port, body) for body, _ in bodies))

    with CollectorProcess(db) as collector:
        statuses = asyncio.run(storm(collector.http_port))
        assert collector.ready()
    assert statuses.count(200) == devices, {s: statuses.count(s) for s in set(statuses)}
    assert query(db, "SELECT count(*), count(DISTINCT device_id) FROM spans") == [(devices * 10, devices)]
