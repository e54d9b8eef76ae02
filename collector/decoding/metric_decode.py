"""OTLP metrics requests to columns for ``metric_points`` and ``histogram_points``.

Gauges and sums become one ``metric_points`` row per data point; explicit and
exponential histograms one ``histogram_points`` row per data point. Resource
and span-level conventions match the trace decoder: the data contract's
resource attributes become columns, everything else is kept as JSON text in
the same encoding (see :mod:`collector.decoding.attributes`)::

    decoded = decode_metrics(payload)
    decoded["metric_points"]["value"]      # list of floats, one per row
    decoded["metric_points"]["service_name"], decoded["metric_points"]["shared_runs"]  # one per run
    decoded["rejected"], decoded["reject_reasons"]

As in the trace decoder, the resource and scope columns (``SHARED``) hold one
value per run, the points of one ScopeMetrics in that table, and
``shared_runs`` each run's length: a resource is held once, not per point
(collector/decoding/arrow_batches.py makes dictionary arrays of them).

A data point is rejected alone (counted by reason) when it has no timestamp,
no value, or inconsistent histogram buckets; summary metrics are counted as
rejected with reason ``unsupported_summary``. A body that is not a valid
``ExportMetricsServiceRequest`` raises ValueError.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from collector.store.schema import HISTOGRAM_POINT_COLUMNS, METRIC_POINT_COLUMNS
from collector.decoding.attributes import RESOURCE_PROMOTED, attributes_json, resource_columns

_TEMPORALITY = {0: "unspecified", 1: "delta", 2: "cumulative"}
_MAX_TIME_NS = 2**63
_RECEIPT = {"received_at", "gateway_id"}

# Rows are built as tuples in the storage tables' column order (one tuple
# per point, columns made by one transposition per request) rather than a
# dict per point: the sample's 330k points decode in 2.4 instead of 3.0 CPU
# seconds. The layout is checked against the schema at import time.
_NUMBER_NAMES = [c.name for c in METRIC_POINT_COLUMNS if c.name not in _RECEIPT]
_HISTOGRAM_NAMES = [c.name for c in HISTOGRAM_POINT_COLUMNS if c.name not in _RECEIPT]
_COMMON_LAYOUT = ["metric_name", "description", "unit", "time", "start_time", "aggregation_temporality", "flags",
                  *RESOURCE_PROMOTED.values(), "attributes", "exemplars",
                  "resource_attributes", "scope_name", "scope_version", "scope_attributes"]
assert _NUMBER_NAMES == ["metric_type", "is_monotonic", "value", "int_value", *_COMMON_LAYOUT]
assert _HISTOGRAM_NAMES == ["histogram_type", "count", "sum", "min", "max", "explicit_bounds", "bucket_counts",
                            "scale", "zero_count", "zero_threshold", "positive_offset", "positive_bucket_counts",
                            "negative_offset", "negative_bucket_counts", *_COMMON_LAYOUT]
#: columns of the resource and the scope, one value per run, in this order
SHARED = (*RESOURCE_PROMOTED.values(), "resource_attributes", "scope_name", "scope_version", "scope_attributes")


def _columns(names: list[str], rows: list[tuple], runs: list[tuple[tuple, int]]) -> dict[str, list]:
    """Columns in storage order: per-row ones from ``rows``, shared ones from ``runs`` (values, length)."""
    own = [name for name in names if name not in SHARED]
    columns = dict(zip(own, map(list, zip(*rows)))) if rows else {name: [] for name in own}
    shared = dict(zip(SHARED, map(list, zip(*(values for values, _ in runs))))) if runs else {n: [] for n in SHARED}
    out = {name: columns[name] if name in columns else shared[name] for name in names}
    out["shared_runs"] = [length for _, length in runs]
    return out


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


class Rejections:
    """Rejected items counted by reason, with the first one's message (shared with collector.decoding.log_decode)."""

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()
        self.first_error: str | None = None

    def add(self, reason: str, where: str, detail: str) -> None:
        self.reasons[reason] += 1
        if self.first_error is None:
            self.first_error = f"{where}: {detail}"


def parse_request(message_type: type[Message], payload: bytes) -> Message:
    """The parsed Export*ServiceRequest; ValueError naming the message type for a malformed body."""
    try:
        return message_type.FromString(payload)
    except (DecodeError, RuntimeError) as exc:  # upb raises DecodeError; bad UTF-8 too
        raise ValueError(f"body is not a valid OTLP {message_type.__name__}: {exc}") from None


