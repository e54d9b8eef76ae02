"""OTLP/JSON request bodies to OTLP protobuf bytes.

OTLP/JSON is protobuf's JSON mapping with a few differences (see the OTLP
specification): trace and span ids are hex strings instead of base64, enums
are integers, 64-bit integers may be decimal strings, keys are lowerCamelCase
and unknown fields must be ignored. We rewrite the ids to what protobuf's JSON
parser expects and let it do the rest, so JSON and protobuf requests share
one decoder afterwards::

    payload = json_to_protobuf(body, "traces")   # bytes of ExportTraceServiceRequest
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_METRIC_KINDS = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary")


def _hex_to_base64(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{where}: {value[:40]!r} is not a hex string") from None
    return base64.b64encode(raw).decode("ascii")


def _fix_ids(obj: dict[str, Any], where: str) -> None:
    for key in _ID_KEYS:
        if key in obj:
            obj[key] = _hex_to_base64(obj[key], f"{where}.{key}")


def _items(obj: dict[str, Any], camel: str, snake: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    values = obj.get(camel, obj.get(snake)) or []
    if not isinstance(values, list):
        raise ValueError(f"{where}.{camel}: expected a list")
    out = []
    for index, value in enumerate(values):
        if not isinstance(value, dict):
            raise ValueError(f"{where}.{camel}[{index}]: expected an object")
        out.append((f"{where}.{camel}[{index}]", value))
    return out


def _leaves(root: dict[str, Any], resource: str, scope: str, leaf: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, object) of every span or log record: ``resource``, ``scope``, ``leaf`` are snake_case keys."""
    for r_where, r in _items(root, _camel(resource), resource, "$"):
        for s_where, s in _items(r, _camel(scope), scope, r_where):
            yield from _items(s, _camel(leaf), leaf, s_where)


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _rewrite_traces(root: dict[str, Any]) -> None:
    for span_where, span in _leaves(root, "resource_spans", "scope_spans", "spans"):
        _fix_ids(span, span_where)
        for link_where, link in _items(span, "links", "links", span_where):
            _fix_ids(link, link_where)


def _rewrite_metrics(root: dict[str, Any]) -> None:
    for rm_where, rm in _items(root, "resourceMetrics", "resource_metrics", "$"):
        for sm_where, sm in _items(rm, "scopeMetrics", "scope_metrics", rm_where):
            for metric_where, metric in _items(sm, "metrics", "metrics", sm_where):
                for kind in _METRIC_KINDS:
                    body = metric.get(kind)
                    if not isinstance(body, dict):
                        continue
                    for point_where, point in _items(body, "dataPoints", "data_points", f"{metric_where}.{kind}"):
                        for ex_where, exemplar in _items(point, "exemplars", "exemplars", point_where):
                            _fix_ids(exemplar, ex_where)


def _rewrite_logs(root: dict[str, Any]) -> None:
    for record_where, record in _leaves(root, "resource_logs", "scope_logs", "log_records"):
        _fix_ids(record, record_where)


_MESSAGES: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
_REWRITES = {"traces": _rewrite_traces, "metrics": _rewrite_metrics, "logs": _rewrite_logs}


def json_to_protobuf(body: bytes, signal: str) -> bytes:
    """Convert an OTLP/JSON request for ``signal`` ("traces", "metrics" or "logs") to protobuf bytes.

    Raises ValueError with a JSON path when the body is not valid OTLP/JSON.
    """
    try:
        root = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    if not isinstance(root, dict):
        raise ValueError("body must be a JSON object")
    _REWRITES[signal](root)
    message = _MESSAGES[signal]()
    try:
        json_format.ParseDict(root, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(f"body is not valid OTLP/JSON: {exc}") from None
    return message.SerializeToString()

