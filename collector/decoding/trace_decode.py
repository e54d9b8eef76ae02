"""OTLP trace requests (ExportTraceServiceRequest protobuf bytes) to columns.

Usage::

    from collector.decoding.trace_decode import decode_traces, SPEEDUPS_AVAILABLE
    cols = decode_traces(payload)          # raises ValueError on a malformed request
    n = cols["count"]
    span_ids = pyarrow.py_buffer(cols["span_id"])   # n little-endian uint64, no copy
    offsets, data, validity = cols["name"]          # Arrow string buffers
    names = pyarrow.Array.from_buffers(pyarrow.string(), n,
        [validity and pyarrow.py_buffer(validity), pyarrow.py_buffer(offsets), pyarrow.py_buffer(data)])

``decode_traces`` uses the C decoder ``collector.decoding._speedups`` when it is
importable and ``FLEETWATCH_PURE_PYTHON`` is not ``1``; otherwise
``decode_traces_python``, the reference built on the upb protobuf backend.
Both return equal dicts for every input (the tests check it) and both raise
ValueError for the same inputs.

Every column is Arrow-ready: a table is built by wrapping the buffers
(``pa.Array.from_buffers``, no copy), no Python object per value is made.

Output contract: a dict with
  count                 int, accepted spans n
  rejected              int, rejected spans; reject_reasons: {reason: count}
                        (only reasons that occurred); first_error: str or None,
                        e.g. "span 3 in resource_spans[0].scope_spans[1]:
                        trace_id must be 16 bytes, got 0"
  fixed-width columns   bytes holding n little-endian values:
    trace_id_hi, trace_id_lo   uint64, the two halves of the 16-byte trace id
                               each read big-endian (f"{hi:016x}{lo:016x}")
    span_id, parent_span_id    uint64 (8-byte id read big-endian; 0 = no parent)
    start_time, duration_ns    int64 (start_time_unix_nano, end - start)
    kind, status_code          uint8 (the enum value modulo 256)
    flags, dropped_attributes_count, dropped_events_count,
    dropped_links_count        uint32
  Nullable columns, as Arrow buffers (all bytes). ``validity`` is a bitmap of
  ceil(n / 8) bytes, bit i (least significant bit first) set when row i is not
  null, padding bits 0; it is None when the column has no null. Null rows
  hold zero bytes (no text, 0.0, false).
    text columns: (offsets, data, validity) of an Arrow ``string`` array:
      offsets n + 1 little-endian int32 (the first 0), data the rows' UTF-8
      text concatenated (row i is data[offsets[i]:offsets[i + 1]]).
    float columns: (values, validity), values n little-endian float64 holding
      the double's bits as sent (a NaN keeps its payload; an int_value is
      converted to the nearest double).
    the bool column: (values, validity), values a bitmap like validity.
  Runs: the resource and scope columns (scope_name, scope_version,
    scope_attributes, the six promoted resource columns, resource_attributes)
    hold one entry per run instead of one per row, so a resource's text is
    held once however many spans it applies to. A run is the accepted spans
    of one ScopeSpans (none: no run); ``shared_runs`` is bytes of little-endian
    int32, each run's length, adding up to n. Row i takes the entry of the run
    it falls in (collector/decoding/arrow_batches.py makes dictionary arrays of them).
  text columns:
    name, trace_state, status_message, scope_name, scope_version: null when
    empty.
    promoted resource attributes (string_value only): service_name
    (service.name), device_id (device.id), site (fleet.site), region
    (fleet.region), device_class (device.class), firmware_version
    (device.firmware.version).
    promoted span attributes (string_value only): model_name (ml.model.name),
    model_version (ml.model.version), inference_mode (ml.inference.mode),
    request_id (ml.request.id), prediction_label (ml.prediction.label), label
    (ml.label).
    JSON text (null when there is nothing to write): resource_attributes (not
    promoted), scope_attributes, attributes (span, not promoted), events, links.
  float columns (double_value, or int_value): prediction_score
    (ml.prediction.score), prediction_value (ml.prediction.value), label_value
    (ml.label.value).
  bool column (bool_value only): cold_start (ml.inference.cold_start).
  Promotion: only the LAST occurrence of a key is a candidate: if its value has
    the right type it is promoted (an empty string is promoted as "", not
    null) and left out of the JSON; earlier occurrences, and a last one of
    another type, stay in the JSON.
  JSON text:
    Attributes: {"key":value,...} in wire order, duplicates kept, no spaces.
    string -> JSON string; bool -> true/false; int -> decimal; double ->
    repr(float), non-finite as "NaN", "Infinity", "-Infinity" (strings);
    bytes -> base64 string; array -> [...]; kvlist -> {...}; no value (and
    string_value_strindex, meaningless without a dictionary) -> null.
    Strings are escaped as json.dumps(s, ensure_ascii=False) does.
    events: [{"time_unix_nano":T,"name":"...","attributes":{...},
    "dropped_attributes_count":N}] (attributes only when non-empty, dropped
    only when > 0). links: [{"trace_id":"<hex>","span_id":"<hex>",
    "trace_state":..,"attributes":{..},"flags":N,"dropped_attributes_count":N}]
    (the last four only when non-empty / non-zero), lowercase hex.
Rejected spans (counted, left out of every column; checked in this order):
  invalid_trace_id (not 16 bytes or all zero), invalid_span_id (not 8 bytes or
  all zero), invalid_parent_span_id (neither empty nor 8 bytes),
  missing_timestamp (start or end is 0), end_before_start.
ValueError for the whole request: malformed protobuf, invalid UTF-8 in a
string field, a known field with the wrong wire type (any message), message
nesting deeper than upb's limit of 100, an attribute value with arrays /
kvlists nested more than 32 deep (checked in every span, rejected ones too),
or more than MAX_TEXT_BYTES (2**31 - 1) bytes of text in all text columns of
the accepted spans together (so int32 offsets cannot overflow; resource and
scope values count once per run).
Unknown fields are skipped. A merged singular sub-message (a field sent
twice) and oneof overrides behave as protobuf parsing defines them.
"""

