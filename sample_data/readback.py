"""Read a request log back into plain columns, for checks and notebooks.

This is a verification aid, not an ingest path (the collector owns that):
it decodes every request with ``opentelemetry-proto`` and returns Python
columns, so tests can check the incidents of a manifest against the data
without a database::

    from sample_data.readback import read_spans, read_metric_points
    spans = read_spans("sample_data/fleet-sample.otlp.zst")
    spans.name[i], spans.start_ns[i], spans.end_ns[i], spans.received_ns[i]
    spans.resource[i]["device.id"], spans.attributes[i].get("ml.feature.brightness")
    points = read_metric_points(path, names={"device.temperature"})

Memory is a few hundred bytes per span: fine for the sample (≈ 400k spans),
not meant for months of data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.request_log import read_request_log

_EMPTY: dict = {}


def _value(v):
    k = v.WhichOneof("value")
    if k == "string_value":
        return v.string_value
    if k == "double_value":
        return v.double_value
    if k == "int_value":
        return v.int_value
    if k == "bool_value":
        return v.bool_value
    if k == "bytes_value":
        return v.bytes_value
    if k == "array_value":
        return [_value(x) for x in v.array_value.values]
    if k == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return None


def _attrs(kvs) -> dict:
    return {kv.key: _value(kv.value) for kv in kvs} if kvs else _EMPTY


@dataclass
class Spans:
    """Columns, one entry per span, in file order."""

    name: list = field(default_factory=list)
    trace_id: list = field(default_factory=list)  # bytes
    span_id: list = field(default_factory=list)
    parent_span_id: list = field(default_factory=list)
    start_ns: list = field(default_factory=list)
    end_ns: list = field(default_factory=list)
    status: list = field(default_factory=list)  # 0 unset, 1 ok, 2 error
    received_ns: list = field(default_factory=list)
    resource: list = field(default_factory=list)  # dict, shared per request
    attributes: list = field(default_factory=list)  # dict

    def __len__(self) -> int:
        return len(self.name)


@dataclass
class MetricPoints:
    name: list = field(default_factory=list)
    kind: list = field(default_factory=list)  # "gauge" | "sum" | "histogram"
    time_ns: list = field(default_factory=list)
    start_ns: list = field(default_factory=list)
    value: list = field(default_factory=list)  # number, or (count, sum, bucket_counts, bounds)
    attributes: list = field(default_factory=list)
    received_ns: list = field(default_factory=list)
    resource: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.name)


# per signal: request message, then the fields of its resource -> scope -> item levels
_LEVELS = {
    "traces": (ExportTraceServiceRequest, "resource_spans", "scope_spans", "spans"),
    "metrics": (ExportMetricsServiceRequest, "resource_metrics", "scope_metrics", "metrics"),
}


def _items(path: str, signal: str) -> Iterator[tuple[int, dict, Any]]:
    """``(received_at, resource attributes, span or metric)`` for every span or metric of
    the ``signal`` requests in the log, in file order; one resource dict per resource."""
    request_type, resources, scopes, items = _LEVELS[signal]
    for rec in read_request_log(path):
        if rec.signal != signal:
            continue
        req = request_type.FromString(rec.payload)
        for r in getattr(req, resources):
            res = _attrs(r.resource.attributes)
            for sc in getattr(r, scopes):
                for item in getattr(sc, items):
                    yield rec.received_at_unix_nano, res, item


def read_spans(path: str) -> Spans:
    out = Spans()
    for received, res, s in _items(path, "traces"):
        out.name.append(s.name)
        out.trace_id.append(s.trace_id)
        out.span_id.append(s.span_id)
        out.parent_span_id.append(s.parent_span_id)
        out.start_ns.append(s.start_time_unix_nano)
        out.end_ns.append(s.end_time_unix_nano)
        out.status.append(s.status.code)
        out.received_ns.append(received)
        out.resource.append(res)
        out.attributes.append(_attrs(s.attributes))
    return out


def read_metric_points(path: str, names: set[str] | None = None) -> MetricPoints:
    out = MetricPoints()
    for received, res, m in _items(path, "metrics"):
        if names is not None and m.name not in names:
            continue
        kind = m.WhichOneof("data")
        for p in getattr(m, kind).data_points:
            out.name.append(m.name)
            out.kind.append(kind)
            out.time_ns.append(p.time_unix_nano)
            out.start_ns.append(p.start_time_unix_nano)
            if kind == "histogram":
                out.value.append((p.count, p.sum, list(p.bucket_counts), list(p.explicit_bounds)))
            else:
                out.value.append(p.as_double if p.WhichOneof("value") == "as_double" else p.as_int)
            out.attributes.append(_attrs(p.attributes))
            out.received_ns.append(received)
            out.resource.append(res)
    return out
