"""The DuckDB tables the collector writes, defined once for DDL and Arrow.

Users query ``spans``, ``metric_points``, ``histogram_points`` and
``log_records`` (see docs/schema.md). ``spans`` is a view over ``span_rows``,
which stores ids as unsigned integers and the end time as a duration: random
hex strings are the costliest thing to store, and ids read back as lowercase
hex through the view. ``log_records`` is a view over ``log_rows`` in the same
way.
``ingest_log`` records every committed request's digest, so that a request a
client re-sends is recognised and not written twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    arrow_type: pa.DataType


def _col(name: str, sql_type: str) -> Column:
    arrow = {
        "UBIGINT": pa.uint64(),
        "BIGINT": pa.int64(),
        "UINTEGER": pa.uint32(),
        "INTEGER": pa.int32(),
        "UTINYINT": pa.uint8(),
        "DOUBLE": pa.float64(),
        "BOOLEAN": pa.bool_(),
        "VARCHAR": pa.string(),
        # JSON text is stored as VARCHAR: a JSON column re-parses every value
        # on insert (measured: insert speed halves), and DuckDB's JSON
        # functions and operators take VARCHAR just the same.
        "JSON": pa.string(),
        "TIMESTAMP_NS": pa.timestamp("ns"),
        "DOUBLE[]": pa.list_(pa.float64()),
        "UBIGINT[]": pa.list_(pa.uint64()),
    }[sql_type]
    return Column(name, sql_type, arrow)


RESOURCE_COLUMNS = [
    _col("service_name", "VARCHAR"),
    _col("device_id", "VARCHAR"),
    _col("site", "VARCHAR"),
    _col("region", "VARCHAR"),
    _col("device_class", "VARCHAR"),
    _col("firmware_version", "VARCHAR"),
    _col("resource_attributes", "JSON"),
    _col("scope_name", "VARCHAR"),
    _col("scope_version", "VARCHAR"),
    _col("scope_attributes", "JSON"),
]

RECEIPT_COLUMNS = [
    _col("received_at", "TIMESTAMP_NS"),
    _col("gateway_id", "VARCHAR"),
]

SPAN_ROW_COLUMNS = [
    _col("trace_id_hi", "UBIGINT"),
    _col("trace_id_lo", "UBIGINT"),
    _col("span_id", "UBIGINT"),
    _col("parent_span_id", "UBIGINT"),
    _col("name", "VARCHAR"),
    _col("kind", "UTINYINT"),
    _col("start_time", "TIMESTAMP_NS"),
    _col("duration_ns", "BIGINT"),
    _col("status_code", "UTINYINT"),
    _col("status_message", "VARCHAR"),
    _col("trace_state", "VARCHAR"),
    _col("flags", "UINTEGER"),
    *RESOURCE_COLUMNS[:6],
    _col("model_name", "VARCHAR"),
    _col("model_version", "VARCHAR"),
    _col("inference_mode", "VARCHAR"),
    _col("request_id", "VARCHAR"),
    _col("prediction_label", "VARCHAR"),
    _col("prediction_score", "DOUBLE"),
    _col("prediction_value", "DOUBLE"),
    _col("cold_start", "BOOLEAN"),
    _col("label", "VARCHAR"),
    _col("label_value", "DOUBLE"),
    _col("attributes", "JSON"),
    _col("events", "JSON"),
    _col("links", "JSON"),
    _col("dropped_attributes_count", "UINTEGER"),
    _col("dropped_events_count", "UINTEGER"),
    _col("dropped_links_count", "UINTEGER"),
    *RESOURCE_COLUMNS[6:],
    *RECEIPT_COLUMNS,
]

_POINT_COMMON = [
    _col("metric_name", "VARCHAR"),
    _col("description", "VARCHAR"),
    _col("unit", "VARCHAR"),
    _col("time", "TIMESTAMP_NS"),
    _col("start_time", "TIMESTAMP_NS"),
    _col("aggregation_temporality", "VARCHAR"),
    _col("flags", "UINTEGER"),
    *RESOURCE_COLUMNS[:6],
    _col("attributes", "JSON"),
    _col("exemplars", "JSON"),
    *RESOURCE_COLUMNS[6:],
    *RECEIPT_COLUMNS,
]

METRIC_POINT_COLUMNS = [
    _col("metric_type", "VARCHAR"),
    _col("is_monotonic", "BOOLEAN"),
    _col("value", "DOUBLE"),
    _col("int_value", "BIGINT"),
    *_POINT_COMMON,
]

HISTOGRAM_POINT_COLUMNS = [
    _col("histogram_type", "VARCHAR"),
    _col("count", "UBIGINT"),
    _col("sum", "DOUBLE"),
    _col("min", "DOUBLE"),
    _col("max", "DOUBLE"),
    _col("explicit_bounds", "DOUBLE[]"),
    _col("bucket_counts", "UBIGINT[]"),
    _col("scale", "INTEGER"),
    _col("zero_count", "UBIGINT"),
    _col("zero_threshold", "DOUBLE"),
    _col("positive_offset", "INTEGER"),
    _col("positive_bucket_counts", "UBIGINT[]"),
    _col("negative_offset", "INTEGER"),
    _col("negative_bucket_counts", "UBIGINT[]"),
    *_POINT_COMMON,
]

LOG_ROW_COLUMNS = [
    _col("time", "TIMESTAMP_NS"),
    _col("observed_time", "TIMESTAMP_NS"),
    _col("severity_number", "INTEGER"),
    _col("severity_text", "VARCHAR"),
    _col("body", "VARCHAR"),
    _col("trace_id_hi", "UBIGINT"),
    _col("trace_id_lo", "UBIGINT"),
    _col("span_id", "UBIGINT"),
    _col("event_name", "VARCHAR"),
    _col("flags", "UINTEGER"),
    *RESOURCE_COLUMNS[:6],
    _col("attributes", "JSON"),
    _col("dropped_attributes_count", "UINTEGER"),
    *RESOURCE_COLUMNS[6:],
    *RECEIPT_COLUMNS,
]

INGEST_LOG_COLUMNS = [
    _col("request_digest", "VARCHAR"),
    _col("signal", "VARCHAR"),
    _col("items", "UBIGINT"),
    _col("received_at", "TIMESTAMP_NS"),
    _col("gateway_id", "VARCHAR"),
    # The dedup window runs on this clock, not on received_at: a backfill's
    # receive times may lie far in the past.
    _col("written_at", "TIMESTAMP_NS"),
]

#: storage table name -> columns, in insertion order
TABLES: dict[str, list[Column]] = {
    "span_rows": SPAN_ROW_COLUMNS,
    "metric_points": METRIC_POINT_COLUMNS,
    "histogram_points": HISTOGRAM_POINT_COLUMNS,
    "log_rows": LOG_ROW_COLUMNS,
    "ingest_log": INGEST_LOG_COLUMNS,
}

NOT_NULL = {
    "span_rows": {"trace_id_hi", "trace_id_lo", "span_id", "parent_span_id", "start_time", "duration_ns", "received_at"},
    "metric_points": {"metric_name", "time", "received_at"},
    "histogram_points": {"metric_name", "time", "received_at"},
    "log_rows": {"received_at"},
    "ingest_log": {"request_digest", "signal", "received_at", "written_at"},
}


#: Columns the writer adds at insert time, after the decoded ones: the device's
#: estimated clock offset (device minus gateway, ns) when it is skewed.
DERIVED_COLUMNS = {
    "span_rows": [_col("clock_offset_ns", "BIGINT")],
    "metric_points": [_col("clock_offset_ns", "BIGINT")],
    "histogram_points": [_col("clock_offset_ns", "BIGINT")],
    "log_rows": [_col("clock_offset_ns", "BIGINT")],
}

DEVICES_TABLE = """
CREATE TABLE IF NOT EXISTS devices (
    device_id VARCHAR PRIMARY KEY,
    last_seen TIMESTAMP_NS,        -- gateway receive time of the newest request
    last_event_time TIMESTAMP_NS,  -- newest event time, device clock
    min_lag_ns BIGINT,             -- smallest receive-minus-event lag over recent requests
    clock_offset_ns BIGINT,        -- device clock minus gateway clock, NULL when within the threshold
    clock_skewed BOOLEAN,
    requests UBIGINT,
    updated_at TIMESTAMP_NS
)
"""

# A write batch's head committed ahead of its tail (see collector.store.checkpoints);
# empty except between the two commits.
BATCH_HEADS_TABLE = """
CREATE TABLE IF NOT EXISTS batch_heads (
    table_name VARCHAR NOT NULL,  -- the table the head was appended to
    row_count BIGINT NOT NULL,    -- rows in the head: the last rows of that table until the tail commits
    written_at TIMESTAMP_NS NOT NULL
)
"""


def arrow_schema(table: str) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow_type, c.name not in NOT_NULL[table]) for c in TABLES[table]])


def corrected_time(column: str) -> str:
    """SQL for a device time corrected by the row's clock offset (NULL offset: the clock looked right).

    The views, the ingest marks and the analytics jobs all window by this one expression.
    """
    return (f"CASE WHEN clock_offset_ns IS NULL THEN {column} "
            f"ELSE make_timestamp_ns(epoch_ns({column}) - clock_offset_ns) END")


def _hex64(column: str) -> str:
    return f"lpad(lower(to_hex({column})), 16, '0')"


_SPAN_KINDS = ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"]

SPANS_VIEW = f"""
CREATE OR REPLACE VIEW spans AS
SELECT
    {_hex64('trace_id_hi')} || {_hex64('trace_id_lo')} AS trace_id,
    {_hex64('span_id')} AS span_id,
    CASE WHEN parent_span_id = 0 THEN NULL ELSE {_hex64('parent_span_id')} END AS parent_span_id,
    name,
    ({_SPAN_KINDS!r})[kind + 1] AS kind,
    start_time,
    make_timestamp_ns(epoch_ns(start_time) + duration_ns) AS end_time,
    duration_ns,
    duration_ns / 1e6 AS duration_ms,
    (['UNSET', 'OK', 'ERROR'])[status_code + 1] AS status_code,
    status_message,
    service_name, device_id, site, region, device_class, firmware_version,
    model_name, model_version, inference_mode, request_id,
    prediction_label, prediction_score, prediction_value, cold_start, label, label_value,
    attributes, resource_attributes, scope_name, scope_version, scope_attributes,
    events, links, trace_state, flags,
    dropped_attributes_count, dropped_events_count, dropped_links_count,
    received_at, gateway_id,
    clock_offset_ns,
    {corrected_time('start_time')} AS corrected_start_time,
    CASE WHEN clock_offset_ns IS NULL THEN make_timestamp_ns(epoch_ns(start_time) + duration_ns)
         ELSE make_timestamp_ns(epoch_ns(start_time) + duration_ns - clock_offset_ns) END AS corrected_end_time,
    trace_id_hi, trace_id_lo, span_id AS span_id_int
