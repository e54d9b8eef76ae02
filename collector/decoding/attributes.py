"""OTLP attributes to the collector's columns: promoted data-contract keys and JSON text.

Shared by the trace and metric decoders (the C decoder implements the same
rules; tests/test_trace_decode.py holds both to them)::

    from collector.decoding.attributes import attributes_json, resource_columns, promote, SPAN_PROMOTED
    resource_columns(resource.attributes)   # {"service_name": ..., ..., "resource_attributes": '{"host.name":"a"}'}
    attributes_json(point.attributes)        # '{"key":"value"}' or None when empty
    promote(span.attributes, SPAN_PROMOTED)  # ({"model_name": "m", ...}, JSON of the rest or None)

The rules (last occurrence of a key promoted, JSON encoding of each value
kind) are written out in the module docstring of :mod:`collector.decoding.trace_decode`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

#: Arrays / kvlists nested deeper than this in one attribute value -> ValueError.
MAX_VALUE_DEPTH = 32

#: Attribute values under this many arrays/kvlists are checked for known fields with a wrong wire
#: type as they are rendered: upb's DiscardUnknownFields, by which the trace decoder finds such
#: fields everywhere else, stops 64 messages below the request, and an AnyValue under N arrays
#: sits 2N + 4 to 2N + 6 messages deep (3N + 4 to 3N + 6 under kvlists). The C decoder rejects
#: them at any depth. Values nested this deep are rare, so the extra walk costs nothing in practice.
WIRE_CHECK_LEVEL = 16

#: resource attribute key -> column (string_value only)
RESOURCE_PROMOTED = {
    "service.name": "service_name",
    "device.id": "device_id",
    "fleet.site": "site",
    "fleet.region": "region",
    "device.class": "device_class",
    "device.firmware.version": "firmware_version",
}
#: span attribute key -> (column, value kind)
SPAN_PROMOTED = {
    "ml.model.name": ("model_name", "str"),
    "ml.model.version": ("model_version", "str"),
    "ml.inference.mode": ("inference_mode", "str"),
    "ml.request.id": ("request_id", "str"),
    "ml.prediction.label": ("prediction_label", "str"),
    "ml.label": ("label", "str"),
    "ml.prediction.score": ("prediction_score", "float"),
    "ml.prediction.value": ("prediction_value", "float"),
    "ml.label.value": ("label_value", "float"),
    "ml.inference.cold_start": ("cold_start", "bool"),
}
_RESOURCE_TABLE = {key: (column, "str") for key, column in RESOURCE_PROMOTED.items()}

#: JSON string literal of a str, as json.dumps(s, ensure_ascii=False) writes it (the C accelerated encoder)
json_string = json.encoder.encode_basestring


def _double(x: float) -> str:
    if x != x:
        return '"NaN"'
    if x in (float("inf"), float("-inf")):
        return '"Infinity"' if x > 0 else '"-Infinity"'
    return repr(x)


def check_wire_types(message, path: str) -> None:
    """ValueError if upb kept a known field number of ``message`` or below as unknown (wrong wire type)."""
    by_number = message.DESCRIPTOR.fields_by_number
    for field in UnknownFieldSet(message):
        known = by_number.get(field.field_number)
        if known is not None:
            raise ValueError(
                f"malformed OTLP request: {path}.{known.name} (field {field.field_number}) "
                f"has wire type {field.wire_type}"
            )
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.is_repeated:
            for i, item in enumerate(value):
                check_wire_types(item, f"{path}.{descriptor.name}[{i}]")
        else:
            check_wire_types(value, f"{path}.{descriptor.name}")


def _value_json(value, level: int) -> str:
    """JSON text of one AnyValue; ``level`` = arrays/kvlists around it."""
    if level == WIRE_CHECK_LEVEL:
        check_wire_types(value, f"attribute value under {level} arrays/kvlists")
    which = value.WhichOneof("value")
    if which == "string_value":
        return json_string(value.string_value)
    if which == "double_value":
        return _double(value.double_value)
    if which == "int_value":
        return str(value.int_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "bytes_value":
        return '"' + base64.b64encode(value.bytes_value).decode("ascii") + '"'
    if which == "array_value" or which == "kvlist_value":
        if level >= MAX_VALUE_DEPTH:
            raise ValueError(f"attribute value nested more than {MAX_VALUE_DEPTH} arrays/kvlists deep")
        if which == "array_value":
            return "[" + ",".join([_value_json(v, level + 1) for v in value.array_value.values]) + "]"
        return "{" + ",".join([json_string(kv.key) + ":" + _value_json(kv.value, level + 1) for kv in value.kvlist_value.values]) + "}"
    return "null"  # no value, or string_value_strindex


def any_value_json(value) -> str:
    """JSON text of one AnyValue (a log record's non-string body), by the attribute rules."""
    return _value_json(value, 0)


def attributes_json(attributes: Sequence[KeyValue]) -> str | None:
    """Compact JSON object of repeated KeyValue in wire order, None when empty."""
    if not len(attributes):
        return None
    return "{" + ",".join([json_string(kv.key) + ":" + _value_json(kv.value, 0) for kv in attributes]) + "}"


def promote(attributes, table: dict) -> tuple[dict[str, Any], str | None]:
    """Split attributes into promoted columns and the JSON of the rest."""
    items = list(attributes)
    keys = [kv.key for kv in items]
    last = {key: i for i, key in enumerate(keys) if key in table}  # the last occurrence wins
    promoted: dict[str, Any] = {}
    for key, i in last.items():
        column, kind = table[key]
        value = items[i].value
        which = value.WhichOneof("value")
        if kind == "str":
            if which != "string_value":
                continue
            promoted[column] = value.string_value
        elif kind == "float":
            if which == "double_value":
                promoted[column] = value.double_value
            elif which == "int_value":
                promoted[column] = float(value.int_value)
            else:
                continue
        elif which == "bool_value":
            promoted[column] = value.bool_value
        else:
            continue
        items[i] = None
    parts = [json_string(keys[i]) + ":" + _value_json(kv.value, 0) for i, kv in enumerate(items) if kv is not None]
    return promoted, ("{" + ",".join(parts) + "}" if parts else None)


def resource_columns(attributes: Sequence[KeyValue]) -> dict[str, Any]:
    """The six promoted resource columns plus ``resource_attributes`` (JSON of the rest)."""
    promoted, rest = promote(attributes, _RESOURCE_TABLE)
    out = {column: promoted.get(column) for column in RESOURCE_PROMOTED.values()}
    out["resource_attributes"] = rest
    return out
