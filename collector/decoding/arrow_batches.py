"""Decoded OTLP columns to Arrow tables shaped like the DuckDB storage tables.

Requests are decoded one by one, but Arrow arrays are built once per write
batch: a builder collects the decoded columns of many requests and turns them
into one table when the batch is written::

    builder = TableBuilder("span_rows")
    builder.add(decode_traces(payload), rows, received_at_ns, "gw-01")   # per request
    table = builder.build()                                              # per batch

A builder made with ``shift_ns`` moves every timestamp column of its table
(event times and the receive time) by that many nanoseconds, nulls staying
null: a recorded history replayed as if it had happened later (the demo's
sample, ``fleetwatch ingest --shift-to``).

Span columns arrive from the trace decoder as Arrow buffers (see
:mod:`collector.decoding.trace_decode`): ``add`` only keeps each request's decoded
dict (no per-request Arrow work, so a request with two spans stays cheap) and
``build`` concatenates each column's buffers once per batch, one C call per
column (``collector.decoding._speedups.concat_column``), and wraps the result with
``pa.Array.from_buffers`` without a further copy; no Python object per value
is made. Without the extension each request's buffers are wrapped and joined
with ``pa.concat_arrays``, which gives the same table. A text column holding
more than 2**31 - 1 bytes in one batch becomes a chunked column (int32
offsets). The resource and scope columns (``SHARED_COLUMNS``) arrive with
one value per run of spans and become dictionary arrays: an int32 index per
row and each run's value once, so a resource's text is never copied into
every row (DuckDB reads them as plain VARCHAR columns). Metric columns
arrive as lists and are converted with ``pa.array``; their resource and
scope columns also come one value per run and become dictionary arrays. Every row is stamped with the gateway's receive time and id.
"""

from __future__ import annotations

import os
import sys
from array import array
from operator import itemgetter
from typing import Any

import pyarrow as pa

from collector.store.schema import arrow_schema

try:
    if os.environ.get("FLEETWATCH_PURE_PYTHON") == "1":
        raise ImportError("FLEETWATCH_PURE_PYTHON=1")
    from collector.decoding._speedups import concat_column as _concat_column
except ImportError:
    _concat_column = None

#: span_rows columns that the trace decoder returns as packed little-endian fixed-width values
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
#: span_rows columns that the trace decoder returns with one value per run of spans
SHARED_COLUMNS = frozenset(
    {
        "scope_name",
        "scope_version",
        "scope_attributes",
        "resource_attributes",
        "service_name",
        "device_id",
        "site",
        "region",
        "device_class",
        "firmware_version",
    }
)
#: tables whose decoded lists hold the SHARED_COLUMNS one value per run, with "shared_runs"
_LIST_RUN_TABLES = frozenset({"metric_points", "histogram_points"})
_RECEIPT = ("received_at", "gateway_id")
_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
#: text bytes one Arrow string array can hold (int32 offsets)
_MAX_ARRAY_TEXT = 2**31 - 1


def _buffer(data: bytes | None) -> pa.Buffer | None:
    return None if data is None else pa.py_buffer(data)


def wrap_column(field_type: pa.DataType, rows: int, buffers: tuple) -> pa.Array:
    """Arrow array over a decoded nullable span column's buffers (no copy)."""
    if pa.types.is_string(field_type):
        offsets, data, validity = buffers
        return pa.Array.from_buffers(field_type, rows, [_buffer(validity), pa.py_buffer(offsets), pa.py_buffer(data)])
    values, validity = buffers
    return pa.Array.from_buffers(field_type, rows, [_buffer(validity), pa.py_buffer(values)])


def _kind(field_type: pa.DataType) -> int:
    """concat_column's kind: 0 text, 1 float64, 2 bool."""
    return 0 if pa.types.is_string(field_type) else 2 if pa.types.is_boolean(field_type) else 1


