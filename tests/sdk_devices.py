"""Hand-built devices that send spans and resource gauges through the real OpenTelemetry SDK.

::

    device = Device("cam-1", "jetson-orin", boot=hour - timedelta(hours=1))
    device.spans(collector.http_url, lambda tracer: emit_span(tracer, "inference", at, {...}))
    device.sample(collector.http_url, at, cpu=0.95, temperature=HOT, sent=1000)
"""

from __future__ import annotations

from datetime import datetime, timedelta

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from sample_data.otel import DeviceMeters

COOL = 50.0
MIB = 2**20


def resource(device: str, device_class: str) -> Resource:
    return Resource.create({"service.name": "vision-edge", "device.id": device, "fleet.site": "site-a",
                            "fleet.region": "eu", "device.class": device_class,
                            "device.firmware.version": "4.2.1"})


def ns(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1)) / timedelta(microseconds=1)) * 1000


class Device:
    """One device's SDK providers, exporting to a collector's OTLP/HTTP receiver."""

    def __init__(self, device: str, device_class: str, boot: datetime) -> None:
        self.resource = resource(device, device_class)
        self.meters = DeviceMeters(self.resource, ns(boot), battery=False)

    def sample(self, url: str, at: datetime, *, cpu=0.3, memory_mib=500, temperature=COOL, sent=0) -> None:
        data = self.meters.collect(ns(at), cpu, memory_mib * MIB, temperature, None, sent, [])
        assert OTLPMetricExporter(endpoint=url + "/v1/metrics").export(data).name == "SUCCESS"

    def spans(self, url: str, emit) -> None:
        provider = TracerProvider(resource=self.resource)
        # One request: spans of the past sent one by one, with little receive time between
        # them, would look like a device whose clock lags (collector.store.clock_skew).
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces"),
                                                       max_export_batch_size=512, schedule_delay_millis=60_000))
        emit(provider.get_tracer("fleetwatch.tests"))
        assert provider.force_flush(30_000)
        provider.shutdown()


def emit_span(tracer, name: str, at: datetime, attributes: dict, error: bool = False) -> None:
    span = tracer.start_span(name, start_time=ns(at), attributes=attributes)
    if error:
        span.set_status(Status(StatusCode.ERROR, "failed"))
    span.end(end_time=ns(at) + 5 * 10**6)