def scopes(resources, scope_field: str) -> Iterator[tuple[tuple[int, int], Any, tuple, tuple]]:
    """Each Scope{Metrics,Logs} of a request's Resource* list: ((resource index, scope index), the scope's
    message, the promoted resource columns, and (resource_attributes, scope_name, scope_version, scope_attributes)).
    """
    for r_index, resource_items in enumerate(resources):
        resource = resource_columns(resource_items.resource.attributes)
        promoted = tuple(resource[column] for column in RESOURCE_PROMOTED.values())
        for s_index, scope_items in enumerate(getattr(resource_items, scope_field)):
            scope = scope_items.scope
            rest = (resource["resource_attributes"], scope.name or None, scope.version or None,
                    attributes_json(scope.attributes))
            yield (r_index, s_index), scope_items, promoted, rest


def decode_metrics(payload: bytes) -> dict[str, Any]:
    """Decode a serialized ExportMetricsServiceRequest into per-table column lists."""
    request = parse_request(ExportMetricsServiceRequest, payload)
    numbers: list[tuple] = []
    histograms: list[tuple] = []
    number_runs: list[tuple[tuple, int]] = []  # (SHARED values, points) per scope with points
    histogram_runs: list[tuple[tuple, int]] = []
    rejections = Rejections()
    for (r_index, s_index), sm, promoted, rest in scopes(request.resource_metrics, "scope_metrics"):
        shared = (*promoted, *rest)
        starts = (len(numbers), len(histograms))
        for m_index, metric in enumerate(sm.metrics):
            _decode_metric(metric, (r_index, s_index, m_index), numbers, histograms, rejections)
        for rows, runs, start in ((numbers, number_runs, starts[0]), (histograms, histogram_runs, starts[1])):
            if len(rows) > start:
                runs.append((shared, len(rows) - start))
    return {
        "metric_points": _columns(_NUMBER_NAMES, numbers, number_runs),
        "histogram_points": _columns(_HISTOGRAM_NAMES, histograms, histogram_runs),
        "count": len(numbers) + len(histograms),
        "rejected": sum(rejections.reasons.values()),
        "reject_reasons": dict(rejections.reasons),
        "first_error": rejections.first_error,
    }


def _optional(point, name: str) -> float | None:
    """sum, min and max are optional in OTLP histograms."""
    return getattr(point, name) if point.HasField(name) else None


def _decode_metric(metric, where: tuple[int, int, int], numbers: list[tuple], histograms: list[tuple],
                   rejections: Rejections) -> None:
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    body = getattr(metric, kind)

    def point_where(p_index: int | None = None) -> str:  # only built for a rejection's message
        text = "resource_metrics[{}].scope_metrics[{}].metrics[{}]".format(*where)
        return text if p_index is None else f"{text}.{kind}.data_points[{p_index}]"

    if kind == "summary":
        for _ in body.data_points:
            rejections.add("unsupported_summary", point_where(), "summary metrics are not stored")
        return
    if not metric.name:
        for _ in body.data_points:
            rejections.add("missing_metric_name", point_where(), "metric has no name")
        return
    temporality = _TEMPORALITY.get(body.aggregation_temporality) if kind != "gauge" else None
    named = (metric.name, metric.description or None, metric.unit or None)
    for p_index, point in enumerate(body.data_points):
        if not point.time_unix_nano:
            rejections.add("missing_timestamp", point_where(p_index), "time_unix_nano is 0")
            continue
        if point.time_unix_nano >= _MAX_TIME_NS or point.start_time_unix_nano >= _MAX_TIME_NS:
            # Past TIMESTAMP_NS: stored, it would fail the whole write batch, not just this point.
            rejections.add("invalid_timestamp", point_where(p_index), "time is past 2262-04-11 (2**63 ns)")
            continue
        common = (*named, point.time_unix_nano, point.start_time_unix_nano or None, temporality, point.flags,
                  attributes_json(point.attributes), _exemplars(point))  # the SHARED columns come per run
        if kind == "gauge" or kind == "sum":
            value_kind = point.WhichOneof("value")
            if value_kind is None:
                rejections.add("missing_value", point_where(p_index), "data point has neither as_double nor as_int")
                continue
            numbers.append((kind, body.is_monotonic if kind == "sum" else None, float(getattr(point, value_kind)),
                            point.as_int if value_kind == "as_int" else None, *common))
        elif kind == "histogram":
            bounds, counts = list(point.explicit_bounds), list(point.bucket_counts)
            if not _check_buckets(bounds, counts):
                rejections.add("invalid_buckets", point_where(p_index),
                               "bucket_counts must have len(explicit_bounds)+1 entries and bounds must increase")
                continue
            histograms.append(("explicit", point.count, _optional(point, "sum"), _optional(point, "min"),
                               _optional(point, "max"), bounds, counts, None, None, None, None, None, None, None,
                               *common))
        else:  # exponential_histogram
            histograms.append(("exponential", point.count, _optional(point, "sum"), _optional(point, "min"),
                               _optional(point, "max"), None, None, point.scale, point.zero_count,
                               point.zero_threshold, point.positive.offset, list(point.positive.bucket_counts),
                               point.negative.offset, list(point.negative.bucket_counts), *common))
