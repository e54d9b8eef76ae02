"""Golden-signal rollups: the first analytics jobs, and the tables dashboards read.

Three window jobs, all computed in DuckDB SQL from the raw spans of
inferences (spans named ``inference``), windowed by skew-corrected event
time:

``rollup_minute`` / ``rollup_hour``
    per window and per model x model version x inference mode x site x
    region x device class x firmware: ``inferences``, ``errors``,
    ``cold_starts``, ``latency_sum_ns``, ``latency_max_ns`` and the latency
    histogram ``lat_b00 .. lat_b88`` on the fixed buckets of
    :mod:`analytics.latency_buckets`. Every column is a sum or a max, so
    rollups of any windows merge exactly; hours come from raw spans too,
    so either table can be checked against a recompute.
``device_hour``
    per device and hour: inferences, errors, cold starts, the newest event
    and receive times, firmware, site, and the clock offset in force.

Sums are integers (``latency_sum_ns``), never floating point, so a
recompute gives identical rows whatever order DuckDB adds them in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from analytics.jobs.framework import JobOutput, Read, WindowJob
from analytics.latency_buckets import COLUMNS as LATENCY_COLUMNS
from analytics.latency_buckets import bucket_sql
from collector.store.marks import raw_time_bounds
from collector.store.schema import corrected_time

GROUP_COLUMNS = ("model_name", "model_version", "inference_mode", "site", "region", "device_class",
                 "firmware_version")

_CORRECTED = corrected_time("start_time")


def _golden_ddl(table: str) -> str:
    groups = ", ".join(f"{c} VARCHAR" for c in GROUP_COLUMNS)
    buckets = ", ".join(f"{c} UBIGINT NOT NULL" for c in LATENCY_COLUMNS)
    return (f"CREATE TABLE IF NOT EXISTS {table} (window_start TIMESTAMP NOT NULL, {groups}, "
            "inferences UBIGINT NOT NULL, errors UBIGINT NOT NULL, cold_starts UBIGINT NOT NULL, "
            f"latency_sum_ns HUGEINT NOT NULL, latency_max_ns BIGINT, {buckets})")


DEVICE_HOUR_DDL = """
CREATE TABLE IF NOT EXISTS device_hour (
    window_start TIMESTAMP NOT NULL,
    device_id VARCHAR NOT NULL,
    site VARCHAR, region VARCHAR, device_class VARCHAR, firmware_version VARCHAR,
    inferences UBIGINT NOT NULL, errors UBIGINT NOT NULL, cold_starts UBIGINT NOT NULL,
    last_event_time TIMESTAMP_NS, last_received_at TIMESTAMP_NS, clock_offset_ns BIGINT,
    model_versions VARCHAR[]   -- sorted 'model:version' pairs the device ran in the hour
)
"""

ROLLUP_DDL = [_golden_ddl("rollup_minute"), _golden_ddl("rollup_hour"), DEVICE_HOUR_DDL]


def inference_rows_sql(window: str, span_names: tuple[str, ...] = ("inference",)) -> str:
    """Spans named ``span_names`` in [$start, $end) of corrected start time, pruned first on the raw start time.

    Parameters ``$start``/``$end`` (the windows) and ``$lo``/``$hi`` (from
    :func:`raw_span_bounds`); adds ``event_time`` and ``window_start``.
    """
    names = ", ".join("'" + n.replace("'", "''") + "'" for n in span_names)
    return f"""
        SELECT *, {_CORRECTED} AS event_time,
               date_trunc('{window}', {_CORRECTED})::TIMESTAMP AS window_start
        FROM span_rows
        WHERE name IN ({names})
          AND start_time >= make_timestamp_ns($lo) AND start_time <= make_timestamp_ns($hi)
          AND {_CORRECTED} >= $start AND {_CORRECTED} < $end
    """


def golden_signals_sql(window: str) -> str:
    groups = ", ".join(GROUP_COLUMNS)
    pivot = ", ".join(f"coalesce(sum(n) FILTER (WHERE bucket = {i}), 0)::UBIGINT AS {c}"
                      for i, c in enumerate(LATENCY_COLUMNS))
    return f"""
        WITH rows AS ({inference_rows_sql(window)}),
        by_bucket AS (
            SELECT window_start, {groups}, {bucket_sql('duration_ns / 1e6')} AS bucket,
                   count(*) AS n, count(*) FILTER (WHERE status_code = 2) AS errors,
                   count(*) FILTER (WHERE cold_start) AS cold_starts,
                   sum(duration_ns)::HUGEINT AS latency_sum_ns, max(duration_ns) AS latency_max_ns
            FROM rows GROUP BY ALL
        )
        SELECT window_start, {groups}, sum(n)::UBIGINT AS inferences, sum(errors)::UBIGINT AS errors,
               sum(cold_starts)::UBIGINT AS cold_starts, sum(latency_sum_ns)::HUGEINT AS latency_sum_ns,
               max(latency_max_ns) AS latency_max_ns, {pivot}
        FROM by_bucket GROUP BY ALL
    """


DEVICE_HOUR_SQL = f"""
    WITH rows AS ({inference_rows_sql('hour')})
    SELECT window_start, device_id,
           arg_max(site, event_time) AS site, arg_max(region, event_time) AS region,
           arg_max(device_class, event_time) AS device_class,
           arg_max(firmware_version, event_time) AS firmware_version,
           count(*)::UBIGINT AS inferences, (count(*) FILTER (WHERE status_code = 2))::UBIGINT AS errors,
           (count(*) FILTER (WHERE cold_start))::UBIGINT AS cold_starts,
           max(event_time) AS last_event_time, max(received_at) AS last_received_at,
           arg_max(clock_offset_ns, received_at) AS clock_offset_ns,
           list_sort(list(DISTINCT coalesce(model_name, '') || ':' || coalesce(model_version, '')))
               AS model_versions
    FROM rows WHERE device_id IS NOT NULL GROUP BY ALL
