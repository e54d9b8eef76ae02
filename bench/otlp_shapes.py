"""Deterministic OTLP request shapes shared by benchmarks and tests.

    from bench.otlp_shapes import realistic_trace_request
    payload = realistic_trace_request(n_spans=512, seed=0, device=0)  # bytes

``realistic_trace_request`` builds the inference-span shape the collector is
sized for: one ResourceSpans per device (service, device, fleet and SDK
resource attributes), one scope, and ``n_spans`` INTERNAL "inference" spans,
each with random ids, 5% ERROR status with a message, seven ``ml.*``
attributes and four sampled ``ml.feature.*`` values (full-precision doubles,
as an SDK records them). The same (n_spans, seed, device) always gives the
same bytes.
"""

from __future__ import annotations

import os
import random
import time
import uuid

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

_T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
_REGIONS = ["eu-west", "us-east", "ap-south"]
_CLASSES = ["jetson-orin-nano", "rpi5-hailo8", "coral-devboard"]
_MODELS = [("yolov8n", "8.1.0"), ("mobilenet-v3", "3.2.1"), ("resnet50", "1.7.0")]
_LABELS = ["person", "car", "bicycle", "dog", "cat", "truck", "bus", "package", "none"]
_SCENES = ["indoor", "outdoor", "night", "low-light"]
_ERRORS = ["inference timeout after 250 ms", "CUDA out of memory", "input frame decode failed"]


def kv(key: str, value) -> KeyValue:
    """A KeyValue whose AnyValue type follows the Python type (bool, int, float, else str)."""
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def realistic_resource(device: int = 0) -> Resource:
    """The resource of one edge device (ten attributes, six of them promoted)."""
    return Resource(
        attributes=[
            kv("service.name", "edge-inference"),
            kv("device.id", f"dev-{device:05d}"),
            kv("fleet.site", f"site-{device % 23:02d}"),
            kv("fleet.region", _REGIONS[device % len(_REGIONS)]),
            kv("device.class", _CLASSES[device % len(_CLASSES)]),
            kv("device.firmware.version", f"2.{device % 4}.1"),
            kv("telemetry.sdk.language", "python"),
            kv("telemetry.sdk.name", "opentelemetry"),
            kv("telemetry.sdk.version", "1.45.2"),
            kv("host.name", f"edge-{device:05d}.fleet.local"),
        ]
    )


def realistic_span(rng: random.Random, start_ns: int, device: int = 0) -> Span:
    """One inference span with random ids, drawn from ``rng``."""
    model, version = _MODELS[(device + (rng.random() < 0.2)) % len(_MODELS)]
    duration = int(rng.lognormvariate(16.5, 0.4))  # ~15 ms
    error = rng.random() < 0.05
    status = Status(code=Status.STATUS_CODE_ERROR, message=rng.choice(_ERRORS)) if error else None
    span = Span(
        trace_id=rng.getrandbits(128).to_bytes(16, "big"),
        span_id=rng.getrandbits(64).to_bytes(8, "big"),
        name="inference",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration,
        attributes=[
            kv("ml.model.name", model),
            kv("ml.model.version", version),
            kv("ml.inference.mode", "realtime" if rng.random() < 0.9 else "batch"),
            kv("ml.request.id", uuid.UUID(int=rng.getrandbits(128), version=4).hex),
            kv("ml.prediction.label", rng.choice(_LABELS)),
            kv("ml.prediction.score", rng.betavariate(5, 1.5)),
            kv("ml.inference.cold_start", rng.random() < 0.01),
            kv("ml.feature.brightness", rng.random()),
            kv("ml.feature.temperature", rng.gauss(48.0, 6.0)),
            kv("ml.feature.motion", rng.expovariate(4.0)),
            kv("ml.feature.scene", rng.choice(_SCENES)),
        ],
    )
    if status is not None:
        span.status.CopyFrom(status)
    return span


def realistic_trace_request(n_spans: int = 512, seed: int = 0, device: int = 0) -> bytes:
    """Serialized ExportTraceServiceRequest: one device, one scope, ``n_spans`` inference spans."""
    rng = random.Random(f"fleetwatch-traces-{seed}-{device}")
    start = _T0 + seed * 60_000_000_000 + device * 1_000_000
    spans = []
    for _ in range(n_spans):
        start += rng.randrange(1_000_000, 4_000_000)
        spans.append(realistic_span(rng, start, device))
    scope = InstrumentationScope(name="fleetwatch.edge.inference", version="0.4.0")
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=realistic_resource(device),
                scope_spans=[ScopeSpans(scope=scope, spans=spans)],
                schema_url="https://opentelemetry.io/schemas/1.26.0",
            )
        ]
    )
    return request.SerializeToString()


def heavy_resource_request(n_spans: int, value_bytes: int = 1 << 20) -> bytes:
    """One resource whose ``service.name`` is ``value_bytes`` long over ``n_spans`` minimal spans.

    About 1.1 MiB on the wire for the default 1 MiB name and 1,900 spans, but
    n_spans MiB once every row carries its resource's name.
    """
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", "s" * value_bytes), kv("device.id", "dev-heavy")])
    spans = rs.scope_spans.add().spans
    start = time.time_ns()
    for i in range(n_spans):
        spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), start_time_unix_nano=start + i,
                  end_time_unix_nano=start + i + 1)
    return request.SerializeToString()
