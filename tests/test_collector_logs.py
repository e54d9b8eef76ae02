"""OTLP logs: the real SDK's log exporters (and its stdlib logging handler) → collector → ``log_records``."""

from __future__ import annotations

import json
import logging
import random
import threading

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bench.harness import CollectorProcess, gateway_config, metric_value, query, queue_empty, wait_until
from tests.otlp_requests import log_request
from bench.harness import grpc_call, post
from tests.sdk_contract import PROMOTED_RESOURCE, device_resource, normalise, row_attributes

LOG_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
LOG_COLUMNS = ["epoch_ns(time)", "epoch_ns(observed_time)", "severity_number", "severity_text", "body", "trace_id",
               "span_id", "event_name", "flags", "attributes", "resource_attributes", "scope_name", "gateway_id",
               "received_at", *PROMOTED_RESOURCE.values()]


def _rows(db) -> dict[int, dict]:
    """log_records rows by their ``seq`` attribute."""
    rows = [dict(zip(LOG_COLUMNS, values)) for values in query(db, f"SELECT {', '.join(LOG_COLUMNS)} FROM log_records")]
    return {json.loads(row["attributes"])["seq"]: row for row in rows}


def _emit(protocol: str, collector: CollectorProcess, rng: random.Random) -> list:
    """Log records through the SDK's LoggingHandler and its Logger API, two in each of 40 spans; the records sent."""
    if protocol == "grpc":
        log_exporter = GrpcLogExporter(endpoint=collector.grpc_endpoint, insecure=True)
        span_exporter = GrpcSpanExporter(endpoint=collector.grpc_endpoint, insecure=True)
    else:
        log_exporter = HttpLogExporter(endpoint=collector.http_url + "/v1/logs")
        span_exporter = HttpSpanExporter(endpoint=collector.http_url + "/v1/traces")
    resource = device_resource(rng.randint(0, 9999))
    captured = InMemoryLogRecordExporter()
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(captured))
    logs.add_log_record_processor(BatchLogRecordProcessor(log_exporter, max_export_batch_size=64))
    traces = TracerProvider(resource=resource)
    traces.add_span_processor(BatchSpanProcessor(span_exporter))
    tracer = traces.get_tracer("fleetwatch.tests")

    with pytest.warns(DeprecationWarning):
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=logs)
    stdlib = logging.getLogger(f"fleetwatch.tests.device.{protocol}")
    stdlib.propagate = False
    stdlib.setLevel(logging.DEBUG)
    stdlib.addHandler(handler)
    api = logs.get_logger("fleetwatch.tests.events", "2.0")
    seq = 0
    try:
        for i in range(40):
            with tracer.start_as_current_span("inference"):
                stdlib.warning("inference %d took %.1f ms", i, rng.uniform(1, 90), extra={"seq": seq})
                api.emit(severity_number=SeverityNumber.ERROR, severity_text="ERROR", event_name="model.load",
                         body={"model": "defect-detector", "attempt": i, "tags": ["a", "b"], "ok": False},
                         attributes={"seq": seq + 1, "ml.model.name": "defect-detector"})
            stdlib.info("outside any span: ünïcode ✓ %s", rng.random(), extra={"seq": seq + 2})
            seq += 3
    finally:
        stdlib.removeHandler(handler)
    assert traces.force_flush(30_000) and logs.force_flush(30_000)
    traces.shutdown()
    logs.shutdown()
    return list(captured.get_finished_logs())


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_log_exporters_land_exactly(tmp_path, protocol):
    db = tmp_path / "fw.duckdb"
    with CollectorProcess(db, extra_args=["--gateway-id", "gw-test"]) as collector:
        sent = _emit(protocol, collector, random.Random(protocol))
        text = collector.metrics_text()
    assert metric_value(text, "fleetwatch_receiver_items_accepted_total", signal="logs") == len(sent) == 120
    rows = _rows(db)
    assert len(rows) == len(sent) == query(db, "SELECT count(*) FROM log_records")[0][0]
    in_span = 0
    for readable in sent:
        record = readable.log_record
        row = rows[record.attributes["seq"]]
        assert row["epoch_ns(time)"] == record.timestamp
        assert row["epoch_ns(observed_time)"] == record.observed_timestamp
        assert row["severity_number"] == record.severity_number.value
        assert row["severity_text"] == record.severity_text
        if isinstance(record.body, str):
            assert row["body"] == record.body
        else:
            assert json.loads(row["body"]) == normalise(record.body)
        assert row["trace_id"] == (format(record.trace_id, "032x") if record.trace_id else None)
        assert row["span_id"] == (format(record.span_id, "016x") if record.span_id else None)
        in_span += bool(record.trace_id)
        assert row["flags"] == int(record.trace_flags or 0)
        assert row["event_name"] == record.event_name
        assert json.loads(row["attributes"]) == normalise(record.attributes)
        resource = normalise(readable.resource.attributes)
        assert row_attributes(row, PROMOTED_RESOURCE, "resource_attributes") == resource
        assert row["scope_name"] == readable.instrumentation_scope.name
        assert row["gateway_id"] == "gw-test" and row["received_at"] is not None
    assert in_span == 80
    # every record logged inside a span points at that span, stored by the trace exporter
    joined = query(db, "SELECT count(*), count(DISTINCT s.span_id) FROM log_records l "
                       "JOIN spans s ON l.trace_id = s.trace_id AND l.span_id = s.span_id WHERE s.name = 'inference'")
    assert joined == [(80, 40)]
    assert query(db, "SELECT DISTINCT severity_text FROM log_records ORDER BY 1") == [("ERROR",), ("INFO",), ("WARN",)]