"""


def raw_span_bounds(read: Read, start: datetime, end: datetime) -> dict | None:
    """The parameters of :func:`inference_rows_sql` for [start, end); None when no span was ever written there."""
    bounds = read(raw_time_bounds("span_rows"), {"start": start, "end": end})
    lo, hi = bounds["lo"][0].as_py(), bounds["hi"][0].as_py()
    return None if lo is None else {"start": start, "end": end, "lo": lo, "hi": hi}


class _SpanRollup(WindowJob):
    inputs = ("span_rows",)
    sql = ""

    def compute(self, read: Read, start: datetime, end: datetime) -> JobOutput:
        params = raw_span_bounds(read, start, end)
        table = self.outputs[0]
        if params is None:
            return JobOutput({table: None}, rows_in=0)
        rows = read(self.sql, params)
        rows_in = sum(rows["inferences"].to_pylist()) if rows.num_rows else 0
        return JobOutput({table: rows}, rows_in=rows_in)


class GoldenSignalsMinute(_SpanRollup):
    name = "rollup_minute"
    window = timedelta(minutes=1)
    outputs = ("rollup_minute",)
    sql = golden_signals_sql("minute")


class GoldenSignalsHour(_SpanRollup):
    name = "rollup_hour"
    window = timedelta(hours=1)
    delay = timedelta(minutes=2)
    chunk = 24
    outputs = ("rollup_hour",)
    sql = golden_signals_sql("hour")


class DeviceHour(_SpanRollup):
    name = "device_hour"
    window = timedelta(hours=1)
    delay = timedelta(minutes=2)
    chunk = 24
    outputs = ("device_hour",)
    sql = DEVICE_HOUR_SQL


def rollup_jobs() -> list[WindowJob]:
    return [GoldenSignalsMinute(), GoldenSignalsHour(), DeviceHour()]
