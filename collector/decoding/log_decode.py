"""OTLP logs requests to columns for ``log_rows`` (read through the ``log_records`` view).

One row per log record. Resource and scope conventions match the trace and
metric decoders: the data contract's resource attributes become columns,
everything else is kept as JSON text in the same encoding (see
:mod:`collector.decoding.attributes`)::

    decoded = decode_logs(payload)
    decoded["log_rows"]["body"]              # list of str or None
    decoded["count"], decoded["rejected"], decoded["reject_reasons"]

Ids are stored like ``span_rows``: the 16-byte trace id as two unsigned
64-bit integers read big-endian, the 8-byte span id as one; a record outside
any trace (empty or all-zero ids) has NULL ids. A string body is stored as
it is, any other body (int, double, bool, bytes, array, kvlist) as its JSON
text, no body as NULL. Log volume is low, so this is plain Python on the upb
protobuf classes; no C decoder.

A record is rejected alone (counted by reason) when its trace id is neither
empty nor 16 bytes (``invalid_trace_id``), its span id neither empty nor 8
bytes (``invalid_span_id``), it has neither ``time_unix_nano`` nor
``observed_time_unix_nano`` (``missing_timestamp``), or one of them lies past
what ``TIMESTAMP_NS`` holds, 2**63 - 1 ns (``invalid_timestamp``). A body that is not a
valid ``ExportLogsServiceRequest``, or a body or attribute value nested more
than ``MAX_VALUE_DEPTH`` arrays / kvlists deep, raises ValueError.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from collector.decoding.attributes import RESOURCE_PROMOTED, any_value_json, attributes_json
from collector.decoding.metric_decode import Rejections, parse_request, scopes
from collector.store.schema import LOG_ROW_COLUMNS

_RECEIPT = {"received_at", "gateway_id"}
#: TIMESTAMP_NS is a signed 64-bit count; a later (fixed64) time would fail the whole write batch
_MAX_TIME_NS = 2**63 - 1

# Rows are built as tuples in the storage table's column order and transposed
# once per request, as in collector.decoding.metric_decode; the layout is checked
# against the schema at import time.
_LOG_NAMES = [c.name for c in LOG_ROW_COLUMNS if c.name not in _RECEIPT]
assert _LOG_NAMES == ["time", "observed_time", "severity_number", "severity_text", "body", "trace_id_hi",
                      "trace_id_lo", "span_id", "event_name", "flags", *RESOURCE_PROMOTED.values(), "attributes",
                      "dropped_attributes_count", "resource_attributes", "scope_name", "scope_version",
                      "scope_attributes"]


def _body(record) -> str | None:
    which = record.body.WhichOneof("value") if record.HasField("body") else None
    if which is None:
        return None
    if which == "string_value":
        return record.body.string_value
    return any_value_json(record.body)


def _ids(record) -> tuple[int | None, int | None, int | None] | tuple[str, str]:
    """(trace_id_hi, trace_id_lo, span_id), NULL for absent ids; or (reason, detail) for a bad one."""
    trace_id, span_id = record.trace_id, record.span_id
    if len(trace_id) not in (0, 16):
        return "invalid_trace_id", f"trace_id must be empty or 16 bytes, got {len(trace_id)}"
    if len(span_id) not in (0, 8):
        return "invalid_span_id", f"span_id must be empty or 8 bytes, got {len(span_id)}"
    hi = int.from_bytes(trace_id[:8], "big") if trace_id else 0
    lo = int.from_bytes(trace_id[8:], "big") if trace_id else 0
    span = int.from_bytes(span_id, "big") if span_id else 0
    if not hi and not lo:  # all zero is "no trace" in OTel
        return None, None, span or None
    return hi, lo, span or None


def decode_logs(payload: bytes) -> dict[str, Any]:
    """Decode a serialized ExportLogsServiceRequest into ``log_rows`` column lists."""
    request = parse_request(ExportLogsServiceRequest, payload)
    rows: list[tuple] = []
    rejections = Rejections()
    for (r_index, s_index), scope_logs, promoted, rest in scopes(request.resource_logs, "scope_logs"):
        for index, record in enumerate(scope_logs.log_records):
            # Body and attributes first: a value nested too deep fails the request even in a rejected record.
            body, attributes = _body(record), attributes_json(record.attributes)
            ids = _ids(record)
            if len(ids) == 2:
                reason, detail = ids
            elif not record.time_unix_nano and not record.observed_time_unix_nano:
                reason, detail = "missing_timestamp", "time_unix_nano and observed_time_unix_nano are both 0"
            elif max(record.time_unix_nano, record.observed_time_unix_nano) > _MAX_TIME_NS:
                reason, detail = "invalid_timestamp", f"a time after {_MAX_TIME_NS} ns (year 2262)"
            else:
                rows.append((record.time_unix_nano or None, record.observed_time_unix_nano or None,
                             record.severity_number or None, record.severity_text or None, body, *ids,
                             record.event_name or None, record.flags, *promoted, attributes,
                             record.dropped_attributes_count, *rest))
                continue
            rejections.add(reason, f"log record {index} in resource_logs[{r_index}].scope_logs[{s_index}]", detail)
    columns = dict(zip(_LOG_NAMES, map(list, zip(*rows)))) if rows else {name: [] for name in _LOG_NAMES}
    return {
        "log_rows": columns,
        "count": len(rows),
        "rejected": sum(rejections.reasons.values()),
        "reject_reasons": dict(rejections.reasons),
        "first_error": rejections.first_error,
    }
