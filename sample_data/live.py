"""Live output: every device is a real OpenTelemetry SDK resource sending OTLP.

Each device (and the cloud shadow service and the labeling service) gets,
per boot, a real ``TracerProvider`` (through :class:`~sample_data.otel.
SpecTracer`) and a real ``MeterProvider`` (inside the simulation), plus its
own OTLP exporters, HTTP/protobuf or gRPC, gzip-compressed::

    runner = LiveRunner(SimConfig(devices=20, duration_ns=2 * HOUR, start_ns=...),
                        endpoint="http://127.0.0.1:4318", protocol="http", speed=60)
    stats = runner.run()      # {"sent": {...}, "failed": {...}, "lag_s": ...}

Time: the simulated clock starts at ``cfg.start_ns`` when ``run()`` starts
and advances ``speed`` times faster than the wall clock (``speed=1``: real
time; ``speed=0``: as fast as the collector takes it). A request is sent
when the simulated clock reaches its delivery time, so an offline site's
backlog really arrives late and the gateway stamps it so. Spans carry the
simulated (device) timestamps; metric points the simulated collection
times.

The spans are the generator's specs fed through the SDK's own
``Tracer.start_span`` / ``Span.end`` with the simulation's ids, so live and
bulk produce the same spans, bit for bit (tests compare the encodings);
only the gateway's receive times differ.

``exporter_factory(signal, emitter) -> exporter`` replaces the OTLP
exporters (tests use it to capture what would have been sent).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlparse

from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.trace.export import SpanExportResult

from .generator import Emitter, FleetSimulation, Request, SimConfig
from .otel import SpecTracer

PROTOCOLS = ("http", "grpc")


def otlp_exporter(signal: str, endpoint: str, protocol: str, timeout: float = 10.0, headers=None):
    """A real OTLP exporter for ``signal`` ("traces" | "metrics")."""
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http import Compression

        base = endpoint.rstrip("/")
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=timeout,
                                    compression=Compression.Gzip, headers=headers)
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=timeout,
                                  compression=Compression.Gzip, headers=headers)
    if protocol == "grpc":
        from grpc import Compression

        u = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        target = u.netloc or u.path
        insecure = u.scheme != "https"
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(endpoint=target, insecure=insecure, timeout=timeout,
                                    compression=Compression.Gzip, headers=headers)
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=target, insecure=insecure, timeout=timeout,
                                  compression=Compression.Gzip, headers=headers)
    raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")


class _EmitterRuntime:
    """SDK objects of one emitter: a tracer per boot (resource) and its exporters."""

    def __init__(self, emitter: Emitter, factory: Callable[[str, Emitter], object]) -> None:
        self.emitter = emitter
        self.factory = factory
        self.tracers: dict[int, SpecTracer] = {}
        self.exporters: dict[str, object] = {}

    def exporter(self, signal: str):
        exp = self.exporters.get(signal)
        if exp is None:
            exp = self.exporters[signal] = self.factory(signal, self.emitter)
        return exp

    def send(self, req: Request) -> bool:
        if req.signal == "traces":
            tracer = self.tracers.get(req.epoch)
            if tracer is None:
                # a new boot: the previous boot's providers are done
                for old in self.tracers.values():
                    old.shutdown()
                self.tracers.clear()
                tracer = self.tracers[req.epoch] = SpecTracer(self.emitter.resource(req.epoch))
            spans = tracer.emit(req.spans)
            return self.exporter("traces").export(spans) == SpanExportResult.SUCCESS
        return self.exporter("metrics").export(req.metrics) == MetricExportResult.SUCCESS

    def shutdown(self) -> None:
        for t in self.tracers.values():
            t.shutdown()
        for e in self.exporters.values():
            try:
                e.shutdown()
            except Exception:  # noqa: BLE001 - shutting down regardless
                pass


class LiveRunner:
    """Send a simulated run to an OTLP endpoint in real or accelerated time."""

    def __init__(self, cfg: SimConfig, endpoint: str | None = None, protocol: str = "http",
                 speed: float = 1.0, *, workers: int = 16, timeout: float = 10.0, headers=None,
                 max_ticks_in_flight: int = 4,
                 exporter_factory: Callable[[str, Emitter], object] | None = None) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0 (0: as fast as possible)")
        if exporter_factory is None:
            if not endpoint:
                raise ValueError("live mode needs an endpoint")
            if protocol not in PROTOCOLS:
                raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")

            def exporter_factory(signal: str, emitter: Emitter):
                return otlp_exporter(signal, endpoint, protocol, timeout, headers)

        self.sim = FleetSimulation(cfg)
        self.speed = speed
        self.workers = workers
        self.max_ticks_in_flight = max_ticks_in_flight
        self._factory = exporter_factory
        self._runtimes: dict[int, _EmitterRuntime] = {}
        self.stats = {"sent": {"traces": 0, "metrics": 0}, "failed": {"traces": 0, "metrics": 0},
                      "max_lag_s": 0.0}

    def _runtime(self, emitter: Emitter) -> _EmitterRuntime:
        rt = self._runtimes.get(emitter.key)
        if rt is None:
            rt = self._runtimes[emitter.key] = _EmitterRuntime(emitter, self._factory)
        return rt

    def _wait_until(self, sim_ns: int) -> None:
        if self.speed == 0:
            return
        target_wall = self._wall0 + (sim_ns - self.sim.cfg.start_ns) / 1e9 / self.speed
        delay = target_wall - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self.stats["max_lag_s"] = max(self.stats["max_lag_s"], -delay)

    def _send_due(self, heap: list, now_ns: int | None, pool: ThreadPoolExecutor) -> list[Future]:
        """Submit every request due by ``now_ns``; each emitter's requests stay in order
        (a task waits for the same emitter's previous task), emitters run in parallel."""
        due: dict[int, list[Request]] = {}
        while heap and (now_ns is None or heap[0][0] <= now_ns):
            _, _, req = heapq.heappop(heap)
            due.setdefault(req.emitter.key, []).append(req)
        futures = []
        for key, reqs in due.items():
            prev = self._chains.get(key)

            def work(reqs=reqs, prev=prev) -> None:
                if prev is not None:
                    prev.result()
                rt = self._runtime(reqs[0].emitter)
                for r in reqs:
                    try:
                        ok = rt.send(r)
                    except Exception:  # noqa: BLE001 - an exporter error is a failed send
                        ok = False
                    with self._lock:
                        self.stats["sent" if ok else "failed"][r.signal] += 1

            fut = pool.submit(work)
            self._chains[key] = fut
            futures.append(fut)
        return futures

    def run(self, progress: Callable[[int], None] | None = None) -> dict:
        """Run the whole simulation against the endpoint; return counts."""
        heap: list[tuple[int, int, Request]] = []
        self._wall0 = time.monotonic()
        self._chains: dict[int, Future] = {}
        self._lock = threading.Lock()
        in_flight: deque[list[Future]] = deque()
        current = None

        def tick(now_ns: int) -> None:
            self._wait_until(now_ns)
            in_flight.append(self._send_due(heap, now_ns, pool))
            while len(in_flight) > self.max_ticks_in_flight:
                for f in in_flight.popleft():
                    f.result()

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fleetwatch-sim") as pool:
            try:
                for req in self.sim.requests(progress):
                    if current is not None and req.created_ns != current:
                        tick(current)
                    current = req.created_ns
                    heapq.heappush(heap, (req.deliver_ns, req.seq, req))
                if current is not None:
                    tick(current)
                # backlogs delivered after the last tick (an outage ending at the very end)
                while heap:
                    tick(heap[0][0])
                for futures in in_flight:
                    for f in futures:
                        f.result()
            finally:
                for rt in self._runtimes.values():
                    rt.shutdown()
        return {**self.stats, "manifest": self.sim.manifest()}
