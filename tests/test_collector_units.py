"""Unit tests for the collector's small parts: config, decompression, admission, metrics, JSON."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import time
import zlib

import pytest
import zstandard

from collector.processing.admission import DigestWindow, MemoryBudget
from collector.receivers.auth import BearerAuth
from collector.config import ConfigError, config_from_dict, parse_duration, parse_endpoint
from collector.receivers.decompress import BadEncoding, BodyTooLarge, UnsupportedEncoding, decompress
from collector.receivers.otlp_json import json_to_protobuf
from collector.selfmetrics import Registry
from tests.otlp_requests import SPEC_JSON


def test_defaults_validate_and_listen_on_loopback():
    config = config_from_dict({})
    assert config.receivers.otlp.protocols.http.endpoint == "127.0.0.1:4318"
    assert config.receivers.otlp.protocols.grpc.endpoint == "127.0.0.1:4317"
    assert config.processors.batch.timeout == 0.05
    assert config.signals() == {"traces", "metrics", "logs"}


@pytest.mark.parametrize("text, seconds", [("200ms", 0.2), ("5s", 5), ("2m", 120), ("1h", 3600), ("3d", 259200),
                                           ("1.5s", 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize("bad", ["fast", "-1s", True, "5 parsecs"])
def test_bad_durations_name_the_key(bad):
    with pytest.raises(ConfigError, match="processors.batch.timeout"):
        config_from_dict({"processors": {"batch": {"timeout": bad}}})


@pytest.mark.parametrize("bare", [3, 0.5, "3"])
def test_duration_without_a_unit_is_refused_not_read_as_seconds(bare):
    with pytest.raises(ConfigError, match=r"^service\.shutdown_timeout: .*unit"):
        config_from_dict({"service": {"shutdown_timeout": bare}})


def test_duration_without_a_unit_is_refused_from_a_config_file(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text("processors:\n  batch:\n    timeout: 3\n")
    result = subprocess.run([sys.executable, "-m", "fleetwatch.cli", "serve", "--config", str(config),
                             "--db", str(tmp_path / "fw.duckdb")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "fleetwatch: configuration error: processors.batch.timeout: a duration needs a unit, "
        "e.g. 3s or 3ms (got the bare number 3)"]
    assert not list(tmp_path.glob("fw.duckdb*"))


def test_endpoints():
    assert parse_endpoint("0.0.0.0:4318", "k") == ("0.0.0.0", 4318)
    assert parse_endpoint("[::1]:4317", "k") == ("::1", 4317)
    for bad in ("localhost", "host:99999", "host:abc"):
        with pytest.raises(ConfigError, match="^k:"):
            parse_endpoint(bad, "k")


@pytest.mark.parametrize(
    "data, key",
    [
        ({"exporters": {"duckdb": {"threads": "two"}}}, "exporters.duckdb.threads"),
        ({"exporters": {"duckdb": {"threads": 1.5}}}, "exporters.duckdb.threads"),
        ({"exporters": {"duckdb": {"path": "/no/such/dir/x.duckdb"}}}, "exporters.duckdb.path"),
        ({"receivers": {"otlp": {"protocols": {"http": {"enabled": "yes"}}}}}, "receivers.otlp.protocols.http.enabled"),
        ({"receivers": {"otlp": {"protocols": {"http": {"enabled": False}, "grpc": {"enabled": False}}}}},
         "receivers.otlp.protocols"),
        ({"receivers": {"otlp": {"tls": {"cert_file": __file__}}}}, "receivers.otlp.tls"),
        ({"receivers": {"otlp": {"auth": {"bearer_tokens": ["has space"]}}}}, "receivers.otlp.auth"),
        ({"service": {"pipelines": {"profiles": {}}}}, "service.pipelines.profiles"),
        ({"service": {"pipelines": {"traces": {"receivers": []}}}}, "service.pipelines.traces.receivers"),
        ({"service": {"telemetry": {"logs": {"level": "loud"}}}}, "service.telemetry.logs.level"),
        ({"service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                               "exporters": ["duckdb"]}}}}, "service.pipelines.traces.processors"),
        ({"service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": [],
                                               "exporters": ["duckdb"]}}}}, "service.pipelines.traces.processors"),
        ({"extensions": {}}, "extensions: unknown key"),
        ([1, 2], "receivers: expected a mapping"),
    ],
)
def test_invalid_config_names_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict(data) if isinstance(data, dict) else config_from_dict({"receivers": data})


def test_tokens_from_file_and_environment(tmp_path, monkeypatch):
    tokens = tmp_path / "tokens"
    tokens.write_text("# comment\nfile-token\n\n")
    monkeypatch.setenv("FW_TOKENS", "env-a, env-b")
    config = config_from_dict({"receivers": {"otlp": {"auth": {
        "bearer_tokens": ["inline"], "bearer_tokens_file": str(tokens), "bearer_tokens_env": "FW_TOKENS"}}}})
    auth = BearerAuth(config.receivers.otlp.auth.tokens())
    for token in ("inline", "file-token", "env-a", "env-b"):
        assert auth.check(f"Bearer {token}")
    for header in (None, "", "Bearer", "Basic inline", "Bearer inlin", "Bearer # comment"):
        assert not auth.check(header)
    assert "inline" not in repr(auth)
    assert BearerAuth([]).check(None)


PAYLOAD = b"otlp " * 10_000


def _raw_deflate(body: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(body) + compressor.flush()


@pytest.mark.parametrize("encoding, compress", [
    ("gzip", gzip.compress),
    ("gzip", lambda b: gzip.compress(b[:100]) + gzip.compress(b[100:])),  # two members
    ("deflate", zlib.compress),
    ("deflate", _raw_deflate),  # as some clients send it
    ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
    ("identity", lambda b: b),
    (None, lambda b: b),
])
def test_decompress_roundtrip(encoding, compress):
    assert decompress(compress(PAYLOAD), encoding, limit=len(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress),
                                                ("zstd", lambda b: zstandard.ZstdCompressor().compress(b))])
def test_decompress_caps_the_inflated_size(encoding, compress):
    bomb = compress(b"\x00" * (50 << 20))
    assert len(bomb) < 1 << 20
    with pytest.raises(BodyTooLarge, match="after decompression"):
        decompress(bomb, encoding, limit=1 << 20)
    with pytest.raises(BodyTooLarge, match="on the wire"):
        decompress(b"x" * 100, encoding, limit=10)


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress),
                                                ("zstd", lambda b: zstandard.ZstdCompressor().compress(b))])
def test_decompress_rejects_truncated_and_garbage(encoding, compress):
    body = compress(PAYLOAD)
    with pytest.raises(BadEncoding):
        decompress(body[: len(body) // 2], encoding, limit=1 << 20)
    with pytest.raises(BadEncoding):
        decompress(b"definitely not compressed", encoding, limit=1 << 20)
    with pytest.raises(UnsupportedEncoding):
        decompress(body, "br", limit=1 << 20)


def test_memory_budget():
    budget = MemoryBudget(100)
    assert budget.try_acquire(500)  # alone, even an oversized request gets in
    assert not budget.try_acquire(1)
    budget.release(500)
    assert budget.try_acquire(60) and budget.try_acquire(40) and not budget.try_acquire(1)
    budget.release(50)
    assert budget.used == 50
    with pytest.raises(ValueError):
        MemoryBudget(0)


def test_digest_window_expires_by_count_and_age():
    asyncio.run(_digest_window_checks())


async def _digest_window_checks():
    window = DigestWindow(window_seconds=60, max_entries=3)
    now = time.time_ns()
    window.load([("old", now - int(120e9)), ("a", now)])
    assert window.lookup("old") == "new" and window.lookup("a") == "committed"
    future = asyncio.get_running_loop().create_future()
    window.reserve("b", future)
    assert window.lookup("b") is future
    window.forget("b")
    assert window.lookup("b") == "new"
    for digest in "bcd":
        window.commit(digest)
    assert len(window) == 3 and window.lookup("a") == "new" and window.lookup("d") == "committed"


def test_prometheus_rendering():
    registry = Registry()
    counter = registry.counter("x_total", "Things.", ["kind"])
    counter.inc(2, kind='a"b')
    counter.inc(kind="c")
    gauge = registry.gauge_callback("y_bytes", "Bytes.", lambda: 1.5)
    histogram = registry.histogram("z_seconds", "Latency.", [0.1, 1])
    histogram.observe(0.05)
    histogram.observe(5)
    text = registry.render()
    assert '# TYPE x_total counter\nx_total{kind="a\\"b"} 2\nx_total{kind="c"} 1' in text
    assert "y_bytes 1.5" in text and gauge.value() == 1.5
    assert 'z_seconds_bucket{le="0.1"} 1\nz_seconds_bucket{le="1"} 1\nz_seconds_bucket{le="+Inf"} 2' in text
    with pytest.raises(ValueError):
        counter.inc(-1, kind="a")
    with pytest.raises(ValueError):
        counter.inc(1, wrong="a")
    with pytest.raises(ValueError):
        registry.counter("x_total", "again")


def test_otlp_json_ids_and_errors():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(json_to_protobuf(json.dumps(SPEC_JSON).encode(), "traces"))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.parent_span_id.hex() == "eee19b7ec3c1b173"
    assert span.start_time_unix_nano == 1544712660000000000
    for body, message in [(b"[1]", "JSON object"), (b"\xff", "not valid JSON"),
                          (b'{"resourceSpans": 3}', "expected a list"),
                          (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "xyz"}]}]}]}', "spanId"),
                          (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": {"x": 1}}]}]}]}', "OTLP/JSON")]:
        with pytest.raises(ValueError, match=message):
            json_to_protobuf(body, "traces")
