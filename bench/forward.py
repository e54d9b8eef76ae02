"""Forwarding benchmark: devices → gateway (persistent queue) → central, over OTLP/HTTP on loopback.

    python bench/forward.py            # full run: a one-hour outage backlog (several minutes)
    python bench/forward.py --quick    # a five-minute backlog

Measures, with the gateway and the central instance as two subprocesses:
- forwarding throughput: spans/s from the first device request until the
  central instance has committed the last span, against the same load sent
  straight to the central instance in the same run (the baseline);
- bytes sent upstream per span (zstd) against the uncompressed OTLP bytes;
- drain rate after an outage: the central instance is down while the fleet
  produces ``--rate`` spans/s for the outage (pushed into the gateway as fast
  as it takes them), then comes back; the drain rate is the backlog divided
  by the time until the gateway's queue is empty and every span is committed,
  reported as a multiple of the production rate.

The span shape is the realistic inference span of ``bench/otlp_shapes.py``
with what edge models actually emit: float32 scores and features (widened to
double by the SDK) and the trace id as the request id. The fully random
shape (random UUID request ids, full-precision doubles) is reported too; its
ids and random doubles alone carry about 70 bytes of entropy per span.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from bench.ingest import drive_load, machine  # noqa: E402
from bench.otlp_shapes import realistic_trace_request  # noqa: E402
from tests.collector_process import CollectorProcess, free_port, metric_value, query, wait_until  # noqa: E402


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def edge_trace_request(n_spans: int = 512, seed: int = 0, device: int = 0) -> bytes:
    """The realistic shape with float32 model outputs and the trace id as request id."""
    request = ExportTraceServiceRequest.FromString(realistic_trace_request(n_spans, seed=seed, device=device))
    for span in request.resource_spans[0].scope_spans[0].spans:
        for kv in span.attributes:
            if kv.value.WhichOneof("value") == "double_value":
                kv.value.double_value = _float32(kv.value.double_value)
            elif kv.key == "ml.request.id":
                kv.value.string_value = span.trace_id.hex()
    return request.SerializeToString()


def _drained(gateway: CollectorProcess) -> bool:
    return metric_value(gateway.metrics_text(), "fleetwatch_forward_queue_items") == 0


def _gateway(workdir: Path, central_url: str, ports: dict) -> CollectorProcess:
    config = {
        "exporters": {"otlp": {"endpoint": central_url, "compression": "zstd",
                               "queue": {"directory": str(workdir / "queue"), "max_size_mib": 8192},
                               "retry": {"initial_interval": "200ms", "max_interval": "2s"},
                               "dead_letter_file": str(workdir / "dead.jsonl")}},
        "service": {"gateway_id": "bench-gw",
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]},
                                  "metrics": {"receivers": ["otlp"], "exporters": ["otlp"]}}},
    }
    return CollectorProcess(workdir / "gateway-unused.duckdb", config=config, **ports)


def run(quick: bool, rate: float, outage_seconds: float) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="fw-forward-"))
    load = {"processes": 2, "threads": 32, "spans": 512, "requests_per_process": 100 if quick else 500}
    try:
        # baseline: the same load straight into a central instance
        direct = CollectorProcess(workdir / "direct.duckdb").start()
        baseline = drive_load(direct.http_port, direct.proc.pid, shape=edge_trace_request, **load)
        direct.stop()

        central = CollectorProcess(workdir / "central.duckdb").start()
        gw_ports = {"http_port": free_port(), "grpc_port": free_port()}
        gateway = _gateway(workdir, central.http_url, gw_ports).start()
        acked = drive_load(gateway.http_port, gateway.proc.pid, shape=edge_trace_request, **load)
        load_done = time.perf_counter()
        wait_until(lambda: _drained(gateway), 600, "the forward queue to drain")
        # from the first request (after the clients built their bodies) to the last upstream commit
        forward_seconds = acked["wall_seconds"] + (time.perf_counter() - load_done)
        sent_bytes = metric_value(gateway.metrics_text(), "fleetwatch_forward_bytes_sent_total")
        spans = acked["spans_acked"]

        # the fully random shape, for comparison of bytes per span
        before = sent_bytes
        random_load = {**load, "requests_per_process": 20}
        random_acked = drive_load(gateway.http_port, gateway.proc.pid, shape=realistic_trace_request,
                                  seed_base=10**7, **random_load)
        wait_until(lambda: _drained(gateway), 600, "the forward queue to drain")
        random_bytes = metric_value(gateway.metrics_text(), "fleetwatch_forward_bytes_sent_total") - before

        # outage: central down while the fleet keeps producing
        central_port = central.http_port
        assert central.stop() == 0
        backlog_spans = int(rate * outage_seconds)
        per_process = max(1, backlog_spans // (512 * 2))
        backlog = drive_load(gateway.http_port, gateway.proc.pid, shape=edge_trace_request, seed_base=2 * 10**7,
                             **{**load, "requests_per_process": per_process})
        queued = metric_value(gateway.metrics_text(), "fleetwatch_forward_queue_items")
        central = CollectorProcess(workdir / "central.duckdb", http_port=central_port).start()
        drain_start = time.perf_counter()
        wait_until(lambda: _drained(gateway), 3600, "the backlog to drain")
        drain_seconds = time.perf_counter() - drain_start
        gateway_rss = metric_value(gateway.metrics_text(), "process_resident_memory_bytes")
        assert gateway.stop() == 0 and central.stop() == 0
        total = query(workdir / "central.duckdb", "SELECT count(*) FROM spans")[0][0]
        expected = spans + random_acked["spans_acked"] + backlog["spans_acked"]
        if total != expected:
            raise RuntimeError(f"central holds {total} spans, {expected} were acknowledged")
        return {
            "benchmark": "forward",
            "quick": quick,
            "machine": machine(),
            "baseline_direct_ingest_spans_per_second": round(baseline["spans_per_second"]),
            "forward_spans_per_second": round(spans / forward_seconds),
            "forward_ratio_to_direct_ingest": round(spans / forward_seconds / baseline["spans_per_second"], 3),
            "gateway_ack_spans_per_second": round(acked["spans_per_second"]),
            "raw_otlp_bytes_per_span": round(acked["raw_otlp_bytes"] / spans, 1),
            "upstream_bytes_per_span": round(sent_bytes / spans, 1),
            "upstream_share_of_raw_otlp": round(sent_bytes / acked["raw_otlp_bytes"], 4),
            "random_shape_upstream_bytes_per_span": round(random_bytes / random_acked["spans_acked"], 1),
            "outage_seconds": outage_seconds,
            "production_rate_spans_per_second": rate,
            "backlog_spans": backlog["spans_acked"],
            "backlog_upstream_requests": int(queued),
            "drain_seconds": round(drain_seconds, 2),
            "drain_spans_per_second": round(backlog["spans_acked"] / drain_seconds),
            "drain_ratio_to_production": round(backlog["spans_acked"] / drain_seconds / rate, 1),
            "gateway_rss_mib_after_drain": round(gateway_rss / 2**20, 1),
            "central_spans_checked": total,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=1000.0, help="fleet production rate, spans/s (default 1000)")
    args = parser.parse_args()
    result = run(args.quick, args.rate, 300.0 if args.quick else 3600.0)
    print(f"forwarding {result['forward_spans_per_second']:,} spans/s end to end "
          f"({result['forward_ratio_to_direct_ingest']:.2f} of direct ingest), "
          f"{result['upstream_bytes_per_span']} B/span upstream ({result['upstream_share_of_raw_otlp']:.1%} of raw), "
          f"backlog of {result['backlog_spans']:,} spans drained in {result['drain_seconds']} s "
          f"= {result['drain_ratio_to_production']}x the production rate", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
