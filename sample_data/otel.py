"""OpenTelemetry SDK plumbing shared by the bulk and live outputs.

The generator describes spans as :class:`SpanSpec` tuples (ids, times,
attributes, status decided by the simulation). Two ways turn a spec into
SDK spans, and they produce the same ``ReadableSpan`` content (a test
compares the encoded bytes):

* :func:`readable_spans` builds ``ReadableSpan`` objects directly (bulk:
  no tracer, no processor, a few microseconds per span);
* :class:`SpecTracer` drives a real ``TracerProvider`` (live: the SDK's own
  ``Tracer.start_span`` / ``Span.end`` with a :class:`QueuedIdGenerator`
  that hands the SDK the simulation's ids), collecting ended spans in a
  :class:`CollectingSpanProcessor` so the caller exports each batch with
  any ``SpanExporter`` (the OTLP HTTP / gRPC exporters in live mode).

Metrics always go through the real SDK: :class:`DeviceMeters` wraps one
``MeterProvider`` per device boot with a :class:`ManualReader`. The caller
sets gauges, adds to counters and records histogram values, then calls
``collect(device_time_ns)``, which returns ``MetricsData`` whose timestamps
are the simulated device clock (``time_unix_nano`` = the collection tick,
``start_time_unix_nano`` = the boot time for cumulative sums and
histograms) instead of the wall clock the SDK stamps.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import NamedTuple

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    MetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .fleet import SCOPE_NAME, SCOPE_VERSION

SCOPE = InstrumentationScope(SCOPE_NAME, SCOPE_VERSION)
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
UNSET = Status(StatusCode.UNSET)
INTERNAL = SpanKind.INTERNAL
SERVER = SpanKind.SERVER

# Latency histogram buckets (ms): fine enough for thresholds of 10-250 ms.
DURATION_BUCKETS_MS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0,
                       250.0, 500.0, 1000.0, 2500.0, 5000.0)


class SimResource(Resource):
    """A ``Resource`` whose hash is computed once.

    The SDK hashes a resource by serialising its attributes to JSON, and the
    OTLP encoder hashes the resource of every span it groups; caching the
    hash (the attributes are immutable) takes that off the per-span path.
    Encoded output is unchanged: encoders read only the attributes.
    """

    def __init__(self, attributes, schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._cached_hash = super().__hash__()

    def __hash__(self) -> int:
        return self._cached_hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


class SpanSpec(NamedTuple):
    """One span as the simulation decided it."""

    name: str
    trace_id: int
    span_id: int
    parent_span_id: int  # 0: root span
    parent_remote: bool
    kind: SpanKind
    start_ns: int
    end_ns: int
    attributes: dict | None
    status: Status | None  # None: UNSET


def readable_spans(specs: list[SpanSpec], resource: Resource) -> list[ReadableSpan]:
    """Build the ``ReadableSpan`` objects the SDK would have produced."""
    out = []
    append = out.append
    for s in specs:
        parent = (
            SpanContext(s.trace_id, s.parent_span_id, s.parent_remote, SAMPLED) if s.parent_span_id else None
        )
        append(
            ReadableSpan(
                name=s.name,
                context=SpanContext(s.trace_id, s.span_id, False, SAMPLED),
                parent=parent,
                resource=resource,
                attributes=s.attributes,
                kind=s.kind,
                status=s.status or UNSET,
                start_time=s.start_ns,
                end_time=s.end_ns,
                instrumentation_scope=SCOPE,
            )
        )
    return out


class QueuedIdGenerator(IdGenerator):
    """An ``IdGenerator`` that returns the ids the simulation queued.

    ``push(trace_id, span_id)`` before ``tracer.start_span``; the SDK then
    draws exactly those ids (a trace id only for a root span). Drawing
    from an empty queue is a bug in the caller and raises.
    """

    def __init__(self) -> None:
        self._trace_ids: deque[int] = deque()
        self._span_ids: deque[int] = deque()

    def push(self, trace_id: int | None, span_id: int) -> None:
        if trace_id is not None:
            self._trace_ids.append(trace_id)
        self._span_ids.append(span_id)

    def generate_trace_id(self) -> int:
        return self._trace_ids.popleft()

    def generate_span_id(self) -> int:
        return self._span_ids.popleft()

    def is_trace_id_random(self) -> bool:  # ids come from a seeded PRNG
        return False


class CollectingSpanProcessor(SpanProcessor):
    """Keeps ended spans until the caller takes them as one export batch."""

    def __init__(self) -> None:
        self._spans: list[ReadableSpan] = []

    def on_start(self, span, parent_context=None) -> None:  # noqa: D401 - SDK hook
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self._spans.append(span)

    def take(self) -> list[ReadableSpan]:
        spans, self._spans = self._spans, []
        return spans

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class SpecTracer:
    """A real SDK ``TracerProvider`` for one resource, fed with specs.

    ``emit(specs)`` creates and ends one SDK span per spec (in order) and
    returns the ended spans, ready for ``exporter.export(...)``.
    """

    def __init__(self, resource: Resource) -> None:
        self.ids = QueuedIdGenerator()
        self.processor = CollectingSpanProcessor()
        self.provider = TracerProvider(resource=resource, id_generator=self.ids, sampler=ALWAYS_ON)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer(SCOPE_NAME, SCOPE_VERSION)
        self._empty = context_api.Context()

    def emit(self, specs: list[SpanSpec]) -> list[ReadableSpan]:
        tracer = self.tracer
        for s in specs:
            if s.parent_span_id:
                parent = NonRecordingSpan(SpanContext(s.trace_id, s.parent_span_id, s.parent_remote, SAMPLED))
                ctx = trace_api.set_span_in_context(parent, self._empty)
                self.ids.push(None, s.span_id)
            else:
                ctx = self._empty
                self.ids.push(s.trace_id, s.span_id)
            span = tracer.start_span(s.name, context=ctx, kind=s.kind, attributes=s.attributes,
                                     start_time=s.start_ns)
            if s.status is not None:
                span.set_status(s.status)
            span.end(end_time=s.end_ns)
        return self.processor.take()

    def shutdown(self) -> None:
        self.provider.shutdown()


class ManualReader(MetricReader):
    """A ``MetricReader`` collected on demand (at simulated ticks), cumulative."""

    def __init__(self) -> None:
        # The base class defaults every instrument to CUMULATIVE and reads no
        # environment variable, so the data cannot change with OTEL_* settings.
        super().__init__()
        self._data: MetricsData | None = None

    def _receive_metrics(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> None:
        self._data = metrics_data

    def take(self) -> MetricsData | None:
        self.collect()
        data, self._data = self._data, None
        return data

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def _retime(data: MetricsData, time_ns: int, start_ns: int) -> MetricsData:
    """Replace the SDK's wall-clock timestamps with the simulated device clock."""
    rms = []
    for rm in data.resource_metrics:
        sms = []
        for sm in rm.scope_metrics:
            metrics = []
            for m in sm.metrics:
                d = m.data
                cumulative = isinstance(d, (Sum, Histogram))
                points = [
                    dataclasses.replace(
                        p, time_unix_nano=time_ns,
                        start_time_unix_nano=start_ns if cumulative else p.start_time_unix_nano,
                    )
                    for p in d.data_points
                ]
                metrics.append(dataclasses.replace(m, data=dataclasses.replace(d, data_points=points)))
            sms.append(dataclasses.replace(sm, metrics=metrics))
        rms.append(dataclasses.replace(rm, scope_metrics=sms))
    return MetricsData(resource_metrics=rms)


