"""The named queries the read API serves, documented with an example each in docs/api.md.

Raw-table queries (one device's spans, one trace, one device's metrics)
read the collector's tables over short ranges (through the Parquet archive
where the server has one: :mod:`analytics.archive.reads`). Fleet-wide questions read
the rollups (:mod:`analytics.rollups`): minute rollups for steps under an
hour, hour rollups otherwise, topped up with minutes for the newest hour
that is not rolled up yet, so a chart ending "now" has no hole at its end.
"""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from analytics.api.params import Param
from analytics.api.queries import NamedQuery, registry
from analytics.drift.queries import DRIFT_QUERIES
from analytics.health.queries import HEALTH_QUERIES
from analytics.latency_buckets import COLUMNS as LATENCY_COLUMNS
from analytics.latency_buckets import quantiles
from analytics.shadow.queries import SHADOW_QUERIES
from analytics.slo.queries import SLO_QUERIES

_RANGE = (
    Param("since", "timestamp", "start of the time range (inclusive)", default="-1h"),
    Param("until", "timestamp", "end of the time range (exclusive)", default="now"),
)

RAW_QUERIES = (
    NamedQuery(
        "device_spans",
        "Spans of one device in a time range (device clock, corrected for skew), newest first.",
        # The corrected time is computed, so DuckDB cannot skip row groups on it;
        # the raw start times that the range's minutes hold (ingest_marks) can.
        """
        WITH bounds AS (
            SELECT min(min_time) AS lo, max(max_time) AS hi FROM ingest_marks
            WHERE table_name = 'span_rows' AND minute >= date_trunc('minute', $since) AND minute < $until
        )
        SELECT trace_id, span_id, parent_span_id, name, status_code, status_message,
               corrected_start_time AS start_time, duration_ms, model_name, model_version,
               inference_mode, request_id, prediction_label, prediction_score, prediction_value,
               cold_start, site, firmware_version, attributes, received_at
        FROM spans, bounds
        WHERE device_id = $device_id
          AND spans.start_time >= bounds.lo AND spans.start_time <= bounds.hi
          AND corrected_start_time >= $since AND corrected_start_time < $until
        ORDER BY corrected_start_time DESC
        """,
        (Param("device_id", "string", "the device's device.id", required=True), *_RANGE),
    ),
    NamedQuery(
        "trace_spans",
        "Every span of one trace, in start order (for a waterfall).",
        """
        SELECT trace_id, span_id, parent_span_id, name, kind, status_code, status_message,
               start_time, end_time, duration_ms, service_name, device_id, model_name,
               model_version, inference_mode, attributes, events
        FROM spans
        WHERE trace_id = lower($trace_id)
        ORDER BY start_time, span_id
        """,
        (Param("trace_id", "string", "32 hex characters", required=True),),
    ),
    NamedQuery(
        "device_metrics",
        "One device's gauge and sum series (CPU, memory, temperature, battery, bytes sent).",
        """
        SELECT time, metric_name, unit, value, attributes
        FROM metric_points
        WHERE device_id = $device_id
          AND ($metric_name IS NULL OR metric_name = $metric_name)
          AND time >= $since AND time < $until
        ORDER BY metric_name, time
        """,
        (Param("device_id", "string", "the device's device.id", required=True),
         Param("metric_name", "string", "only this metric (default: all)"), *_RANGE),
    ),
)

_DIMENSIONS = ("model_name", "model_version", "inference_mode", "site", "region", "device_class",
               "firmware_version")
_FILTERS = tuple(Param(d, "string", f"only this {d.replace('_', ' ')} (default: all)") for d in _DIMENSIONS)
_FILTER_SQL = " AND ".join(f"(${d} IS NULL OR {d} = ${d})" for d in _DIMENSIONS)
_GROUPS = {"none": "'all'", **{d: d for d in _DIMENSIONS},
           "model_version": "model_name || '@' || model_version"}
_STEPS = tuple(timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440))
_POINTS = 240  # a chart's width in points when the caller gives no step


