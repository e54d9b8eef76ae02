"""Small OTLP request builders for tests, using the opentelemetry-proto classes."""

from __future__ import annotations

import os
import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.otlp_shapes import kv


def trace_request(n_spans: int, *, device: str = "dev-1", bad_ids: int = 0, start_ns: int | None = None) -> tuple[bytes, list[str]]:
    """A request with ``n_spans`` valid spans plus ``bad_ids`` spans with an empty span id.

    Returns the serialized request and the hex span ids of the valid spans.
    """
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", "svc"), kv("device.id", device), kv("fleet.site", "s1")])
    scope = rs.scope_spans.add()
    start = start_ns or time.time_ns()
    ids = []
    for i in range(n_spans + bad_ids):
        span = scope.spans.add()
        span.trace_id = os.urandom(16)
        span.span_id = os.urandom(8) if i < n_spans else b""
        span.name = "inference"
        span.kind = 1
        span.start_time_unix_nano = start + i
        span.end_time_unix_nano = start + i + 1_000_000
        span.attributes.extend([kv("ml.model.name", "m"), kv("ml.prediction.score", 0.5), kv("ml.feature.x", i)])
        if i < n_spans:
            ids.append(span.span_id.hex())
    return request.SerializeToString(), ids


def gauge_request(n_points: int, *, name: str = "device.cpu.utilization", missing_time: int = 0) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "svc"), kv("device.id", "dev-1")])
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = name
    now = time.time_ns()
    for i in range(n_points + missing_time):
        point = metric.gauge.data_points.add()
        point.time_unix_nano = now + i if i < n_points else 0
        point.as_double = i / 10
    return request.SerializeToString()


def histogram_request(name: str = "ml.inference.duration", values: tuple[float, ...] = (3.0, 12.0, 40.0)) -> bytes:
    bounds = [5.0, 10.0, 25.0, 50.0]
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "svc"), kv("device.id", "dev-1")])
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = name
    metric.unit = "ms"
    metric.histogram.aggregation_temporality = 2
    point = metric.histogram.data_points.add()
    point.time_unix_nano = time.time_ns()
    point.count = len(values)
    point.sum = sum(values)
    point.explicit_bounds.extend(bounds)
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[sum(1 for b in bounds if value > b)] += 1
    point.bucket_counts.extend(counts)
    return request.SerializeToString()


def log_request(n_records: int, *, device: str = "dev-1", bad_trace_ids: int = 0, bad_span_ids: int = 0,
                missing_time: int = 0, in_span: tuple[bytes, bytes] | None = None) -> tuple[bytes, list[str]]:
    """A request with ``n_records`` valid log records (each in its own trace, or all in the span whose
    (trace id, span id) is ``in_span``) followed by the bad ones asked for: a 3-byte trace id, a 5-byte span id,
    or neither time nor observed time.

    Returns the serialized request and the bodies of the valid records.
    """
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend([kv("service.name", "svc"), kv("device.id", device), kv("fleet.site", "s1")])
    scope = rl.scope_logs.add()
    scope.scope.name = "tests"
    now = time.time_ns()
    kinds = ["good"] * n_records + ["trace"] * bad_trace_ids + ["span"] * bad_span_ids + ["time"] * missing_time
    bodies = []
    for i, kind in enumerate(kinds):
        record = scope.log_records.add()
        record.time_unix_nano = 0 if kind == "time" else now + i
        record.severity_number = 13  # WARN
        record.severity_text = "WARN"
        record.body.string_value = f"{device} record {i} {os.urandom(4).hex()}"
        trace_id, span_id = in_span or (os.urandom(16), os.urandom(8))
        record.trace_id = b"\x01\x02\x03" if kind == "trace" else trace_id
        record.span_id = b"\x01" * 5 if kind == "span" else span_id
        record.attributes.extend([kv("ml.model.name", "m"), kv("seq", i)])
        if kind == "good":
            bodies.append(record.body.string_value)
    return request.SerializeToString(), bodies


# Written by hand from the OTLP specification's JSON encoding rules: hex ids,
# integer enums, int64 as strings, lowerCamelCase, and an unknown field.
SPEC_JSON = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "json-device"}},
                    {"key": "device.id", "value": {"stringValue": "cam-7"}},
                    {"key": "rack", "value": {"intValue": "12"}},
                ]
            },
            "scopeSpans": [
                {
                    "scope": {"name": "manual", "version": "0.1"},
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "parentSpanId": "eee19b7ec3c1b173",
                            "name": "inference",
                            "kind": 2,
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000123",
                            "attributes": [
                                {"key": "ml.model.name", "value": {"stringValue": "kws"}},
                                {"key": "ml.prediction.score", "value": {"doubleValue": 0.75}},
                                {"key": "ml.inference.cold_start", "value": {"boolValue": True}},
                                {"key": "big", "value": {"intValue": "9007199254740993"}},
                                {"key": "arr", "value": {"arrayValue": {"values": [{"stringValue": "a"},
                                                                                  {"intValue": "1"}]}}},
                            ],
                            "status": {"code": 2, "message": "boom"},
                            "someFutureField": {"x": 1},
                        }
                    ],
                }
            ],
        }
    ]
}
