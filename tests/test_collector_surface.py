"""OTLP/JSON from the specification, TLS, config validation, health, and the gateway's footprint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from bench.harness import CollectorProcess, grpc_call, metric_value, post, query
from tests.certificates import self_signed_certificate
from tests.otlp_requests import SPEC_JSON, gauge_request, log_request, trace_request



def test_spec_json_body_is_accepted(tmp_path):
    db = tmp_path / "fw.duckdb"
    with CollectorProcess(db) as collector:
        status, headers, data = post(collector.http_port, "/v1/traces", json.dumps(SPEC_JSON).encode(),
                                     content_type="application/json", token=None)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert json.loads(data) == {}
    row = query(db, "SELECT trace_id, span_id, parent_span_id, kind, epoch_ns(start_time), epoch_ns(end_time), "
                    "status_code, status_message, model_name, prediction_score, cold_start, attributes, "
                    "resource_attributes, service_name, device_id, scope_name FROM spans")
    assert row == [(
        "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "eee19b7ec3c1b173", "SERVER",
        1544712660000000000, 1544712661000000123, "ERROR", "boom", "kws", 0.75, True,
        '{"big":9007199254740993,"arr":["a",1]}', '{"rack":12}', "json-device", "cam-7", "manual",
    )]


def test_compressed_bodies_in_both_content_types(tmp_path):
    import gzip
    import zlib

    import zstandard

    from tests.otlp_requests import trace_request, SPEC_JSON

    encoders = {"gzip": gzip.compress, "deflate": zlib.compress, "zstd": zstandard.ZstdCompressor().compress,
                "identity": lambda b: b}
    db = tmp_path / "fw.duckdb"
    expected = set()
    with CollectorProcess(db) as collector:
        for name, encode in encoders.items():
            body, ids = trace_request(4, device=name)
            expected.update(ids)
            status, _, _ = post(collector.http_port, "/v1/traces", encode(body), token=None,
                                headers={"Content-Encoding": name})
            assert status == 200, name
            as_json = json.loads(json.dumps(SPEC_JSON).replace("eee19b7ec3c1b174", f"{len(expected):016x}"))
            status, _, data = post(collector.http_port, "/v1/traces", encode(json.dumps(as_json).encode()),
                                   content_type="application/json", token=None, headers={"Content-Encoding": name})
            assert (status, json.loads(data)) == (200, {}), name
            expected.add(f"{len(expected):016x}")
    assert {r[0] for r in query(db, "SELECT span_id FROM spans")} == expected


def test_tls_on_both_receivers(tmp_path, monkeypatch):
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

    cert, key = self_signed_certificate(tmp_path)
    # requests lets these variables override the exporter's own CA file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    config = {"receivers": {"otlp": {"tls": {"cert_file": str(cert), "key_file": str(key)}}}}
    db = tmp_path / "fw.duckdb"
    with CollectorProcess(db, config=config) as collector:
        assert collector.http_url.startswith("https://")
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        exporters = [
            OTLPSpanExporter(endpoint=collector.http_url + "/v1/traces", certificate_file=str(cert)),
            GrpcSpanExporter(endpoint=collector.grpc_endpoint, credentials=credentials, insecure=False),
        ]
        for exporter in exporters:
            provider = TracerProvider(resource=Resource.create({"service.name": "tls"}))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            with provider.get_tracer("t").start_as_current_span(type(exporter).__module__):
                pass
            provider.shutdown()
        with pytest.raises(Exception):  # plain text to a TLS port is refused
            urllib.request.urlopen(f"http://127.0.0.1:{collector.http_port}/healthz", timeout=5)
    assert query(db, "SELECT count(*) FROM spans")[0][0] == 2


@pytest.mark.parametrize(
    "config, message",
    [
        ({"receivers": {"otlp": {"protocols": {"http": {"endpont": "x:1"}}}}},
         "receivers.otlp.protocols.http.endpont: unknown key"),
        ({"processors": {"batch": {"timeout": "fast"}}}, "processors.batch.timeout"),
        ({"processors": {"memory_limiter": {"limit_mib": -1}}}, "processors.memory_limiter.limit_mib"),
        ({"service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["kafka"]}}}},
         "unknown component 'kafka'"),
        ({"receivers": {"otlp": {"tls": {"cert_file": "/nonexistent.crt"}}}}, "receivers.otlp.tls"),
    ],
)
def test_bad_config_fails_fast_naming_the_key(tmp_path, config, message):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "fleetwatch.cli", "serve", "--config", str(path),
                             "--db", str(tmp_path / "x.duckdb")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_health_and_metrics_endpoints(tmp_path):
    with CollectorProcess(tmp_path / "fw.duckdb") as collector:
        with urllib.request.urlopen(collector.http_url + "/healthz", timeout=5) as response:
            health = json.loads(response.read())
        assert health["live"] and health["ready"] and health["state"] == "running"
        from tests.otlp_requests import trace_request

        body, _ = trace_request(7)
        assert post(collector.http_port, "/v1/traces", body, token=None)[0] == 200
        text = collector.metrics_text()
        for name in ("fleetwatch_receiver_requests_total", "fleetwatch_receiver_items_received_total",
                     "fleetwatch_exporter_rows_written_total", "fleetwatch_receiver_bytes_received_total",
                     "fleetwatch_duckdb_file_bytes", "fleetwatch_queue_bytes", "process_resident_memory_bytes"):
            assert f"# TYPE {name}" in text
        assert metric_value(text, "fleetwatch_receiver_items_accepted_total", signal="traces") == 7
        assert metric_value(text, "fleetwatch_exporter_rows_written_total", table="span_rows") == 7
        assert metric_value(text, "fleetwatch_receiver_bytes_received_total", stage="wire") == len(body)
        assert metric_value(text, "fleetwatch_duckdb_file_bytes") > 0


def test_collector_loads_no_analytics_or_dashboard_packages(tmp_path):
    """A gateway has no scipy, Streamlit or Plotly: running the collector must not import them."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys, urllib.request
        from collector.config import default_config
        from collector.server import Collector, keep_pandas_out
        from tests.otlp_requests import trace_request

        async def main():
            keep_pandas_out()  # as collector.server.run does
            config = default_config()
            config.exporters.duckdb.path = {str(tmp_path / 'fw.duckdb')!r}
            config.receivers.otlp.protocols.http.endpoint = "127.0.0.1:0"
            config.receivers.otlp.protocols.grpc.endpoint = "127.0.0.1:0"
            collector = Collector(config)
            await collector.start()
            body, _ = trace_request(3)
            request = urllib.request.Request(f"http://127.0.0.1:{{collector.http.port}}/v1/traces", data=body,
                                             headers={{"Content-Type": "application/x-protobuf"}})
            status = await asyncio.get_running_loop().run_in_executor(
                None, lambda: urllib.request.urlopen(request, timeout=30).status)
            assert status == 200
            await collector.stop()

        asyncio.run(main())
        banned = ("scipy", "streamlit", "plotly", "polars", "pandas", "analytics", "dashboards", "apscheduler")
        print(sorted(m for m in sys.modules if m.split(".")[0] in banned))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_signal_without_a_pipeline_is_refused_for_good(tmp_path):
    """The pipelines the config names are what the collector takes: no logs pipeline, no logs."""
    config = {"service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["duckdb"]}}}}
    with CollectorProcess(tmp_path / "fw.duckdb", config=config) as collector:
        logs, _ = log_request(3)
        status, _, body = post(collector.http_port, "/v1/logs", logs)
        assert status == 400 and b"no logs pipeline" in body
        with pytest.raises(grpc.RpcError) as refused:
            grpc_call(collector.grpc_endpoint, gauge_request(2),
                      method="/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "no metrics pipeline" in refused.value.details()
        traces, _ = trace_request(4)
        assert post(collector.http_port, "/v1/traces", traces)[0] == 200
        text = collector.metrics_text()
        assert metric_value(text, "fleetwatch_receiver_requests_total", receiver="http", signal="logs",
                            outcome="no_pipeline") == 1
    assert query(tmp_path / "fw.duckdb", "SELECT count(*) FROM log_records")[0][0] == 0