from __future__ import annotations

import os
import sys
from array import array
from itertools import accumulate
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.decoding.attributes import (
    RESOURCE_PROMOTED,
    SPAN_PROMOTED,
    attributes_json,
    check_wire_types,
    json_string,
    promote,
    resource_columns,
)

__all__ = [
    "SPEEDUPS_AVAILABLE",
    "decode_traces",
    "decode_traces_python",
]

_SPAN_COLUMNS = [column for column, _ in SPAN_PROMOTED.values()]
_LITTLE = sys.byteorder == "little"
assert array("i").itemsize == array("I").itemsize == 4 and array("Q").itemsize == array("d").itemsize == 8


def _events_json(events) -> str | None:
    if not len(events):
        return None
    parts = []
    for ev in events:
        text = '{"time_unix_nano":%d,"name":%s' % (ev.time_unix_nano, json_string(ev.name))
        attrs = attributes_json(ev.attributes)
        if attrs is not None:
            text += ',"attributes":' + attrs
        if ev.dropped_attributes_count:
            text += ',"dropped_attributes_count":%d' % ev.dropped_attributes_count
        parts.append(text + "}")
    return "[" + ",".join(parts) + "]"


def _links_json(links) -> str | None:
    if not len(links):
        return None
    parts = []
    for link in links:
        text = '{"trace_id":"%s","span_id":"%s"' % (link.trace_id.hex(), link.span_id.hex())
        if link.trace_state:
            text += ',"trace_state":' + json_string(link.trace_state)
        attrs = attributes_json(link.attributes)
        if attrs is not None:
            text += ',"attributes":' + attrs
        if link.flags:
            text += ',"flags":%d' % link.flags
        if link.dropped_attributes_count:
            text += ',"dropped_attributes_count":%d' % link.dropped_attributes_count
        parts.append(text + "}")
    return "[" + ",".join(parts) + "]"


