"""Gateway → central over real sockets: outages, crashes, dead letters, disk budget, corruption."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
from concurrent.futures import ThreadPoolExecutor
import threading
import time

import grpc
import zstandard
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.harness import CollectorProcess, free_port, gateway_config, metric_value, query, queue_empty, wait_until
from tests.otlp_requests import trace_request
from bench.harness import grpc_call, post


def send_requests(collector: CollectorProcess, count: int, spans: int) -> list[list[str]]:
    """``count`` requests of ``spans`` spans from devices dev-0.., each acknowledged; their span ids."""
    sent = []
    for i in range(count):
        body, ids = trace_request(spans, device=f"dev-{i}")
        assert post(collector.http_port, "/v1/traces", body, token=None)[0] == 200
        sent.append(ids)
    return sent


class Device(threading.Thread):
    """A device using the real SDK exporter; it re-sends a batch until the gateway acknowledges it."""

    def __init__(self, index: int, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.provider = TracerProvider(resource=Resource.create({"service.name": "cam", "device.id": f"cam-{index}"}))
        self.memory = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.exporter = OTLPSpanExporter(endpoint=endpoint, timeout=3)
        self.acked: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        tracer = self.provider.get_tracer("device")
        while not self.stop.is_set():
            for _ in range(40):
                with tracer.start_as_current_span("inference") as span:
                    span.set_attribute("ml.model.name", "kws")
            batch = self.memory.get_finished_spans()
            self.memory.clear()
            while self.exporter.export(batch) != SpanExportResult.SUCCESS:
                time.sleep(0.2)  # same spans again: the gateway must not count them twice
            self.acked.extend(format(s.context.span_id, "016x") for s in batch)
            time.sleep(0.05)


def start_devices(gateway: CollectorProcess, count: int = 4) -> list[Device]:
    devices = [Device(i, gateway.http_url + "/v1/traces") for i in range(count)]
    for device in devices:
        device.start()
    return devices


def stop_devices_then_drain(devices: list[Device], gateway: CollectorProcess, central: CollectorProcess) -> list[str]:
    """Stop the devices, let the gateway's queue drain, stop both; the span ids acknowledged to devices."""
    for device in devices:
        device.stop.set()
    for device in devices:
        device.join(60)
    wait_until(lambda: queue_empty(gateway), what="the gateway queue to drain")
    assert gateway.stop() == 0
    assert central.stop() == 0
    return [span for device in devices for span in device.acked]


def test_exactly_the_acknowledged_spans_reach_central_through_outages_and_kill_9(tmp_path):
    central = CollectorProcess(tmp_path / "central.duckdb").start()
    gw_ports = {"http_port": free_port(), "grpc_port": free_port()}
    config = gateway_config(tmp_path, central.http_url)
    gateway = CollectorProcess(tmp_path / "unused.duckdb", config=config, **gw_ports).start()
    devices = start_devices(gateway)
    acked = lambda: sum(len(d.acked) for d in devices)  # noqa: E731
    wait_until(lambda: acked() > 800, what="first spans")

    assert central.stop() == 0  # upstream outage: the gateway keeps acknowledging from its disk
    mark = acked()
    wait_until(lambda: acked() > mark + 800, what="spans acknowledged while central is down")
    central = CollectorProcess(tmp_path / "central.duckdb", http_port=central.http_port,
                               grpc_port=central.grpc_port).start()

    gateway.kill()  # kill -9 mid-load
    time.sleep(0.5)
    gateway = CollectorProcess(tmp_path / "unused.duckdb", config=config, **gw_ports).start()
    mark = acked()
    wait_until(lambda: acked() > mark + 800, what="spans after the gateway restart")

    expected = stop_devices_then_drain(devices, gateway, central)
    rows = query(tmp_path / "central.duckdb", "SELECT span_id, gateway_id FROM spans")
    stored = [r[0] for r in rows]
    assert len(stored) == len(set(stored)), "a span was counted twice"
    assert set(stored) == set(expected)
    assert {r[1] for r in rows} == {"gw-test"}


class _Upstream400(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_upstream_400_goes_to_the_dead_letter_file(tmp_path):
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream400)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    config = gateway_config(tmp_path, f"http://127.0.0.1:{upstream.server_address[1]}")
    with CollectorProcess(tmp_path / "unused.duckdb", config=config) as gateway:
        body, ids = trace_request(20)
        assert post(gateway.http_port, "/v1/traces", body, token=None)[0] == 200
        wait_until(lambda: queue_empty(gateway), what="the rejected request to leave the queue")
        text = gateway.metrics_text()
        assert metric_value(text, "fleetwatch_forward_requests_total", outcome="dead_letter") == 1
        assert metric_value(text, "fleetwatch_forward_requests_total", outcome="retry") == 0
    upstream.shutdown()
    records = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert len(records) == 1
    assert records[0]["status"] == 400 and "400" in records[0]["reason"] and records[0]["items"] == 20


