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
  reported as a multiple of the production rate;
- the same with small device requests (a quiet fleet: ``--small-devices``
  devices, each sending a ``--small-spans``-span request every
  ``--small-interval`` seconds, before, during and after a
  ``--small-outage``-second outage): the drain rate is what the gateway
  delivered between the central instance's return and its queue's return to
  steady state (at most two queued batches), while the devices keep sending,
  as a multiple of the production rate measured in the same run.

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
from bench.steady_devices import SteadyDevices  # noqa: E402
from bench.harness import CollectorProcess, free_port, metric_value, query, wait_until  # noqa: E402


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


def _queued(gateway: CollectorProcess) -> float:
    return metric_value(gateway.metrics_text(), "fleetwatch_forward_queue_items")


def _drained(gateway: CollectorProcess) -> bool:
    return _queued(gateway) == 0


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


def small_request_outage(workdir: Path, outage_seconds: float, devices: int, spans: int, interval: float) -> dict:
    """A quiet fleet's small requests through an outage; the drain while the devices keep sending."""
    workdir.mkdir()
    central = CollectorProcess(workdir / "central.duckdb").start()
    gateway = _gateway(workdir, central.http_url, {"http_port": free_port(), "grpc_port": free_port()}).start()
    fleet = SteadyDevices(gateway.http_port, devices=devices, spans=spans, interval=interval,
                          shape=edge_trace_request)
    fleet.start()
    time.sleep(5.0)  # steady state first
    produced_from, produced_mark = fleet.acked_spans, time.perf_counter()
    central_port = central.http_port
    assert central.stop() == 0
    time.sleep(outage_seconds)
    backlog_batches = _queued(gateway)
    central = CollectorProcess(workdir / "central.duckdb", http_port=central_port).start()
    requests_before = metric_value(gateway.metrics_text(), "fleetwatch_forward_requests_total", outcome="delivered")
    restored = time.perf_counter()
    # The drain starts with the first delivery: the wait before it is the retry
    # backoff the gateway was in when central came back (a policy, reported apart).
    wait_until(lambda: metric_value(gateway.metrics_text(), "fleetwatch_forward_requests_total",
                                    outcome="delivered") > requests_before, 600, "the first delivery")
    drain_start = time.perf_counter()
    text = gateway.metrics_text()  # counted from here: the first request's round trip is not in the time
    delivered_before = metric_value(text, "fleetwatch_forward_items_delivered_total")
    requests_before = metric_value(text, "fleetwatch_forward_requests_total", outcome="delivered")
    batches_before = metric_value(text, "fleetwatch_forward_batches_delivered_total")
    wait_until(lambda: _queued(gateway) <= 2, max(600.0, outage_seconds * 20), "the small-request backlog to drain")
    drain_seconds = time.perf_counter() - drain_start
    text = gateway.metrics_text()
    drained_spans = (metric_value(text, "fleetwatch_forward_items_delivered_total") - delivered_before) * spans
    upstream_requests = metric_value(text, "fleetwatch_forward_requests_total", outcome="delivered") - requests_before
    batches = metric_value(text, "fleetwatch_forward_batches_delivered_total") - batches_before
    production = (fleet.acked_spans - produced_from) / (time.perf_counter() - produced_mark)
    fleet.stop()
    wait_until(lambda: _drained(gateway), 600, "the forward queue to drain")
    assert gateway.stop() == 0 and central.stop() == 0
    total = query(workdir / "central.duckdb", "SELECT count(*) FROM spans")[0][0]
    if total != fleet.acked_spans:
        raise RuntimeError(f"small requests: central holds {total} spans, {fleet.acked_spans} were acknowledged")
    return {
        "small_devices": devices,
        "small_request_spans": spans,
        "small_outage_seconds": outage_seconds,
        "small_production_spans_per_second": round(production),
        "small_backlog_gateway_batches": int(backlog_batches),
        "small_retry_wait_seconds": round(drain_start - restored, 2),
        "small_drain_seconds": round(drain_seconds, 2),
        "small_drain_spans_per_second": round(drained_spans / drain_seconds),
        "small_drain_ratio_to_production": round(drained_spans / drain_seconds / production, 1),
        "small_drain_upstream_requests": int(upstream_requests),
        "small_drain_gateway_batches": int(batches),
        "small_central_spans_checked": total,
    }


def run(quick: bool, rate: float, outage_seconds: float, small_load: dict) -> dict:
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
        small = small_request_outage(workdir / "small", **small_load)
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
            **small,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=1000.0, help="fleet production rate, spans/s (default 1000)")
    parser.add_argument("--small-devices", type=int, default=20, help="devices sending small requests (default 20)")
    parser.add_argument("--small-spans", type=int, default=20, help="spans per small request (default 20)")
    parser.add_argument("--small-interval", type=float, default=0.35,
                        help="seconds between one device's small requests (default 0.35)")
    parser.add_argument("--small-outage", type=float, default=None,
                        help="outage during the small-request run, seconds (default 20, 120 for a full run)")
    parser.add_argument("--small-only", action="store_true", help="run only the small-request outage")
    args = parser.parse_args()
    small_load = {"devices": args.small_devices, "spans": args.small_spans, "interval": args.small_interval,
                  "outage_seconds": args.small_outage or (20.0 if args.quick else 120.0)}
    if args.small_only:
        workdir = Path(tempfile.mkdtemp(prefix="fw-forward-"))
        try:
            result = {"benchmark": "forward", "quick": args.quick, "machine": machine(),
                      **small_request_outage(workdir / "small", **small_load)}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"small requests: a {result['small_outage_seconds']:g} s outage's backlog drained in "
              f"{result['small_drain_seconds']} s = {result['small_drain_ratio_to_production']}x the production rate, "
              f"{result['small_drain_gateway_batches']} gateway batches in {result['small_drain_upstream_requests']} "
              f"upstream requests", flush=True)
        print(json.dumps(result))
        return
    result = run(args.quick, args.rate, 300.0 if args.quick else 3600.0, small_load)
    print(f"forwarding {result['forward_spans_per_second']:,} spans/s end to end "
          f"({result['forward_ratio_to_direct_ingest']:.2f} of direct ingest), "
          f"{result['upstream_bytes_per_span']} B/span upstream ({result['upstream_share_of_raw_otlp']:.1%} of raw), "
          f"backlog of {result['backlog_spans']:,} spans drained in {result['drain_seconds']} s "
          f"= {result['drain_ratio_to_production']}x the production rate; "
          f"small requests: {result['small_drain_ratio_to_production']}x", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
