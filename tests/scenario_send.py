"""Sending an SLO scenario (tests/slo_scenarios.py) over real OTLP/HTTP from the OpenTelemetry SDK."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlparse

import numpy as np
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import Status, StatusCode

from sample_data.live import otlp_exporter
from sample_data.otel import INTERNAL, SimResource, SpanSpec, SpecTracer
from tests.scenario_draws import hashes

if TYPE_CHECKING:
    from tests.slo_scenarios import Scenario

FAILED = Status(StatusCode.ERROR, "inference failed")
DEPLOYMENT_FAILED = Status(StatusCode.ERROR, "deployment failed")
ID_STREAMS = (5, 6, 7)  # draw streams of the trace id's halves and the span id (0-4: the events' draws)
DEPLOYMENT_KEY = 1 << 62  # event keys of deployment spans (inferences: cell << 20 | rank; failures: 1 << 63 | i)


@dataclass(frozen=True)
class SendReport:
    """What :func:`send` delivered: spans, OTLP requests and the wall-clock seconds it took."""

    spans: int
    requests: int
    seconds: float

    @property
    def spans_per_second(self) -> float:
        return self.spans / self.seconds if self.seconds else float("inf")


PARTS = ("all", "live", "backlog")


class _Request(NamedTuple):
    held: bool          # backlog: sent after everything else
    first_ns: int
    device: int
    rows: np.ndarray | None  # event rows of an inference request
    deployment: int | None   # index into scenario.deployments() of a deployment span


def send(scenario: "Scenario", endpoint: str, part: str = "all", max_batch: int = 1024, senders: int = 4,
         headers: dict | None = None) -> SendReport:
    """Send ``scenario`` over OTLP/HTTP (gzip) to ``endpoint`` (127.0.0.1 only); raises if any export fails.

    Each device is a real SDK ``TracerProvider`` with its own ``Resource``;
    its spans are started and ended with the scenario's times and exported
    in requests of up to ``max_batch`` spans, in time order across the
    fleet (deployment spans with the live data), then the backlog
    (``part`` = "live" or "backlog" sends only one of them). ``senders``
    requests are in flight at once, so the server's group commit has more
    than one request to commit at a time. The exporter is called directly
    rather than through a ``BatchSpanProcessor``, whose failures are only
    logged: a test must not go on with spans silently missing.
    """
    if part not in PARTS:
        raise ValueError(f"part: one of {', '.join(PARTS)}, got {part!r}")
    if urlparse(endpoint).hostname not in ("127.0.0.1", "localhost"):
        raise ValueError(f"endpoint: scenarios are sent to 127.0.0.1 only, got {endpoint!r}")
    if max_batch < 1 or senders < 1:
        raise ValueError("max_batch and senders: must be at least 1")
    phases = {"all": (False, True), "live": (False,), "backlog": (True,)}[part]
    requests = _requests(scenario, phases, max_batch)
    make_specs = _SpecMaker(scenario)
    tracers = [SpecTracer(SimResource(d)) for d in scenario.devices]
    local = threading.local()

    def export(spans) -> None:
        if not hasattr(local, "exporter"):
            local.exporter = otlp_exporter("traces", endpoint, "http", timeout=60.0, headers=headers)
        if local.exporter.export(spans) is not SpanExportResult.SUCCESS:
            raise RuntimeError(f"export of {len(spans)} spans to {endpoint} failed (see the exporter's log)")

    clock, sent = time.perf_counter(), 0
    with ThreadPoolExecutor(senders) as pool:
        for phase in phases:
            in_flight: deque = deque()
            for request in (r for r in requests if r.held == phase):
                spans = tracers[request.device].emit(make_specs(request))
                sent += len(spans)
                in_flight.append(pool.submit(export, spans))
                if len(in_flight) > 2 * senders:  # bounds memory on long scenarios; raises a failed export early
                    in_flight.popleft().result()
            for future in in_flight:  # the backlog goes only once the live part is in
                future.result()
    for tracer in tracers:
        tracer.shutdown()
    return SendReport(sent, len(requests), time.perf_counter() - clock)


def _requests(scenario: "Scenario", phases: tuple[bool, ...], max_batch: int) -> list[_Request]:
    """Each device's events cut into requests, ordered live before backlog, then by first event time."""
    e = scenario.events
    requests = []
    bounds = np.searchsorted(e.device, np.arange(len(scenario.devices) + 1))
    for device in range(len(scenario.devices)):
        mine = np.arange(bounds[device], bounds[device + 1])
        for held in phases:
            rows = mine[e.held[mine] == held]
            for first in range(0, rows.size, max_batch):
                chunk = rows[first:first + max_batch]
                requests.append(_Request(held, int(e.start_ns[chunk[0]]), device, chunk, None))
    if False in phases:
        for i, (device, at, _) in enumerate(scenario.deployments()):
            requests.append(_Request(False, at, device, None, i))
    return sorted(requests, key=lambda r: (r.held, r.first_ns, r.device))


class _SpecMaker:
    """The :class:`SpanSpec` list of one request, ids hashed from the scenario's seed and the event keys."""

    def __init__(self, scenario: "Scenario") -> None:
        self.events = e = scenario.events
        self.seed = scenario.seed
        self.deployments = scenario.deployments()
        self.trace_hi, self.trace_lo, self.span_id = (hashes(self.seed, s, e.key).tolist() for s in ID_STREAMS)
        self.attributes = {
            (m, v): {"ml.model.name": scenario.models[m][0], "ml.model.version": scenario.versions[v],
                     "ml.inference.mode": "edge"}
            for m in range(len(scenario.models)) for v in range(len(scenario.versions))}

    def __call__(self, request: _Request) -> list[SpanSpec]:
        if request.rows is None:
            _, at, attributes = self.deployments[request.deployment]
            hi, lo, sid = (int(hashes(self.seed, s, np.array([DEPLOYMENT_KEY | request.deployment]))[0])
                           for s in ID_STREAMS)
            status = None if attributes["deployment.outcome"] == "success" else DEPLOYMENT_FAILED
            return [SpanSpec("deployment", hi << 64 | lo, sid | 1, 0, False, INTERNAL, at, at + 10**9, attributes,
                             status)]
        e, hi, lo, sid, attributes = self.events, self.trace_hi, self.trace_lo, self.span_id, self.attributes
        return [SpanSpec("inference", hi[j] << 64 | lo[j], sid[j] | 1, 0, False, INTERNAL, int(e.start_ns[j]),
                         int(e.start_ns[j] + e.duration_ns[j]), attributes[int(e.model[j]), int(e.version[j])],
                         FAILED if e.error[j] else None)
                for j in request.rows.tolist()]
