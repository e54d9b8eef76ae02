"""Decoded OTLP columns to Arrow tables shaped like the DuckDB storage tables.

Fixed-width columns arrive from the decoder as little-endian ``bytes`` and are
wrapped without copying; string and nullable columns arrive as lists. Every
row is stamped with the gateway's receive time and id::

    table = spans_table(decode_traces(payload), received_at_ns, "gw-01")
    tables = metric_tables(decode_metrics(payload), received_at_ns, "gw-01")
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from collector.schema import arrow_schema

_SPAN_SCHEMA = arrow_schema("span_rows")
_BUFFER_COLUMNS = {
    "trace_id_hi",
    "trace_id_lo",
    "span_id",
    "parent_span_id",
    "start_time",
    "duration_ns",
    "kind",
    "status_code",
    "flags",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
}


def _receipt(n: int, received_at_ns: int, gateway_id: str) -> tuple[pa.Array, pa.Array]:
    return pa.repeat(pa.scalar(received_at_ns, pa.timestamp("ns")), n), pa.repeat(pa.scalar(gateway_id), n)


def spans_table(decoded: dict[str, Any], received_at_ns: int, gateway_id: str) -> pa.Table:
    """Arrow table for ``span_rows`` from :func:`collector.trace_decode.decode_traces` output."""
    n = decoded["count"]
    received, gateway = _receipt(n, received_at_ns, gateway_id)
    arrays = []
    for field in _SPAN_SCHEMA:
        if field.name == "received_at":
            arrays.append(received)
        elif field.name == "gateway_id":
            arrays.append(gateway)
        elif field.name in _BUFFER_COLUMNS:
            arrays.append(pa.Array.from_buffers(field.type, n, [None, pa.py_buffer(decoded[field.name])]))
        else:
            arrays.append(pa.array(decoded[field.name], field.type))
    return pa.Table.from_arrays(arrays, schema=_SPAN_SCHEMA)


def metric_tables(decoded: dict[str, Any], received_at_ns: int, gateway_id: str) -> dict[str, pa.Table]:
    """Arrow tables for ``metric_points`` and ``histogram_points`` (only non-empty ones)."""
    tables = {}
    for table in ("metric_points", "histogram_points"):
        columns = decoded[table]
        n = len(columns["time"])
        if not n:
            continue
        schema = arrow_schema(table)
        received, gateway = _receipt(n, received_at_ns, gateway_id)
        arrays = []
        for field in schema:
            if field.name == "received_at":
                arrays.append(received)
            elif field.name == "gateway_id":
                arrays.append(gateway)
            else:
                arrays.append(pa.array(columns[field.name], field.type))
        tables[table] = pa.Table.from_arrays(arrays, schema=schema)
    return tables