def test_bad_records_rejected_alone_resends_stored_once_json_and_grpc(tmp_path):
    db = tmp_path / "fw.duckdb"
    with CollectorProcess(db) as collector:
        body, bodies = log_request(4, bad_trace_ids=1, bad_span_ids=2, missing_time=1)
        status, _, data = post(collector.http_port, "/v1/logs", body, token=None)
        assert status == 200
        assert post(collector.http_port, "/v1/logs", body, token=None)[0] == 200  # a client's re-send
        partial = ExportLogsServiceResponse.FromString(data).partial_success
        assert partial.rejected_log_records == 4
        assert partial.error_message.startswith("rejected 4 (2 invalid_span_id, 1 invalid_trace_id, "
                                                "1 missing_timestamp); first: ")
        assert "log record 4 in resource_logs[0].scope_logs[0]: trace_id must be empty or 16 bytes" in \
            partial.error_message

        grpc_body, grpc_bodies = log_request(2, device="dev-grpc", bad_span_ids=1)
        response = ExportLogsServiceResponse.FromString(grpc_call(collector.grpc_endpoint, grpc_body, token=None,
                                                                  method=LOG_METHOD))
        assert response.partial_success.rejected_log_records == 1

        trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
        json_body = {"resourceLogs": [{"resource": {"attributes": [
            {"key": "device.id", "value": {"stringValue": "dev-json"}}]},
            "scopeLogs": [{"logRecords": [
                {"timeUnixNano": "1764547200000000001", "severityNumber": 17, "traceId": trace_id, "spanId": span_id,
                 "body": {"kvlistValue": {"values": [{"key": "n", "value": {"intValue": "7"}}]}},
                 "attributes": [{"key": "seq", "value": {"intValue": "0"}}]},
                {"observedTimeUnixNano": "1764547200000000002", "body": {"stringValue": "no trace"},
                 "attributes": [{"key": "seq", "value": {"intValue": "1"}}]},
                {"body": {"stringValue": "no time at all"}},
            ]}]}]}
        status, _, data = post(collector.http_port, "/v1/logs", json.dumps(json_body).encode(),
                               content_type="application/json", token=None)
        assert status == 200
        assert json.loads(data)["partialSuccess"]["rejectedLogRecords"] == "1"

        status, _, _ = post(collector.http_port, "/v1/logs", b"\xff\xffnot protobuf", token=None)
        assert status == 400
        text = collector.metrics_text()

    for reason, count in (("invalid_trace_id", 1), ("invalid_span_id", 3), ("missing_timestamp", 2)):
        assert metric_value(text, "fleetwatch_receiver_items_rejected_total", signal="logs", reason=reason) == count
    assert metric_value(text, "fleetwatch_receiver_requests_total", signal="logs", outcome="duplicate") == 1
    assert metric_value(text, "fleetwatch_receiver_requests_total", signal="logs", outcome="bad_request") == 1
    stored = query(db, "SELECT device_id, body FROM log_records WHERE device_id IN ('dev-1', 'dev-grpc')")
    assert sorted(stored) == sorted([("dev-1", b) for b in bodies] + [("dev-grpc", b) for b in grpc_bodies])
    from_json = query(db, "SELECT epoch_ns(time), epoch_ns(observed_time), severity_number, trace_id, span_id, body "
                          "FROM log_records WHERE device_id = 'dev-json' ORDER BY attributes->>'seq'")
    assert from_json == [(1764547200000000001, None, 17, trace_id, span_id, '{"n":7}'),
                         (None, 1764547200000000002, None, None, None, "no trace")]
    # the device's clock is tracked from its log records too (the observed time when there is no other)
    assert query(db, "SELECT epoch_ns(last_event_time), requests FROM devices WHERE device_id = 'dev-json'") == [
        (1764547200000000002, 1)]