def _step(values: dict) -> timedelta:
    if values.get("step") is not None:
        return values["step"]
    wanted = (values["until"] - values["since"]) / _POINTS
    return next((s for s in _STEPS if s >= wanted), _STEPS[-1])


def _rollup_source(values: dict) -> dict[str, str]:
    """Minute or hour rollups for the step; hours are topped up with the minutes not yet rolled up."""
    step = _step(values)
    if step % timedelta(hours=1) or (values["until"] - values["since"]) <= timedelta(hours=36):
        source = "rollup_minute"
    else:
        hour_done = "coalesce((SELECT max(watermark) FROM job_state WHERE job = 'rollup_hour'), TIMESTAMP '1970-01-01')"
        source = (f"(SELECT * FROM rollup_hour WHERE window_start < {hour_done} UNION ALL BY NAME "
                  f"SELECT * FROM rollup_minute WHERE window_start >= {hour_done})")
    return {"source": source, "step_us": str(int(step / timedelta(microseconds=1)))}


def _golden_finish(table: pa.Table, values: dict) -> pa.Table:
    """Rates, error ratios and p50/p95/p99 from the summed histogram columns; the columns themselves go."""
    import numpy as np

    counts = np.column_stack([table[c].to_numpy(zero_copy_only=False).astype(np.int64) for c in LATENCY_COLUMNS]) \
        if table.num_rows else np.zeros((0, len(LATENCY_COLUMNS)), dtype=np.int64)
    n = table["inferences"].to_numpy(zero_copy_only=False).astype(np.float64)
    step_seconds = _step(values).total_seconds()
    p50, p95, p99 = (quantiles(counts, q) for q in (0.5, 0.95, 0.99))
    with np.errstate(invalid="ignore", divide="ignore"):
        error_ratio = np.where(n > 0, table["errors"].to_numpy(zero_copy_only=False) / n, np.nan)
        mean_ms = np.where(n > 0, table["latency_sum_ns"].to_numpy(zero_copy_only=False).astype(np.float64) / n / 1e6,
                           np.nan)
    keep = [c for c in table.column_names if c not in LATENCY_COLUMNS and c != "latency_sum_ns"]
    out = table.select(keep)
    for name, values_ in (("rate_per_s", n / step_seconds), ("error_ratio", error_ratio), ("mean_ms", mean_ms),
                          ("p50_ms", p50), ("p95_ms", p95), ("p99_ms", p99)):
        out = out.append_column(name, pa.array(values_, pa.float64(), from_pandas=True))
    return out


_SUMS = ", ".join(f"sum({c})::BIGINT AS {c}" for c in LATENCY_COLUMNS)

