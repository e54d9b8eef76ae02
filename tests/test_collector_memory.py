"""A 1 MiB request must not cost gigabytes: requests are sized before they are decoded.

A 1.1 MiB request whose resource carries a 1 MiB ``service.name`` over 1,900
minimal spans decodes to about 1.9 GB of rows (the name repeated in every
one). It once took the collector from 141 MiB to a 4.1 GiB peak and failed
its whole batch with DuckDB out of memory. Now it is sized from its wire
format, refused alone with a non-retryable answer naming the limit (413 /
INVALID_ARGUMENT), and a normal request in the same batch is stored.
Peak memory is the serving process's VmHWM (the kernel's high-water mark).
"""

from __future__ import annotations

import threading

import grpc
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.ingest import _proc_stat
from bench.harness import CollectorProcess, metric_value, query
from bench.otlp_shapes import heavy_resource_request
from tests.otlp_requests import trace_request
from bench.harness import grpc_call, post

MiB = 1 << 20
#: peak RSS allowed above the idle process's own peak while the heavy requests are refused
PEAK_GROWTH_CEILING = 150 * MiB


def peak_rss(collector: CollectorProcess) -> int:
    return _proc_stat(collector.proc.pid)[1]


@pytest.mark.parametrize("n_spans", [1900, 2049])
def test_heavy_resource_request_is_refused_alone_without_the_memory(tmp_path, n_spans):
    config = {"processors": {"batch": {"timeout": "3s", "send_batch_size": 1_000_000}}}
    with CollectorProcess(tmp_path / "fw.duckdb", config=config) as collector:
        idle_peak = peak_rss(collector)
        normal, normal_ids = trace_request(50)
        results = {}
        sender = threading.Thread(
            target=lambda: results.update(normal=post(collector.http_port, "/v1/traces", normal, token=None))
        )
        sender.start()  # waits in the batch for its timer while the heavy requests arrive
        heavy = heavy_resource_request(n_spans)
        assert len(heavy) < 1.2 * MiB
        status, _, body = post(collector.http_port, "/v1/traces", heavy, token=None)
        assert status == 413
        message = Status.FromString(body).message
        assert "too large once decoded" in message and "bytes per request" in message
        with pytest.raises(grpc.RpcError) as err:
            grpc_call(collector.grpc_endpoint, heavy, token=None)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # OTLP clients do not retry it
        sender.join()
        assert results["normal"][0] == 200
        growth = peak_rss(collector) - idle_peak
        assert growth < PEAK_GROWTH_CEILING, f"peak RSS grew by {growth / MiB:.0f} MiB"
        text = collector.metrics_text()
        assert metric_value(text, "fleetwatch_receiver_requests_total", outcome="too_large") == 2
        assert post(collector.http_port, "/v1/traces", trace_request(3)[0], token=None)[0] == 200
    rows = query(tmp_path / "fw.duckdb", "SELECT span_id, service_name FROM spans")
    assert len(rows) == 53 and set(normal_ids) <= {r[0] for r in rows}
    assert {r[1] for r in rows} == {"svc"}


def test_the_cap_follows_the_memory_budget(tmp_path):
    # limit_mib 128 -> a request may take 32 MiB once decoded
    config = {"processors": {"memory_limiter": {"limit_mib": 128}}}
    within = heavy_resource_request(200, value_bytes=100_000)  # about 20 MB of rows
    over = heavy_resource_request(400, value_bytes=100_000)  # about 40 MB of rows
    with CollectorProcess(tmp_path / "fw.duckdb", config=config) as collector:
        status, _, body = post(collector.http_port, "/v1/traces", over, token=None)
        assert status == 413 and f"limit of {32 * MiB} bytes" in Status.FromString(body).message
        assert post(collector.http_port, "/v1/traces", within, token=None)[0] == 200
    rows = query(tmp_path / "fw.duckdb", "SELECT count(*), min(length(service_name)) FROM spans")
    assert rows == [(200, 100_000)]


def test_large_requests_within_the_cap_commit_alone(tmp_path):
    # Two requests of about 45 MB of rows each, under the 64 MiB cap. DuckDB holds a transaction's
    # text in memory until it commits (memory limit 100 MiB): together they failed the commit of
    # everything batched with them. Each now gets a transaction of its own.
    config = {"processors": {"batch": {"timeout": "3s", "send_batch_size": 1_000_000}}}
    with CollectorProcess(tmp_path / "fw.duckdb", config=config) as collector:
        normal, normal_ids = trace_request(50)
        bodies = [normal] + [heavy_resource_request(450, value_bytes=100_000) for _ in range(2)]
        statuses: dict[int, int] = {}

        def send(i: int) -> None:
            statuses[i] = post(collector.http_port, "/v1/traces", bodies[i], token=None)[0]

        senders = [threading.Thread(target=send, args=(i,)) for i in range(3)]
        for sender in senders:  # the normal request first: it waits in its batch while the others arrive
            sender.start()
        for sender in senders:
            sender.join()
    assert statuses[0] == 200
    heavy_stored = [statuses[i] for i in (1, 2)].count(200)
    assert heavy_stored >= 1 and set(statuses.values()) <= {200, 503}  # 503: DuckDB full until a checkpoint
    rows = query(tmp_path / "fw.duckdb", "SELECT span_id FROM spans")
    assert len(rows) == 50 + 450 * heavy_stored and set(normal_ids) <= {r[0] for r in rows}


def _device_spans(service_name: str, count: int) -> list:
    """Spans as the real SDK makes them for a device whose resource carries ``service_name``."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name, "device.id": "cam-1"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("fleetwatch.tests")
    for _ in range(count):
        with tracer.start_as_current_span("inference"):
            pass
    return list(memory.get_finished_spans())


def test_sdk_exporters_take_the_refusal_as_final(tmp_path):
    heavy = _device_spans("s" * MiB, 100)  # 100 MiB of rows (the SDK's own encoder is slow on more)
    with CollectorProcess(tmp_path / "fw.duckdb") as collector:
        idle_peak = peak_rss(collector)
        http = HttpSpanExporter(endpoint=collector.http_url + "/v1/traces", timeout=30)
        assert http.export(heavy) == SpanExportResult.FAILURE
        grpc_exporter = GrpcSpanExporter(endpoint=collector.grpc_endpoint, insecure=True, timeout=30)
        assert grpc_exporter.export(heavy) == SpanExportResult.FAILURE
        text = collector.metrics_text()
        assert metric_value(text, "fleetwatch_receiver_requests_total", outcome="too_large") == 2  # no retries
        assert http.export(_device_spans("vision-edge", 20)) == SpanExportResult.SUCCESS
        assert peak_rss(collector) - idle_peak < PEAK_GROWTH_CEILING
        http.shutdown()
        grpc_exporter.shutdown()
    assert query(tmp_path / "fw.duckdb", "SELECT count(*), min(service_name) FROM spans") == [(20, "vision-edge")]