def test_logs_forwarded_gateway_to_central(tmp_path):
    central = CollectorProcess(tmp_path / "central.duckdb").start()
    try:
        config = gateway_config(tmp_path, central.http_url)
        config["service"]["pipelines"]["logs"] = {"receivers": ["otlp"], "exporters": ["otlp"]}
        with CollectorProcess(tmp_path / "unused.duckdb", config=config) as gateway:
            sent = _emit("http", gateway, random.Random(7))
            wait_until(lambda: queue_empty(gateway), what="the gateway queue to drain")
    finally:
        assert central.stop() == 0
    rows = _rows(tmp_path / "central.duckdb")
    assert len(rows) == len(sent) == 120
    for readable in sent:
        row = rows[readable.log_record.attributes["seq"]]
        assert row["gateway_id"] == "gw-test"
        assert row["epoch_ns(time)"] == readable.log_record.timestamp
        assert row["span_id"] == (format(readable.log_record.span_id, "016x") if readable.log_record.span_id else None)


def test_logs_count_against_the_memory_budget_and_acknowledged_means_durable(tmp_path):
    db = tmp_path / "fw.duckdb"
    config = {
        "processors": {"memory_limiter": {"limit_mib": 0.01, "retry_after": "7s"},
                       "batch": {"timeout": "4s", "send_batch_size": 1_000_000}},
    }
    first, first_bodies = log_request(70, device="dev-first")  # together with the second, over 10 KiB
    second, second_bodies = log_request(40, device="dev-second")
    assert len(first) + len(second) > 0.01 * (1 << 20) > len(first)
    collector = CollectorProcess(db, config=config).start()
    answers = {}
    sender = threading.Thread(target=lambda: answers.update(first=post(collector.http_port, "/v1/logs", first,
                                                                       token=None)))
    sender.start()
    wait_until(lambda: metric_value(collector.metrics_text(), "fleetwatch_queue_bytes") > 0, 30,
               "the first request to be queued")
    status, headers, data = post(collector.http_port, "/v1/logs", second, token=None)
    assert status == 503 and headers["Retry-After"] == "7" and Status.FromString(data).code == 14
    sender.join(60)
    assert answers["first"][0] == 200
    collector.kill()  # kill -9 right after the acknowledgement

    with CollectorProcess(db, config=config) as collector:
        assert post(collector.http_port, "/v1/logs", first, token=None)[0] == 200  # re-sent after the restart
        assert post(collector.http_port, "/v1/logs", second, token=None)[0] == 200
        text = collector.metrics_text()
    assert metric_value(text, "fleetwatch_receiver_requests_total", signal="logs", outcome="duplicate") == 1
    stored = query(db, "SELECT device_id, body FROM log_records")
    expected = [("dev-first", body) for body in first_bodies] + [("dev-second", body) for body in second_bodies]
    assert sorted(stored) == sorted(expected)