FROM span_rows
"""


LOG_RECORDS_VIEW = f"""
CREATE OR REPLACE VIEW log_records AS
SELECT
    time, observed_time,
    severity_number, severity_text, body,
    CASE WHEN trace_id_hi IS NULL THEN NULL
         ELSE {_hex64('trace_id_hi')} || {_hex64('trace_id_lo')} END AS trace_id,
    CASE WHEN span_id IS NULL THEN NULL ELSE {_hex64('span_id')} END AS span_id,
    event_name, flags,
    service_name, device_id, site, region, device_class, firmware_version,
    attributes, resource_attributes, scope_name, scope_version, scope_attributes,
    dropped_attributes_count,
    received_at, gateway_id,
    clock_offset_ns,
    {corrected_time('time')} AS corrected_time,
    trace_id_hi, trace_id_lo, span_id AS span_id_int
FROM log_rows
"""


def _storage_type(sql_type: str) -> str:
    return "VARCHAR" if sql_type == "JSON" else sql_type


def ddl() -> list[str]:
    """Statements that create every table and view; safe to run on an existing file."""
    statements = [
        "CREATE TABLE IF NOT EXISTS fleetwatch_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    ]
    for table, columns in TABLES.items():
        defs = ", ".join(
            f"{c.name} {_storage_type(c.sql_type)}{' NOT NULL' if c.name in NOT_NULL[table] else ''}"
            for c in columns
        )
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({defs})")
        for column in DERIVED_COLUMNS.get(table, []):
            statements.append(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column.name} {column.sql_type}")
    statements.append(DEVICES_TABLE)
    statements.append(BATCH_HEADS_TABLE)
    statements.append(SPANS_VIEW)
    statements.append(LOG_RECORDS_VIEW)
    statements.append(
        "INSERT INTO fleetwatch_meta VALUES ('schema_version', "
        f"'{SCHEMA_VERSION}') ON CONFLICT (key) DO NOTHING"
    )
    return statements
