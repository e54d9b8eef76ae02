"""Decoded OTLP columns to Arrow tables shaped like the DuckDB storage tables.

Requests are decoded one by one, but Arrow arrays are built once per write
batch: a builder collects the decoded columns of many requests (list extends
and byte-buffer appends, no per-request Arrow work) and turns them into one
table when the batch is written. That keeps the cost of a request with two
spans close to the cost of its two spans::

    builder = TableBuilder("span_rows")
    builder.add(decode_traces(payload), received_at_ns, "gw-01")   # per request
    table = builder.build()                                        # per batch

Fixed-width span columns arrive from the decoder as little-endian ``bytes``
and are wrapped without conversion. Every row is stamped with the gateway's
receive time and id.
"""

from __future__ import annotations

from array import array
from typing import Any

import pyarrow as pa

from collector.schema import arrow_schema

#: span_rows columns that the trace decoder returns as packed little-endian buffers
BUFFER_COLUMNS = frozenset(
    {
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
)
_RECEIPT = ("received_at", "gateway_id")


class TableBuilder:
    """Accumulates decoded columns for one storage table; see the module docstring."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.schema = arrow_schema(table)
        self.rows = 0
        self._buffers: dict[str, list[bytes]] = {}
        self._lists: dict[str, list[Any]] = {}
        for field in self.schema:
            if field.name in _RECEIPT:
                continue
            if table == "span_rows" and field.name in BUFFER_COLUMNS:
                self._buffers[field.name] = []
            else:
                self._lists[field.name] = []
        self._received = array("q")
        self._gateways: list[str] = []

    def add(self, columns: dict[str, Any], rows: int, received_at_ns: int, gateway_id: str) -> None:
        """Append ``rows`` decoded rows (column name → list, or packed bytes for span buffers)."""
        if not rows:
            return
        for name, chunks in self._buffers.items():
            chunks.append(columns[name])
        for name, values in self._lists.items():
            values.extend(columns[name])
        self._received.extend(array("q", [received_at_ns]) * rows)
        self._gateways.extend([gateway_id] * rows)
        self.rows += rows

    def build(self) -> pa.Table:
        arrays = []
        for field in self.schema:
            name = field.name
            if name == "received_at":
                arrays.append(pa.Array.from_buffers(field.type, self.rows, [None, pa.py_buffer(self._received)]))
            elif name == "gateway_id":
                arrays.append(pa.array(self._gateways, field.type))
            elif name in self._buffers:
                data = b"".join(self._buffers[name])
                arrays.append(pa.Array.from_buffers(field.type, self.rows, [None, pa.py_buffer(data)]))
            else:
                arrays.append(pa.array(self._lists[name], field.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)