def test_disk_budget_drops_the_oldest_and_counts_it(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens here: a long outage
    config = gateway_config(tmp_path, down, max_size_mib=0.1)
    gw_ports = {"http_port": free_port(), "grpc_port": free_port()}
    with CollectorProcess(tmp_path / "unused.duckdb", config=config, **gw_ports) as gateway:
        sent = send_requests(gateway, 100, 40)
        dropped = metric_value(gateway.metrics_text(), "fleetwatch_forward_queue_dropped_items_total")
        assert dropped > 0
        assert '"disk budget full' in gateway.logs()
    # the outage ends: central comes up where the gateway forwards to
    central = CollectorProcess(tmp_path / "central.duckdb", http_port=int(down.rsplit(":", 1)[1])).start()
    with CollectorProcess(tmp_path / "unused.duckdb", config=config, **gw_ports) as gateway:
        wait_until(lambda: queue_empty(gateway), what="the backlog to drain")
    assert central.stop() == 0
    stored = {r[0] for r in query(tmp_path / "central.duckdb", "SELECT span_id FROM spans")}
    delivered = [i for i, ids in enumerate(sent) if set(ids) <= stored]
    lost = [i for i, ids in enumerate(sent) if not set(ids) & stored]
    assert len(delivered) + len(lost) == len(sent)  # whole requests, never half of one
    assert lost and delivered and max(lost) < min(delivered), "the oldest data must go first"


def test_corrupt_segment_is_quarantined_and_the_rest_delivered(tmp_path):
    down_port = free_port()
    config = gateway_config(tmp_path, f"http://127.0.0.1:{down_port}", max_size_mib=0.1)
    gw_ports = {"http_port": free_port(), "grpc_port": free_port()}
    with CollectorProcess(tmp_path / "unused.duckdb", config=config, **gw_ports) as gateway:
        sent = send_requests(gateway, 30, 30)
    segments = sorted(p for p in (tmp_path / "gw-queue").iterdir() if p.is_file() and p.stat().st_size > 4096)
    assert len(segments) >= 3, [p.name for p in (tmp_path / "gw-queue").iterdir()]
    victim = segments[len(segments) // 2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a bit flip in the middle of a middle segment
    victim.write_bytes(bytes(data))

    central = CollectorProcess(tmp_path / "central.duckdb", http_port=down_port).start()
    with CollectorProcess(tmp_path / "unused.duckdb", config=config, **gw_ports) as gateway:
        wait_until(lambda: queue_empty(gateway), what="the rest of the queue to drain")
        assert metric_value(gateway.metrics_text(), "fleetwatch_forward_queue_quarantined_segments") == 1
    assert central.stop() == 0
    assert any((tmp_path / "gw-queue" / "quarantine").iterdir())
    stored = {r[0] for r in query(tmp_path / "central.duckdb", "SELECT span_id FROM spans")}
    delivered = sum(1 for ids in sent if set(ids) <= stored)
    assert len(sent) - 2 <= delivered < len(sent)  # only what the flipped byte hit is lost


def test_gateway_keeps_a_local_copy_while_forwarding(tmp_path):
    central = CollectorProcess(tmp_path / "central.duckdb").start()
    config = gateway_config(tmp_path, central.http_url)
    for pipeline in config["service"]["pipelines"].values():
        pipeline["exporters"] = ["duckdb", "otlp"]
    with CollectorProcess(tmp_path / "gateway.duckdb", config=config) as gateway:
        sent = [span for ids in send_requests(gateway, 5, 10) for span in ids]
        wait_until(lambda: queue_empty(gateway), what="forwarding")
    assert central.stop() == 0
    for db in ("gateway.duckdb", "central.duckdb"):
        assert sorted(r[0] for r in query(tmp_path / db, "SELECT span_id FROM spans")) == sorted(sent), db


def test_a_request_larger_than_the_disk_budget_is_refused_for_good_alone(tmp_path):
    central = CollectorProcess(tmp_path / "central.duckdb").start()
    config = gateway_config(tmp_path, central.http_url, max_size_mib=0.05)  # about 48 KB per request at most
    with CollectorProcess(tmp_path / "unused.duckdb", config=config) as gateway:
        provider = TracerProvider(resource=Resource.create({"service.name": "cam", "device.id": "cam-big"}))
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        with provider.get_tracer("device").start_as_current_span("inference") as span:
            span.set_attribute("ml.feature.frame", base64.b64encode(os.urandom(90_000)).decode())  # incompressible
        exporter = OTLPSpanExporter(endpoint=gateway.http_url + "/v1/traces", timeout=10)
        assert exporter.export(memory.get_finished_spans()) == SpanExportResult.FAILURE
        assert gateway.ready(), "an oversized request must not mark the gateway not ready"
        text = gateway.metrics_text()
        # the SDK did not retry it: one attempt, answered for good
        assert metric_value(text, "fleetwatch_receiver_requests_total", outcome="too_large_for_queue") == 1
        assert metric_value(text, "fleetwatch_receiver_items_refused_total", reason="too_large_for_queue") == 1

        big, _ = trace_request(2000)  # about 66 KB even compressed
        with ThreadPoolExecutor(4) as pool:  # small requests batched together with the big one
            smalls = [pool.submit(send_requests, gateway, 10, 5) for _ in range(3)]
            status, _, body = post(gateway.http_port, "/v1/traces", big, token=None)
            sent = [span for future in smalls for ids in future.result() for span in ids]
        assert status == 400
        message = Status.FromString(body).message
        assert "max_size_mib=0.05" in message and "smaller requests" in message, message
        try:
            grpc_call(gateway.grpc_endpoint, big, token=None)
            raise AssertionError("gRPC accepted an oversized request")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_size_mib" in exc.details()
        assert gateway.ready()
        wait_until(lambda: queue_empty(gateway), what="the small requests to be forwarded")
    assert central.stop() == 0
    assert sorted(r[0] for r in query(tmp_path / "central.duckdb", "SELECT span_id FROM spans")) == sorted(sent)


class RecordingLink:
    """A real HTTP hop between a gateway and central that records every upstream body.

    ``cut()`` closes its port (an outage: connections are refused) and
    ``restore()`` opens it again; with ``hold_min_device_requests`` set, the
    first body carrying at least that many device requests is delivered to
    central but its answer is withheld until ``release`` is set (the gateway
    never learns that it was delivered).
    """

    def __init__(self, central_port: int) -> None:
        self.central_port = central_port
        self.port = free_port()
        self.bodies: list[bytes] = []
        self.hold_min_device_requests = 0
        self.held: bytes | None = None
        self.held_event = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server: http.server.ThreadingHTTPServer | None = None
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        link = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                conn = http.client.HTTPConnection("127.0.0.1", link.central_port, timeout=60)
                conn.request("POST", self.path, body=body, headers=dict(self.headers.items()))
                response = conn.getresponse()
                answer = response.read()
                conn.close()
                if link.hold_now(body):
                    link.release.wait(120)
                    return  # the connection closes without an answer
                self.send_response(response.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def cut(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def hold_now(self, body: bytes) -> bool:
        with self.lock:
            self.bodies.append(body)
            if self.held is None and self.hold_min_device_requests and \
                    len(upstream_request(body).resource_spans) >= self.hold_min_device_requests:
                self.held = body
                self.held_event.set()
                return True
        return False


def upstream_request(body: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(zstandard.ZstdDecompressor().decompress(body))


def queued(gateway: CollectorProcess) -> float:
    return metric_value(gateway.metrics_text(), "fleetwatch_forward_queue_items")


def test_small_request_backlog_drains_in_merged_requests_exactly_once_across_kill_9(tmp_path):
    central = CollectorProcess(tmp_path / "central.duckdb").start()
    link = RecordingLink(central.http_port)
    config = gateway_config(tmp_path, link.url)
    gw_ports = {"http_port": free_port(), "grpc_port": free_port()}
    gateway = CollectorProcess(tmp_path / "unused.duckdb", config=config, **gw_ports).start()
    devices = start_devices(gateway)
    acked = lambda: sum(len(d.acked) for d in devices)  # noqa: E731
    wait_until(lambda: acked() > 400, what="first spans")

    link.cut()  # central unreachable while the devices keep sending small requests
    backlog = 60
    wait_until(lambda: queued(gateway) >= backlog, what="a backlog of gateway batches")
    link.hold_min_device_requests = 5
    link.restore()
    wait_until(link.held_event.is_set, what="a merged request after the outage")
    # more batches queue up behind it, so a merge planned again after the restart would differ
    mark = queued(gateway)
    wait_until(lambda: queued(gateway) >= mark + 2, what="batches queued after the merged request")
    gateway.kill()  # kill -9 while central has committed a merged request the gateway never saw acknowledged
    link.release.set()
    gateway = CollectorProcess(tmp_path / "unused.duckdb", config=config, **gw_ports).start()
    wait_until(lambda: queued(gateway) <= backlog / 10, what="the backlog to drain while devices keep sending")
    assert all(device.is_alive() for device in devices)
    text = gateway.metrics_text()
    batches = metric_value(text, "fleetwatch_forward_batches_delivered_total")
    requests = metric_value(text, "fleetwatch_forward_requests_total", outcome="delivered")
    assert batches >= 3 * requests, f"{batches} gateway batches in {requests} upstream requests"

    expected = stop_devices_then_drain(devices, gateway, central)
    link.cut()
    assert link.bodies.count(link.held) >= 2, "the held merged request was not re-sent byte-identical"
    carried: dict[str, bytes] = {}
    for body in link.bodies:
        for resource_spans in upstream_request(body).resource_spans:
            for span in resource_spans.scope_spans[0].spans:
                span_id = span.span_id.hex()
                assert carried.setdefault(span_id, body) == body, "a span went upstream in two different requests"
    stored = [r[0] for r in query(tmp_path / "central.duckdb", "SELECT span_id FROM spans")]
    assert len(stored) == len(set(stored)), "a span was counted twice"
    assert set(stored) == set(expected)