def _rejection(span) -> tuple[str, str] | None:
    tid, sid, pid = span.trace_id, span.span_id, span.parent_span_id
    if len(tid) != 16:
        return "invalid_trace_id", f"trace_id must be 16 bytes, got {len(tid)}"
    if not any(tid):
        return "invalid_trace_id", "trace_id must not be all zero"
    if len(sid) != 8:
        return "invalid_span_id", f"span_id must be 8 bytes, got {len(sid)}"
    if not any(sid):
        return "invalid_span_id", "span_id must not be all zero"
    if len(pid) not in (0, 8):
        return "invalid_parent_span_id", f"parent_span_id must be empty or 8 bytes, got {len(pid)}"
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not start:
        return "missing_timestamp", "start_time_unix_nano is 0"
    if not end:
        return "missing_timestamp", "end_time_unix_nano is 0"
    if end < start:
        return "end_before_start", f"end_time_unix_nano {end} is before start_time_unix_nano {start}"
    return None


def _parse(data: bytes) -> ExportTraceServiceRequest:
    try:
        request = ExportTraceServiceRequest.FromString(data)
    except (DecodeError, RuntimeError) as exc:
        raise ValueError(f"malformed OTLP trace request: {exc}") from None
    size = request.ByteSize()
    request.DiscardUnknownFields()
    # Unknown fields somewhere: are any known numbers among them? (Deeply
    # nested attribute values, which the discard does not reach, are checked
    # as they are rendered: see collector.decoding.attributes.)
    if request.ByteSize() != size:
        check_wire_types(ExportTraceServiceRequest.FromString(data), "request")
    return request


def _u64_be(ids: list[bytes]) -> array:
    """uint64 values of big-endian 8-byte groups (a per-group byte swap)."""
    values = array("Q")
    values.frombytes(b"".join(ids))
    values.byteswap()
    return values


def _le(values: array) -> bytes:
    if not _LITTLE:
        values.byteswap()
    return values.tobytes()


_SHARED_COLUMNS = ("scope_name", "scope_version", "scope_attributes", *RESOURCE_PROMOTED.values(), "resource_attributes")
_ROW_COLUMNS = ("attributes", "events", "links", *_SPAN_COLUMNS)
_FLOAT_COLUMNS = tuple(column for column, kind in SPAN_PROMOTED.values() if kind == "float")
_BOOL_COLUMNS = tuple(column for column, kind in SPAN_PROMOTED.values() if kind == "bool")

#: Text (string and JSON columns) of one request's accepted spans above this -> ValueError.
MAX_TEXT_BYTES = 2**31 - 1


