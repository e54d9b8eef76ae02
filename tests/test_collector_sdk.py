"""Real OpenTelemetry SDK exporters → collector subprocess → DuckDB file, checked exactly."""

from __future__ import annotations

import random

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from bench.harness import CollectorProcess, query
from tests.sdk_contract import PROMOTED_RESOURCE, device_resource, normalise, row_attributes

PROMOTED_SPAN = {
    "ml.model.name": "model_name",
    "ml.model.version": "model_version",
    "ml.inference.mode": "inference_mode",
    "ml.request.id": "request_id",
    "ml.prediction.label": "prediction_label",
    "ml.prediction.score": "prediction_score",
    "ml.prediction.value": "prediction_value",
    "ml.inference.cold_start": "cold_start",
    "ml.label": "label",
    "ml.label.value": "label_value",
}

SPAN_COLUMNS = (
    "trace_id, span_id, parent_span_id, name, epoch_ns(start_time), epoch_ns(end_time), duration_ms, "
    "status_code, status_message, attributes, resource_attributes, received_at, gateway_id, kind, "
    + ", ".join(PROMOTED_RESOURCE.values())
    + ", "
    + ", ".join(PROMOTED_SPAN.values())
)


def _emit_spans(provider: TracerProvider, rng: random.Random, count: int) -> None:
    tracer = provider.get_tracer("fleetwatch.tests", "1.0")
    for i in range(count):
        with tracer.start_as_current_span("inference") as span:
            span.set_attributes(
                {
                    "ml.model.name": "defect-detector",
                    "ml.model.version": "3.1.0",
                    "ml.inference.mode": "edge",
                    "ml.request.id": f"req-{rng.getrandbits(64):016x}",
                    "ml.prediction.label": rng.choice(["ok", "scratch", "dent"]),
                    "ml.prediction.score": rng.random(),
                    "ml.inference.cold_start": i == 0,
                    "ml.feature.brightness": rng.uniform(0, 255),
                    "ml.feature.scene": rng.choice(["day", "night"]),
                    "ml.feature.tags": ["a", "b"],
                    "ml.feature.count": rng.randint(-5, 2**40),
                }
            )
            with tracer.start_as_current_span("execute") as child:
                child.set_attribute("stage", "execute")
            if i % 7 == 3:
                span.set_status(Status(StatusCode.ERROR, "accelerator timeout"))
            elif i % 11 == 0:
                span.set_status(Status(StatusCode.OK))


def _check_spans_exact(db_path, sent) -> None:
    rows = query(db_path, f"SELECT {SPAN_COLUMNS} FROM spans")
    names = [d.split(" AS ")[-1].strip() for d in SPAN_COLUMNS.split(", ")]
    by_id = {}
    for values in rows:
        row = dict(zip(names, values))
        by_id[row["span_id"]] = row
    assert len(rows) == len(sent) == len(by_id)
    for span in sent:
        row = by_id[format(span.context.span_id, "016x")]
        assert row["trace_id"] == format(span.context.trace_id, "032x")
        assert row["parent_span_id"] == (format(span.parent.span_id, "016x") if span.parent else None)
        assert row["name"] == span.name
        assert row["epoch_ns(start_time)"] == span.start_time
        assert row["epoch_ns(end_time)"] == span.end_time
        assert row["duration_ms"] == pytest.approx((span.end_time - span.start_time) / 1e6)
        assert row["status_code"] == span.status.status_code.name
        assert row["status_message"] == span.status.description
        assert row["kind"] == "INTERNAL"
        assert row_attributes(row, PROMOTED_SPAN, "attributes") == normalise(span.attributes)
        assert row_attributes(row, PROMOTED_RESOURCE, "resource_attributes") == normalise(span.resource.attributes)
        assert row["gateway_id"] == "gw-test"
        assert row["received_at"] is not None


def _send(collector: CollectorProcess, protocol: str, rng: random.Random, spans: int) -> tuple[list, dict]:
    if protocol.startswith("grpc"):
        from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression as GrpcCompression

        compression = GrpcCompression.Gzip if protocol == "grpc-gzip" else GrpcCompression.NoCompression
        span_exporter = GrpcSpanExporter(endpoint=collector.grpc_endpoint, insecure=True, compression=compression)
        metric_exporter = GrpcMetricExporter(endpoint=collector.grpc_endpoint, insecure=True,
                                             compression=compression)
    else:
        compression = Compression.Gzip if protocol == "http-gzip" else Compression.NoCompression
        span_exporter = HttpSpanExporter(endpoint=collector.http_url + "/v1/traces", compression=compression)
        metric_exporter = HttpMetricExporter(endpoint=collector.http_url + "/v1/metrics", compression=compression)
    resource = device_resource(rng.randint(0, 9999))
    captured = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(captured))
    provider.add_span_processor(BatchSpanProcessor(span_exporter, max_export_batch_size=256))
    _emit_spans(provider, rng, spans)
    assert provider.force_flush(30_000)
    provider.shutdown()

    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meters.get_meter("fleetwatch.tests")
    latency = meter.create_histogram("ml.inference.duration", unit="ms")
    temperature = meter.create_gauge("device.temperature", unit="Cel")
    sent_bytes = meter.create_counter("device.telemetry.bytes_sent", unit="By")
    values = [rng.uniform(1, 400) for _ in range(200)]
    for value in values:
        latency.record(value, {"ml.model.name": "defect-detector"})
    temperature.set(61.5, {"sensor": "soc"})
    for _ in range(10):
        sent_bytes.add(1500)
    meters.shutdown()  # exports once, then stops
    return captured.get_finished_spans(), {"latency": values, "temperature": 61.5, "bytes": 15000}


@pytest.mark.parametrize("protocol", ["http", "http-gzip", "grpc", "grpc-gzip"])
def test_sdk_exporters_land_exactly(tmp_path, protocol):
    db = tmp_path / "fw.duckdb"
    rng = random.Random(protocol)
    with CollectorProcess(db, extra_args=["--gateway-id", "gw-test"]) as collector:
        sent, metrics = _send(collector, protocol, rng, spans=300)
    _check_spans_exact(db, sent)

    gauge = query(db, "SELECT value, metric_type, unit, attributes, device_id FROM metric_points "
                      "WHERE metric_name = 'device.temperature'")
    assert gauge == [(metrics["temperature"], "gauge", "Cel", '{"sensor":"soc"}', gauge[0][4])]
    counter = query(db, "SELECT value, int_value, is_monotonic, aggregation_temporality FROM metric_points "
                        "WHERE metric_name = 'device.telemetry.bytes_sent'")
    assert counter == [(15000.0, 15000, True, "cumulative")]
    hist = query(db, "SELECT count, sum, min, max, explicit_bounds, bucket_counts, histogram_type "
                     "FROM histogram_points WHERE metric_name = 'ml.inference.duration'")
    assert len(hist) == 1
    count, total, low, high, bounds, buckets, kind = hist[0]
    values = metrics["latency"]
    assert (count, kind) == (len(values), "explicit")
    assert total == pytest.approx(sum(values))
    assert (low, high) == (min(values), max(values))
    expected = [0] * (len(bounds) + 1)
    for value in values:
        expected[sum(1 for b in bounds if value > b)] += 1
    assert buckets == expected
