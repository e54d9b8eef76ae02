"""How much memory a request's rows take once decoded, from one pass over its wire format.

Resource and scope attributes are repeated in every row they apply to (and a
metric's name, unit and description in each of its points), so a small
request can decode to gigabytes: a 1 MiB ``service.name`` over 2,000 spans
is 2 GB of text. The pipeline sizes every request with this before decoding
it, reserves that size in the memory budget and refuses a request whose size
is over its cap, before any column is built::

    size = decoded_size("traces", payload)   # ValueError when the protobuf framing is broken
    if size > cap:
        ...  # 413 / INVALID_ARGUMENT naming the cap

The estimate charges every row (a span, a data point) its own message's
bytes, plus the bytes of each enclosing message outside its row-bearing
children (the resource, the scope, a metric's name...: what the decoder
copies into the row), plus ``ROW_OVERHEAD`` for the fixed-width columns and
offsets. It walks only the framing (tags and lengths of the levels above the
rows), so it costs a few nanoseconds per row in C. JSON escaping can make
text longer than its wire bytes (a control character becomes six bytes);
the decoders' own text limit still holds for that case.

The C decoder (``collector.decoding._speedups.decoded_size``) is used when it is
importable; ``decoded_size_python`` is the reference, and both give the
same number or both raise for every input (tests/test_decoded_size.py).
"""

from __future__ import annotations

import os

__all__ = ["ROW_OVERHEAD", "decoded_size", "decoded_size_python"]

#: bytes charged per row besides its text: fixed-width columns, offsets, validity, receipt
ROW_OVERHEAD = 192

# Per signal, one entry per message level from the request down to the rows'
# parent: the field numbers holding the next level (length-delimited).
_LEVELS = {
    # request.resource_spans -> ResourceSpans.scope_spans -> ScopeSpans.spans
    "traces": ((1,), (2,), (2,)),
    # request.resource_metrics -> .scope_metrics -> .metrics -> gauge / sum /
    # histogram / exponential_histogram / summary -> data_points
    "metrics": ((1,), (2,), (2,), (5, 7, 9, 10, 11), (1,)),
}
# request.resource_logs -> ResourceLogs.scope_logs -> ScopeLogs.log_records:
# the same field numbers as traces, so the C function walks them as traces.
_LEVELS["logs"] = _LEVELS["traces"]
_SIGNAL_CODES = {"traces": 0, "metrics": 1, "logs": 0}  # the C function's signal argument
_MAX_GROUP_DEPTH = 100  # nested groups skipped before the framing counts as broken


class _Broken(ValueError):
    pass


def _varint(buf: bytes, pos: int, end: int, max_bytes: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(max_bytes):
        if pos + i >= end:
            raise _Broken(f"truncated varint at byte {pos}")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + i + 1
        shift += 7
    raise _Broken(f"varint too long at byte {pos}")


def _skip(buf: bytes, pos: int, end: int, wire_type: int, field: int) -> int:
    """Position after one field's value (wire types 0, 1, 2, 5 and groups)."""
    if wire_type == 0:
        return _varint(buf, pos, end, 10)[1]
    if wire_type in (1, 5):
        pos += 8 if wire_type == 1 else 4
    elif wire_type == 2:
        length, pos = _varint(buf, pos, end, 5)
        pos += length
    elif wire_type == 3:
        open_fields = [field]
        while open_fields:
            if len(open_fields) > _MAX_GROUP_DEPTH:
                raise _Broken(f"groups nested more than {_MAX_GROUP_DEPTH} deep")
            tag, pos = _varint(buf, pos, end, 5)
            if tag & 7 == 4:
                if tag >> 3 != open_fields.pop():
                    raise _Broken(f"mismatched end of group at byte {pos}")
            elif tag & 7 == 3:
                open_fields.append(tag >> 3)
            else:
                pos = _skip(buf, pos, end, tag & 7, tag >> 3)
    else:
        raise _Broken(f"invalid wire type {wire_type} at byte {pos}")
    if pos > end:
        raise _Broken(f"field runs past the end of its message at byte {pos}")
    return pos


def _walk(buf: bytes, start: int, end: int, levels: tuple, level: int, inherited: int) -> int:
    if level == len(levels):  # a row
        return (end - start) + inherited + ROW_OVERHEAD
    wanted = levels[level]
    children = []
    child_fields = 0  # bytes of the children's fields, tags and lengths included
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _varint(buf, pos, end, 5)
        field, wire_type = tag >> 3, tag & 7
        if field == 0 or tag >> 32:
            raise _Broken(f"field number {field} at byte {pos}")
        if wire_type == 2 and field in wanted:
            length, pos = _varint(buf, pos, end, 5)
            if pos + length > end:
                raise _Broken(f"field runs past the end of its message at byte {pos}")
            children.append((pos, pos + length))
            pos += length
            child_fields += pos - field_start
        elif wire_type == 4:
            raise _Broken(f"end of group outside a group at byte {pos}")
        else:
            pos = _skip(buf, pos, end, wire_type, field)
    shared = (end - start) - child_fields
    return sum(_walk(buf, a, b, levels, level + 1, inherited + shared) for a, b in children)


def decoded_size_python(signal: str, payload: bytes) -> int:
    """Reference implementation of :func:`decoded_size`."""
    if signal not in _LEVELS:
        raise ValueError(f"unknown signal {signal!r}")
    try:
        return _walk(memoryview(payload).cast("B"), 0, len(payload), _LEVELS[signal], 0, 0)
    except _Broken as exc:
        raise ValueError(f"malformed OTLP {signal} request: {exc}") from None


try:
    if os.environ.get("FLEETWATCH_PURE_PYTHON") == "1":
        raise ImportError("FLEETWATCH_PURE_PYTHON=1")
    from collector.decoding._speedups import decoded_size as _decoded_size_c
except ImportError:
    _decoded_size_c = None


def decoded_size(signal: str, payload: bytes) -> int:
    """Estimated bytes of the request's decoded rows; ValueError when its framing is broken."""
    if _decoded_size_c is not None:
        code = _SIGNAL_CODES.get(signal)
        if code is None:
            raise ValueError(f"unknown signal {signal!r}")
        return _decoded_size_c(payload, code)
    return decoded_size_python(signal, payload)