QUERIES = (
    NamedQuery(
        "golden_signals",
        "Inference rate, error ratio and p50/p95/p99 latency over time, for any filter and grouping. "
        "Latency quantiles come from log-spaced histogram buckets (within 19 % of exact).",
        f"""
        SELECT time_bucket(to_microseconds($step_us::BIGINT), window_start, TIMESTAMP '1970-01-01') AS time,
               {{group_by}} AS "group",
               sum(inferences)::BIGINT AS inferences, sum(errors)::BIGINT AS errors,
               sum(cold_starts)::BIGINT AS cold_starts, sum(latency_sum_ns)::DOUBLE AS latency_sum_ns,
               max(latency_max_ns) / 1e6 AS max_ms, {_SUMS}
        FROM {{source}}
        WHERE window_start >= $since AND window_start < $until AND {_FILTER_SQL}
        GROUP BY ALL ORDER BY time, "group"
        """.replace("$step_us::BIGINT", "{step_us}"),
        (*_RANGE, Param("step", "duration", "bucket width (default: about 240 points over the range)",
                        minimum=60, maximum=86400 * 7),
         Param("group_by", "choice", "split the series by this dimension", default="none",
               choices=tuple(_GROUPS)), *_FILTERS),
        fragments={"group_by": _GROUPS},
        derive=_rollup_source,
        postprocess=_golden_finish,
        needs="analytics",
    ),
    NamedQuery(
        "fleet_inventory",
        "Every device: last seen, online or stale, site, firmware, the model versions it ran, clock offset.",
        """
        WITH latest AS (
            SELECT device_id,
                   arg_max(site, window_start) AS site, arg_max(region, window_start) AS region,
                   arg_max(device_class, window_start) AS device_class,
                   arg_max(firmware_version, window_start) AS firmware_version,
                   arg_max(model_versions, window_start) AS model_versions,
                   sum(inferences) FILTER (WHERE window_start >= $as_of - INTERVAL 1 DAY)::BIGINT AS inferences_24h,
                   sum(errors) FILTER (WHERE window_start >= $as_of - INTERVAL 1 DAY)::BIGINT AS errors_24h
            FROM device_hour GROUP BY device_id
        )
        SELECT d.device_id,
               CASE WHEN d.last_seen >= $as_of - $stale_after THEN 'online' ELSE 'stale' END AS status,
               d.last_seen, l.site, l.region, l.device_class, l.firmware_version, l.model_versions,
               d.clock_offset_ns / 1e6 AS clock_offset_ms, d.clock_skewed,
               coalesce(l.inferences_24h, 0) AS inferences_24h, coalesce(l.errors_24h, 0) AS errors_24h
        FROM devices d LEFT JOIN latest l USING (device_id)
        WHERE ($site IS NULL OR l.site = $site) AND ($region IS NULL OR l.region = $region)
          AND ($device_class IS NULL OR l.device_class = $device_class)
          AND ($status IS NULL OR (d.last_seen >= $as_of - $stale_after) = ($status = 'online'))
        ORDER BY d.device_id
        """,
        (Param("as_of", "timestamp", "the time 'online' is judged at", default="now"),
         Param("stale_after", "duration", "a device not heard from for this long is stale", default="15m",
               minimum=1),
         Param("status", "choice", "only online or only stale devices", choices=("online", "stale")),
         Param("site", "string", "only this site"), Param("region", "string", "only this region"),
         Param("device_class", "string", "only this device class")),
        needs="analytics",
    ),
    NamedQuery(
        "model_versions",
        "Model-version spread across the fleet: devices running each version and its share of inferences.",
        """
        WITH devices_by_version AS (
            SELECT split_part(mv, ':', 1) AS model_name, split_part(mv, ':', 2) AS model_version,
                   count(DISTINCT device_id) AS devices
            FROM (SELECT device_id, unnest(model_versions) AS mv FROM device_hour
                  WHERE window_start >= $since AND window_start < $until
                    AND ($site IS NULL OR site = $site))
            GROUP BY ALL
        ), inferences AS (
            SELECT model_name, model_version, sum(inferences)::BIGINT AS inferences, sum(errors)::BIGINT AS errors,
                   min(window_start) AS first_seen, max(window_start) AS last_seen
            FROM rollup_minute
            WHERE window_start >= $since AND window_start < $until AND inference_mode = 'edge'
              AND ($site IS NULL OR site = $site)
            GROUP BY ALL
        )
        SELECT model_name, model_version, coalesce(d.devices, 0) AS devices, i.inferences,
               i.inferences / sum(i.inferences) OVER (PARTITION BY model_name) AS inference_share,
               i.errors / i.inferences AS error_ratio, i.first_seen, i.last_seen
        FROM inferences i LEFT JOIN devices_by_version d USING (model_name, model_version)
        ORDER BY model_name, model_version
        """,
        (Param("since", "timestamp", "start of the time range (inclusive)", default="-1d"),
         Param("until", "timestamp", "end of the time range (exclusive)", default="now"),
         Param("site", "string", "only this site")),
        needs="analytics",
    ),
)

CATALOG: dict[str, NamedQuery] = registry(RAW_QUERIES + QUERIES + HEALTH_QUERIES + SLO_QUERIES + SHADOW_QUERIES
                                            + DRIFT_QUERIES)


def served_queries(schemas: dict[str, int]) -> dict[str, NamedQuery]:
    """The queries a file with these schema owners can answer (a gateway has no rollups)."""
    return {name: q for name, q in CATALOG.items() if q.needs is None or q.needs in schemas}