def _bitmap(bits: list[bool]) -> bytes:
    """Arrow bitmap: bit i (LSB first) of byte i // 8 is bits[i]; padding bits 0."""
    if not bits:
        return b""
    return int("".join(["1" if bit else "0" for bit in reversed(bits)]), 2).to_bytes((len(bits) + 7) // 8, "little")


def _validity(values: list) -> bytes | None:
    return _bitmap([value is not None for value in values]) if None in values else None


def _text_columns(columns: dict[str, list[str | None]]) -> dict[str, tuple[bytes, bytes, bytes | None]]:
    """Arrow string buffers (offsets, data, validity) of each column; ValueError above MAX_TEXT_BYTES."""
    encoded = {}
    total = 0
    for name, values in columns.items():
        cache: dict[str, bytes] = {}  # shared values are one str object repeated: encode (and hold) it once
        chunks = [b"" if v is None else cache.get(v) or cache.setdefault(v, v.encode()) for v in values]
        lengths = list(map(len, chunks))
        total += sum(lengths)
        encoded[name] = chunks, lengths
    if total > MAX_TEXT_BYTES:  # checked before joining: a repeated resource must not take unbounded memory
        raise ValueError(
            f"OTLP trace request too large: its spans hold more than {MAX_TEXT_BYTES} bytes of text "
            "(string and JSON columns); send fewer spans per request"
        )
    out = {}
    for name, (chunks, lengths) in encoded.items():
        offsets = array("i", [0])
        offsets.extend(accumulate(lengths))
        out[name] = (_le(offsets), b"".join(chunks), _validity(columns[name]))
    return out


def decode_traces_python(data: bytes) -> dict[str, Any]:
    """Reference decoder (upb backend); see the module docstring for the output."""
    request = _parse(data)
    spans: list = []  # accepted spans
    rows: list[tuple] = []  # per accepted span: _ROW_COLUMNS values
    shared_rows: list[tuple] = []  # per run (a scope's accepted spans): _SHARED_COLUMNS values
    run_lengths = array("i")
    reasons: dict[str, int] = {}
    first_error = None
    for ri, resource_spans in enumerate(request.resource_spans):
        resource = resource_columns(resource_spans.resource.attributes)
        for si, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope
            shared = {"scope_name": scope.name or None, "scope_version": scope.version or None,
                      "scope_attributes": attributes_json(scope.attributes), **resource}  # fmt: skip
            shared_row = tuple(shared[column] for column in _SHARED_COLUMNS)
            run_start = len(spans)
            for i, span in enumerate(scope_spans.spans):
                promoted, attributes = promote(span.attributes, SPAN_PROMOTED)
                row = (attributes, _events_json(span.events), _links_json(span.links))
                rejection = _rejection(span)  # after the JSON: its errors count for rejected spans too
                if rejection is not None:
                    reason, detail = rejection
                    reasons[reason] = reasons.get(reason, 0) + 1
                    if first_error is None:
                        first_error = f"span {i} in resource_spans[{ri}].scope_spans[{si}]: {detail}"
                    continue
                spans.append(span)
                rows.append(row + tuple(promoted.get(column) for column in _SPAN_COLUMNS))
            if len(spans) > run_start:
                shared_rows.append(shared_row)
                run_lengths.append(len(spans) - run_start)
    statuses = [span.status for span in spans]
    ids = _u64_be([span.trace_id for span in spans])
    out: dict[str, Any] = {
        "count": len(spans),
        "rejected": sum(reasons.values()),
        "reject_reasons": reasons,
        "first_error": first_error,
        "trace_id_hi": _le(ids[0::2]),
        "trace_id_lo": _le(ids[1::2]),
        "span_id": _le(_u64_be([span.span_id for span in spans])),
        "parent_span_id": _le(_u64_be([span.parent_span_id or bytes(8) for span in spans])),
        "start_time": _le(array("Q", [span.start_time_unix_nano for span in spans])),
        "duration_ns": _le(array("Q", [span.end_time_unix_nano - span.start_time_unix_nano for span in spans])),
        "kind": bytes([span.kind & 0xFF for span in spans]),
        "status_code": bytes([status.code & 0xFF for status in statuses]),
        "flags": _le(array("I", [span.flags for span in spans])),
        "dropped_attributes_count": _le(array("I", [span.dropped_attributes_count for span in spans])),
        "dropped_events_count": _le(array("I", [span.dropped_events_count for span in spans])),
        "dropped_links_count": _le(array("I", [span.dropped_links_count for span in spans])),
        "shared_runs": _le(run_lengths),
    }
    lists = {
        "name": [span.name or None for span in spans],
        "trace_state": [span.trace_state or None for span in spans],
        "status_message": [status.message or None for status in statuses],
    }
    for columns, values in ((_ROW_COLUMNS, rows), (_SHARED_COLUMNS, shared_rows)):
        transposed = list(zip(*values)) or [()] * len(columns)
        for column, column_values in zip(columns, transposed):
            lists[column] = list(column_values)
    for column in _FLOAT_COLUMNS:  # the double's bits as sent, NaN payloads included; 0.0 for null
        values = lists.pop(column)
        out[column] = (_le(array("d", [0.0 if x is None else x for x in values])), _validity(values))
    for column in _BOOL_COLUMNS:
        values = lists.pop(column)
        out[column] = (_bitmap([bool(x) for x in values]), _validity(values))
    out.update(_text_columns(lists))
    return out


try:
    if os.environ.get("FLEETWATCH_PURE_PYTHON") == "1":
        raise ImportError("FLEETWATCH_PURE_PYTHON=1")
    from collector.decoding._speedups import decode_traces as _decode_traces_c
except ImportError:
    _decode_traces_c = None

#: True when decode_traces runs the C decoder.
SPEEDUPS_AVAILABLE: bool = _decode_traces_c is not None


def decode_traces(data: bytes) -> dict[str, Any]:
    """Decode an ExportTraceServiceRequest into columns (C decoder when available)."""
    if _decode_traces_c is not None:
        return _decode_traces_c(data)
    return decode_traces_python(data)
