"""OTLP metrics requests to columns for ``metric_points`` and ``histogram_points``.

Gauges and sums become one ``metric_points`` row per data point; explicit and
exponential histograms one ``histogram_points`` row per data point. Resource
and span-level conventions match the trace decoder: the data contract's
resource attributes become columns, everything else is kept as JSON text in
the same encoding (see :mod:`collector.trace_decode`)::

    decoded = decode_metrics(payload)
    decoded["metric_points"]["value"]      # list of floats
    decoded["rejected"], decoded["reject_reasons"]

A data point is rejected alone (counted by reason) when it has no timestamp,
no value, or inconsistent histogram buckets; summary metrics are counted as
rejected with reason ``unsupported_summary``. A body that is not a valid
``ExportMetricsServiceRequest`` raises ValueError.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from collector.schema import HISTOGRAM_POINT_COLUMNS, METRIC_POINT_COLUMNS
from collector.attributes import attributes_json, resource_columns

_TEMPORALITY = {0: "unspecified", 1: "delta", 2: "cumulative"}
_RECEIPT = {"received_at", "gateway_id"}


def _empty(columns) -> dict[str, list]:
    return {c.name: [] for c in columns if c.name not in _RECEIPT}


def _exemplars(point) -> str | None:
    if not len(point.exemplars):
        return None
    out = []
    for ex in point.exemplars:
        item: dict[str, Any] = {"time_unix_nano": ex.time_unix_nano}
        kind = ex.WhichOneof("value")
        if kind is not None:
            item["value"] = getattr(ex, kind)
        if ex.trace_id:
            item["trace_id"] = ex.trace_id.hex()
        if ex.span_id:
            item["span_id"] = ex.span_id.hex()
        if len(ex.filtered_attributes):
            item["filtered_attributes"] = json.loads(attributes_json(ex.filtered_attributes) or "{}")
        out.append(item)
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def _check_buckets(bounds, counts) -> bool:
    if len(counts) and len(counts) != len(bounds) + 1:
        return False
    return all(a < b for a, b in zip(bounds, bounds[1:]))


class _Rejections:
    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()
        self.first_error: str | None = None

    def add(self, reason: str, where: str, detail: str) -> None:
        self.reasons[reason] += 1
        if self.first_error is None:
            self.first_error = f"{where}: {detail}"


def decode_metrics(payload: bytes) -> dict[str, Any]:
    """Decode a serialized ExportMetricsServiceRequest into per-table column lists."""
    try:
        request = ExportMetricsServiceRequest.FromString(payload)
    except (DecodeError, RuntimeError) as exc:  # upb raises DecodeError; bad UTF-8 too
        raise ValueError(f"body is not a valid OTLP ExportMetricsServiceRequest: {exc}") from None
    numbers = _empty(METRIC_POINT_COLUMNS)
    histograms = _empty(HISTOGRAM_POINT_COLUMNS)
    rejections = _Rejections()
    for r_index, rm in enumerate(request.resource_metrics):
        resource = resource_columns(rm.resource.attributes)
        for s_index, sm in enumerate(rm.scope_metrics):
            scope = {
                "scope_name": sm.scope.name or None,
                "scope_version": sm.scope.version or None,
                "scope_attributes": attributes_json(sm.scope.attributes),
            }
            for m_index, metric in enumerate(sm.metrics):
                where = f"resource_metrics[{r_index}].scope_metrics[{s_index}].metrics[{m_index}]"
                _decode_metric(metric, where, {**resource, **scope}, numbers, histograms, rejections)
    return {
        "metric_points": numbers,
        "histogram_points": histograms,
        "count": len(numbers["time"]) + len(histograms["time"]),
        "rejected": sum(rejections.reasons.values()),
        "reject_reasons": dict(rejections.reasons),
        "first_error": rejections.first_error,
    }


def _common(metric, point, shared: dict[str, Any], temporality: str | None) -> dict[str, Any]:
    return {
        "metric_name": metric.name,
        "description": metric.description or None,
        "unit": metric.unit or None,
        "time": point.time_unix_nano,
        "start_time": point.start_time_unix_nano or None,
        "aggregation_temporality": temporality,
        "flags": point.flags,
        "attributes": attributes_json(point.attributes),
        "exemplars": _exemplars(point),
        **shared,
    }


def _histogram_summary(point) -> dict[str, Any]:
    """count, and sum/min/max where the point has them (they are optional in OTLP)."""
    return {
        "count": point.count,
        **{name: getattr(point, name) if point.HasField(name) else None for name in ("sum", "min", "max")},
    }


def _append(columns: dict[str, list], row: dict[str, Any]) -> None:
    for name, values in columns.items():
        values.append(row.get(name))


def _decode_metric(metric, where, shared, numbers, histograms, rejections: _Rejections) -> None:
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    body = getattr(metric, kind)
    if kind == "summary":
        for _ in body.data_points:
            rejections.add("unsupported_summary", where, "summary metrics are not stored")
        return
    if not metric.name:
        for _ in body.data_points:
            rejections.add("missing_metric_name", where, "metric has no name")
        return
    temporality = _TEMPORALITY.get(body.aggregation_temporality) if kind != "gauge" else None
    for p_index, point in enumerate(body.data_points):
        point_where = f"{where}.{kind}.data_points[{p_index}]"
        if not point.time_unix_nano:
            rejections.add("missing_timestamp", point_where, "time_unix_nano is 0")
            continue
        row = _common(metric, point, shared, temporality)
        if kind in ("gauge", "sum"):
            value_kind = point.WhichOneof("value")
            if value_kind is None:
                rejections.add("missing_value", point_where, "data point has neither as_double nor as_int")
                continue
            row["metric_type"] = kind
            row["is_monotonic"] = body.is_monotonic if kind == "sum" else None
            row["value"] = float(getattr(point, value_kind))
            row["int_value"] = point.as_int if value_kind == "as_int" else None
            _append(numbers, row)
        elif kind == "histogram":
            bounds, counts = list(point.explicit_bounds), list(point.bucket_counts)
            if not _check_buckets(bounds, counts):
                rejections.add("invalid_buckets", point_where, "bucket_counts must have len(explicit_bounds)+1 entries and bounds must increase")
                continue
            row.update(
                histogram_type="explicit",
                **_histogram_summary(point),
                explicit_bounds=bounds,
                bucket_counts=counts,
            )
            _append(histograms, row)
        else:  # exponential_histogram
            row.update(
                histogram_type="exponential",
                **_histogram_summary(point),
                scale=point.scale,
                zero_count=point.zero_count,
                zero_threshold=point.zero_threshold,
                positive_offset=point.positive.offset,
                positive_bucket_counts=list(point.positive.bucket_counts),
                negative_offset=point.negative.offset,
                negative_bucket_counts=list(point.negative.bucket_counts),
            )
            _append(histograms, row)