def _concat(field_type: pa.DataType, chunks: list[tuple], counts: list[int]) -> pa.Array:
    """One array of the requests' decoded buffers (OverflowError past _MAX_ARRAY_TEXT bytes of text)."""
    if _concat_column is None:  # no C extension: wrap each request's buffers, let Arrow concatenate
        if pa.types.is_string(field_type) and sum(len(chunk[1]) for chunk in chunks) > _MAX_ARRAY_TEXT:
            raise OverflowError("more text than one array holds")
        return pa.concat_arrays([wrap_column(field_type, n, chunk) for chunk, n in zip(chunks, counts)])
    return wrap_column(field_type, sum(counts), _concat_column(_kind(field_type), chunks, counts, _MAX_ARRAY_TEXT))


def _runs(sizes: list[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) ranges whose sizes add up to at most ``limit`` (or one item each)."""
    runs, start, total = [], 0, 0
    for i, size in enumerate(sizes):
        if total + size > limit and i > start:
            runs.append((start, i))
            start, total = i, 0
        total += size
    runs.append((start, len(sizes)))
    return runs


def _column(field_type: pa.DataType, chunks: list[tuple], counts: list[int]) -> pa.Array | pa.ChunkedArray:
    """One column of the requests' decoded buffers; chunked when its text exceeds one array."""
    try:
        return _concat(field_type, chunks, counts)
    except OverflowError:  # more text than int32 offsets address: one array per run
        pass
    runs = _runs([len(chunk[1]) for chunk in chunks], _MAX_ARRAY_TEXT)
    arrays = [
        wrap_column(field_type, counts[a], chunks[a]) if b == a + 1 else _concat(field_type, chunks[a:b], counts[a:b])
        for a, b in runs
    ]
    return arrays[0] if len(arrays) == 1 else pa.chunked_array(arrays, field_type)


def _append_run_numbers(lengths, indices: array, first_run: int = 0) -> int:
    """Append to ``indices`` each row's run number for runs of ``lengths`` rows; return the next run number."""
    run = first_run
    for length in lengths:
        indices.extend(array("i", [run]) * length)
        run += 1
    return run


def _dictionary(values: pa.Array, indices: array) -> pa.DictionaryArray:
    """Rows of ``values`` picked by ``indices``; a row whose value is null is null."""
    rows = len(indices)
    index_buffer = pa.py_buffer(indices)
    validity = None
    if values.null_count:
        import pyarrow.compute as pc  # only here: most batches have no null resource value

        validity = pc.take(values.is_valid(), pa.Array.from_buffers(pa.int32(), rows, [None, index_buffer]))
        validity = validity.buffers()[1]
    return pa.DictionaryArray.from_arrays(pa.Array.from_buffers(pa.int32(), rows, [validity, index_buffer]), values)


def _shifted(column: pa.Array | pa.ChunkedArray, shift_ns: int) -> pa.Array | pa.ChunkedArray:
    """``column`` moved by ``shift_ns`` when it holds timestamps; any other column as it is."""
    if not pa.types.is_timestamp(column.type):
        return column
    import pyarrow.compute as pc  # only for shifted loads

    unit = column.type.unit
    return pc.add_checked(column, pa.scalar(shift_ns // _NS_PER_UNIT[unit], pa.duration(unit)))


class TableBuilder:
    """Accumulates decoded columns for one storage table; see the module docstring."""

    def __init__(self, table: str, shift_ns: int = 0) -> None:
        self.table = table
        self.schema = arrow_schema(table)
        self.shift_ns = shift_ns
        self.rows = 0
        self._spans = table == "span_rows"  # columns arrive as the trace decoder's buffers
        self._decoded: list[dict[str, Any]] = []  # span_rows: each request's decoded columns
        self._counts: list[int] = []  # span_rows: rows per request
        self._lists: dict[str, list[Any]] = {}  # other tables: column values
        if not self._spans:
            self._lists = {field.name: [] for field in self.schema if field.name not in _RECEIPT}
        # metric tables: each row's run (SHARED_COLUMNS hold one value per run)
        self._list_runs: array | None = array("i") if table in _LIST_RUN_TABLES else None
        self._received = array("q")
        self._gateways: list[list] = []  # [gateway_id, rows] runs
        self._all_indices: array | None = None  # in build(): the run of every row, shared by the columns

    def add(self, columns: dict[str, Any], rows: int, received_at_ns: int, gateway_id: str) -> None:
        """Append ``rows`` decoded rows (span_rows: the trace decoder's buffers; metric tables: lists)."""
        if not rows:
            return
        if self._spans:  # kept as decoded: no per-request work, columns are joined in build()
            self._decoded.append(columns)
            self._counts.append(rows)
        else:
            for name, values in self._lists.items():
                values.extend(columns[name])
            if self._list_runs is not None:  # without runs (lists per row), every row is its own run
                start = self._list_runs[-1] + 1 if self._list_runs else 0
                _append_run_numbers(columns.get("shared_runs") or [1] * rows, self._list_runs, start)
        self._received.extend(array("q", [received_at_ns]) * rows)
        if self._gateways and self._gateways[-1][0] == gateway_id:
            self._gateways[-1][1] += rows
        else:
            self._gateways.append([gateway_id, rows])
        self.rows += rows

    def build(self) -> pa.Table:
        """The collected rows as one table; a builder builds once.

        The collected columns are let go as soon as the table exists, so a
        write batch is not held twice in memory while it is committed.
        """
        arrays = []
        self._all_indices = None
        for field in self.schema:
            name = field.name
            if name == "received_at":
                arrays.append(pa.Array.from_buffers(field.type, self.rows, [None, pa.py_buffer(self._received)]))
            elif name == "gateway_id":
                runs = [pa.repeat(pa.scalar(gateway, field.type), rows) for gateway, rows in self._gateways]
                arrays.append(pa.concat_arrays(runs) if runs else pa.array([], field.type))
            elif not self._spans:
                values = pa.array(self._lists[name], field.type)
                if self._list_runs is not None and name in SHARED_COLUMNS:
                    values = _dictionary(values, self._list_runs)
                arrays.append(values)
            elif not self._decoded:
                arrays.append(pa.array([], field.type))
            elif name in SHARED_COLUMNS:
                arrays.append(self._shared_column(field.type, name))
            elif name in BUFFER_COLUMNS:
                data = b"".join(map(itemgetter(name), self._decoded))
                arrays.append(pa.Array.from_buffers(field.type, self.rows, [None, pa.py_buffer(data)]))
            else:
                arrays.append(_column(field.type, list(map(itemgetter(name), self._decoded)), self._counts))
        self._decoded, self._counts, self._lists, self._gateways = [], [], {}, []
        self._received = array("q")
        self._list_runs = None
        if self.shift_ns:
            arrays = [_shifted(column, self.shift_ns) for column in arrays]
        schema = pa.schema([field.with_type(column.type) for field, column in zip(self.schema, arrays)])
        return pa.Table.from_arrays(arrays, schema=schema)

    def _span_run_indices(self, first: int, stop: int) -> array:
        """int32 per row of requests [first, stop): the number of its run, counted from the first request's."""
        indices = array("i")
        run = 0
        for decoded in self._decoded[first:stop]:
            lengths = array("i", decoded["shared_runs"])
            if sys.byteorder != "little":
                lengths.byteswap()
            run = _append_run_numbers(lengths, indices, run)
        return indices

    def _shared_column(self, field_type: pa.DataType, name: str) -> pa.DictionaryArray | pa.ChunkedArray:
        """A resource or scope column as dictionary arrays; chunked when its text exceeds one array."""
        chunks = [decoded[name] for decoded in self._decoded]
        runs = [len(decoded["shared_runs"]) // 4 for decoded in self._decoded]
        sizes = [len(chunk[1]) for chunk in chunks]
        groups = _runs(sizes, _MAX_ARRAY_TEXT) if sum(sizes) > _MAX_ARRAY_TEXT else [(0, len(chunks))]
        if groups == [(0, len(chunks))]:  # the usual case: one set of indices serves every shared column
            if self._all_indices is None:
                self._all_indices = self._span_run_indices(0, len(chunks))
            return _dictionary(_concat(field_type, chunks, runs), self._all_indices)
        return pa.chunked_array(
            [_dictionary(_concat(field_type, chunks[a:b], runs[a:b]), self._span_run_indices(a, b)) for a, b in groups]
        )