class DeviceMeters:
    """The real SDK ``MeterProvider`` of one device boot.

    Instruments (in this order): ``system.cpu.utilization`` (gauge, 1),
    ``system.memory.usage`` (gauge, By), ``device.temperature`` (gauge,
    Cel), ``device.battery.level`` (gauge, 1; battery devices only),
    ``telemetry.bytes_sent`` (counter, By) and ``ml.inference.duration``
    (histogram, ms, by ``ml.model.name`` / ``ml.model.version``).
    """

    def __init__(self, resource: Resource, boot_device_ns: int, battery: bool) -> None:
        self.boot_device_ns = boot_device_ns
        self.reader = ManualReader()
        self.provider = MeterProvider(
            metric_readers=[self.reader],
            resource=resource,
            exemplar_filter=AlwaysOffExemplarFilter(),
            views=[
                View(instrument_name="ml.inference.duration",
                     aggregation=ExplicitBucketHistogramAggregation(boundaries=DURATION_BUCKETS_MS)),
            ],
        )
        meter = self.provider.get_meter(SCOPE_NAME, SCOPE_VERSION)
        self.cpu = meter.create_gauge("system.cpu.utilization", unit="1", description="CPU utilisation")
        self.memory = meter.create_gauge("system.memory.usage", unit="By", description="Memory in use")
        self.temperature = meter.create_gauge("device.temperature", unit="Cel", description="SoC temperature")
        self.battery = (
            meter.create_gauge("device.battery.level", unit="1", description="Battery charge") if battery else None
        )
        self.bytes_sent = meter.create_counter("telemetry.bytes_sent", unit="By",
                                               description="Telemetry bytes produced for upload")
        self.duration = meter.create_histogram("ml.inference.duration", unit="ms",
                                               description="Inference duration")

    def collect(self, device_time_ns: int, cpu: float, memory: int, temperature: float,
                battery: float | None, bytes_sent: int,
                durations: list[tuple[float, dict]]) -> MetricsData:
        self.cpu.set(cpu)
        self.memory.set(memory)
        self.temperature.set(temperature)
        if self.battery is not None and battery is not None:
            self.battery.set(battery)
        self.bytes_sent.add(bytes_sent)
        record = self.duration.record
        for value, attrs in durations:
            record(value, attrs)
        data = self.reader.take()
        assert data is not None
        return _retime(data, device_time_ns, self.boot_device_ns)

    def shutdown(self) -> None:
        self.provider.shutdown()
