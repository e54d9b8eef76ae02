"""Every bad input gets its documented answer, costs nothing else, and the process keeps serving."""

from __future__ import annotations

import gzip
import json
import threading
import time

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bench.harness import CollectorProcess, grpc_call, metric_value, post, query
from tests.otlp_requests import gauge_request, trace_request

TOKEN = "fw-test-token-1"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    db = tmp_path_factory.mktemp("bad") / "fw.duckdb"
    config = {
        "receivers": {
            "otlp": {
                "auth": {"bearer_tokens": [TOKEN, "second-token"]},
                "protocols": {"http": {"max_request_body_size_mib": 1}, "grpc": {"max_recv_msg_size_mib": 1}},
            }
        }
    }
    collector = CollectorProcess(db, config=config).start()
    yield collector, db, []
    assert collector.stop() == 0, collector.logs()


def test_authentication_required(guarded):
    collector, _, good = guarded
    body, _ = trace_request(3)
    for token in (None, "wrong-token", TOKEN + "x", ""):
        status, headers, _ = post(collector.http_port, "/v1/traces", body, token=token)
        assert status == 401
        assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    with pytest.raises(grpc.RpcError) as err:
        grpc_call(collector.grpc_endpoint, body, token="nope")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert TOKEN not in collector.logs()
    body, ids = trace_request(1)
    assert post(collector.http_port, "/v1/traces", body, token="second-token")[0] == 200
    good.extend(ids)


def test_partial_success_rejects_only_bad_spans(guarded):
    collector, _, good = guarded
    body, ids = trace_request(5, bad_ids=2)
    status, headers, data = post(collector.http_port, "/v1/traces", body, token=TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("application/x-protobuf")
    response = ExportTraceServiceResponse.FromString(data)
    assert response.partial_success.rejected_spans == 2
    assert "invalid_span_id" in response.partial_success.error_message
    good.extend(ids)

    status, _, data = post(collector.http_port, "/v1/metrics", gauge_request(4, missing_time=1), token=TOKEN)
    assert status == 200
    assert ExportMetricsServiceResponse.FromString(data).partial_success.rejected_data_points == 1


@pytest.mark.parametrize(
    "body, content_type, encoding, expected",
    [
        (b"\xff\xff\xff\xff garbage", "application/x-protobuf", None, 400),
        (b"{not json", "application/json", None, 400),
        (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}).encode(),
         "application/json", None, 400),
        (b"\x1f\x8b\x08\x00broken-gzip", "application/x-protobuf", "gzip", 400),
        (b"abc", "text/plain", None, 415),
        (b"abc", "application/x-protobuf", "br", 415),
        (b"\x00" * (2 << 20), "application/x-protobuf", None, 413),
        (gzip.compress(b"\x00" * (200 << 20)), "application/x-protobuf", "gzip", 413),  # a gzip bomb
    ],
    ids=["garbage-protobuf", "bad-json", "bad-hex-id", "corrupt-gzip", "content-type", "encoding", "too-large",
         "gzip-bomb"],
)
def test_bad_http_bodies(guarded, body, content_type, encoding, expected):
    collector, _, good = guarded
    headers = {"Content-Encoding": encoding} if encoding else {}
    status, response_headers, data = post(collector.http_port, "/v1/traces", body, content_type=content_type,
                                          headers=headers, token=TOKEN)
    assert status == expected
    if content_type == "application/json":
        assert json.loads(data)["code"] == 3 and json.loads(data)["message"]
    elif status != 415:
        assert Status.FromString(data).message
    # the process keeps serving, and good data still lands
    ok_body, ids = trace_request(2)
    assert post(collector.http_port, "/v1/traces", ok_body, token=TOKEN)[0] == 200
    good.extend(ids)


def test_bad_grpc_messages(guarded):
    collector, _, good = guarded
    with pytest.raises(grpc.RpcError) as err:
        grpc_call(collector.grpc_endpoint, b"\xff\xff\xff garbage", token=TOKEN)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    big, _ = trace_request(9000)  # about 1.2 MiB, over the 1 MiB cap
    assert len(big) > 1 << 20
    for compression in (None, grpc.Compression.Gzip):
        with pytest.raises(grpc.RpcError) as err:
            grpc_call(collector.grpc_endpoint, big, compression=compression, token=TOKEN)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    body, ids = trace_request(3)
    response = ExportTraceServiceResponse.FromString(grpc_call(collector.grpc_endpoint, body, token=TOKEN))
    assert not response.HasField("partial_success")
    good.extend(ids)


def test_resent_request_is_not_counted_twice(guarded):
    collector, db, good = guarded
    body, ids = trace_request(10)
    for _ in range(3):
        assert post(collector.http_port, "/v1/traces", body, token=TOKEN)[0] == 200
    grpc_call(collector.grpc_endpoint, body, token=TOKEN)
    good.extend(ids)
    assert metric_value(collector.metrics_text(), "fleetwatch_receiver_requests_total", outcome="duplicate") >= 3


def test_zz_everything_good_is_there_once(guarded):
    """Runs last in this module: the file holds exactly the good spans, once each."""
    collector, db, good = guarded
    text = collector.metrics_text()
    assert metric_value(text, "fleetwatch_receiver_items_rejected_total", reason="invalid_span_id") == 2
    assert metric_value(text, "fleetwatch_receiver_requests_total", outcome="unauthenticated") >= 5
    assert metric_value(text, "fleetwatch_receiver_requests_total", outcome="too_large") >= 2
    assert collector.stop() == 0
    rows = query(db, "SELECT span_id FROM spans")
    assert sorted(r[0] for r in rows) == sorted(set(good))
    assert len(rows) == len(good)
    assert query(db, "SELECT count(*) FROM metric_points")[0][0] == 4


def test_memory_budget_refuses_with_retry_advice(tmp_path):
    config = {
        "processors": {"memory_limiter": {"limit_mib": 0.01, "retry_after": "7s"},
                       "batch": {"timeout": "4s", "send_batch_size": 1_000_000}},
    }
    with CollectorProcess(tmp_path / "fw.duckdb", config=config) as collector:
        first, first_ids = trace_request(100)
        results = {}
        sender = threading.Thread(target=lambda: results.update(first=post(collector.http_port, "/v1/traces", first,
                                                                           token=None)))
        sender.start()
        deadline = time.monotonic() + 30
        while metric_value(collector.metrics_text(), "fleetwatch_queue_bytes") == 0:
            assert time.monotonic() < deadline, "first request never queued"
            time.sleep(0.05)
        second, _ = trace_request(100)
        status, headers, data = post(collector.http_port, "/v1/traces", second, token=None)
        assert status == 503 and headers["Retry-After"] == "7"
        assert Status.FromString(data).code == 14
        with pytest.raises(grpc.RpcError) as err:
            grpc_call(collector.grpc_endpoint, second, token=None)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        retry = RetryInfo.FromString(dict(err.value.trailing_metadata())["google.rpc.retryinfo-bin"])
        assert retry.retry_delay.seconds == 7
        sender.join(60)
        assert results["first"][0] == 200
        # once the queue drained, the refused request goes through
        assert post(collector.http_port, "/v1/traces", second, token=None)[0] == 200
    assert query(tmp_path / "fw.duckdb", "SELECT count(*) FROM spans")[0][0] == 200
