"""The hourly fleet-health job: per device and hour, in DuckDB SQL, on the window-job framework.

::

    job = DeviceHealthHour(HealthConfig())
    runner = JobRunner(store, [job])
    runner.run_due(job.name, now)

It reads inference, ``model.load`` and ``deployment`` spans and the
device gauges and telemetry counter of ``metric_points`` (both are inputs,
so a late span or metric point re-opens exactly the hours it falls in) and
writes two tables, both windowed by skew-corrected event time:

``device_health_hour``
    per device and hour: the cohort (site, region, device class, firmware;
    model and model version of the hour's inferences), ``inferences`` and
    ``cold_starts``; ``model_loads``, ``load_failures`` (a load that ended
    in ERROR without a failed integrity check) and ``integrity_failures``
    (``ml.model.integrity`` = ``failed``); for CPU, memory and temperature
    the seconds observed and the seconds above the threshold, and the
    highest reading; ``telemetry_bytes`` (increase of the
    ``telemetry.bytes_sent`` counter) and the daily budget in force.
``deployment_events``
    one row per ``deployment`` span: rollout id, stage, kind, outcome,
    versions, device and cohort, start and end.

**Time above a threshold.** Within each hour, a gauge sample stands for
the time from itself to the device's next sample of the same gauge in
that hour (or the end of the hour), the hour's first sample also for the
time since the hour began; each stretch is capped at ``sample_gap_cap``
(a device that stops reporting is not assumed hot for hours). An hour
depends on its own samples only, so late samples re-open exactly their
hours, and hours add up exactly.

**Telemetry bytes.** A cumulative counter point adds its increase over the
previous point of the same series (same start time), looked up to a day
back; the first point of a series that started within that day adds its
whole value, a point lower than its predecessor (a reset) too; delta
points add their value. A point whose predecessor is more than a day back
adds nothing (documented in docs/api.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from analytics.health.config import HealthConfig
from analytics.jobs.framework import JobOutput, Read, WindowJob
from collector.store.marks import raw_time_bounds
from collector.store.schema import corrected_time

COHORT = ("site", "region", "device_class", "firmware_version")
GAUGES = {"cpu": "system.cpu.utilization", "memory": "system.memory.usage", "temperature": "device.temperature"}
BYTES_METRIC = "telemetry.bytes_sent"
COUNTER_LOOKBACK = timedelta(days=1)
ERROR_STATUS = 2  # span_rows.status_code of OTLP STATUS_CODE_ERROR

DEVICE_HEALTH_DDL = """
CREATE TABLE IF NOT EXISTS device_health_hour (
    window_start TIMESTAMP NOT NULL,
    device_id VARCHAR NOT NULL,
    site VARCHAR, region VARCHAR, device_class VARCHAR, firmware_version VARCHAR,
    model_name VARCHAR, model_version VARCHAR,      -- of the hour's inferences (NULL: none)
    inferences UBIGINT NOT NULL, cold_starts UBIGINT NOT NULL,
    model_loads UBIGINT NOT NULL, load_failures UBIGINT NOT NULL, integrity_failures UBIGINT NOT NULL,
    cpu_observed_s DOUBLE NOT NULL, cpu_above_s DOUBLE NOT NULL, cpu_max DOUBLE,
    memory_observed_s DOUBLE NOT NULL, memory_above_s DOUBLE, memory_max_bytes DOUBLE,
    temperature_observed_s DOUBLE NOT NULL, temperature_above_s DOUBLE NOT NULL, temperature_max_c DOUBLE,
    telemetry_bytes DOUBLE NOT NULL,
    -- the thresholds the hour was computed with
    cpu_threshold DOUBLE NOT NULL, memory_threshold_bytes DOUBLE, temperature_threshold_c DOUBLE NOT NULL,
    telemetry_budget_bytes_per_day DOUBLE NOT NULL
)
"""

DEPLOYMENT_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS deployment_events (
    window_start TIMESTAMP NOT NULL,
    device_id VARCHAR,
    site VARCHAR, region VARCHAR, device_class VARCHAR, firmware_version VARCHAR,
    rollout_id VARCHAR, stage VARCHAR, kind VARCHAR, outcome VARCHAR,
    version_from VARCHAR, version_to VARCHAR, model_name VARCHAR,
    started_at TIMESTAMP_NS, ended_at TIMESTAMP_NS
)
"""

HEALTH_DDL = [DEVICE_HEALTH_DDL, DEPLOYMENT_EVENTS_DDL]


def attribute(key: str) -> str:
    """SQL for a span attribute kept in the ``attributes`` JSON text (keys are constants, not user input)."""
    return f"json_extract_string(attributes, '$.\"{key}\"')"


_SPAN_TIME = corrected_time("start_time")
_POINT_TIME = corrected_time("time")

_SPANS = f"""
    SELECT *, {_SPAN_TIME} AS event_time, date_trunc('hour', {_SPAN_TIME})::TIMESTAMP AS window_start
    FROM span_rows
    WHERE name IN ('inference', 'model.load', 'deployment') AND device_id IS NOT NULL
      AND start_time >= make_timestamp_ns($span_lo) AND start_time <= make_timestamp_ns($span_hi)
      AND {_SPAN_TIME} >= $start AND {_SPAN_TIME} < $end
"""

_GAUGE_NAMES = ", ".join(f"'{m}'" for m in GAUGES.values())

DEVICE_HEALTH_SQL = f"""
WITH spans AS ({_SPANS}),
span_side AS (
    SELECT window_start, device_id,
           arg_max(model_name, event_time) FILTER (WHERE name = 'inference') AS model_name,
           arg_max(model_version, event_time) FILTER (WHERE name = 'inference') AS model_version,
           count(*) FILTER (WHERE name = 'inference') AS inferences,
           count(*) FILTER (WHERE name = 'inference' AND cold_start) AS cold_starts,
           count(*) FILTER (WHERE name = 'model.load') AS model_loads,
           count(*) FILTER (WHERE name = 'model.load' AND status_code = {ERROR_STATUS}
                            AND {attribute('ml.model.integrity')} IS DISTINCT FROM 'failed') AS load_failures,
           count(*) FILTER (WHERE name = 'model.load' AND {attribute('ml.model.integrity')} = 'failed')
               AS integrity_failures
    FROM spans GROUP BY ALL
),
points AS (
    SELECT device_id, metric_name, attributes, start_time AS series_start, aggregation_temporality,
           {", ".join(COHORT)}, coalesce(value, int_value::DOUBLE) AS v,
           {_POINT_TIME} AS event_time, date_trunc('hour', {_POINT_TIME})::TIMESTAMP AS window_start
    FROM metric_points
    WHERE metric_name IN ({_GAUGE_NAMES}, '{BYTES_METRIC}') AND device_id IS NOT NULL
      AND time >= make_timestamp_ns($point_lo) AND time <= make_timestamp_ns($point_hi)
      AND {_POINT_TIME} < $end
      -- only the counter needs points before the window (each point's predecessor)
      AND ({_POINT_TIME} >= $start OR (metric_name = '{BYTES_METRIC}' AND {_POINT_TIME} >= $lookback_start))
),
gauge_stretches AS (
    -- Seconds each sample stands for: to the next sample of the hour (or its end), the first
    -- sample also back to the hour's start; each stretch capped.
    SELECT window_start, device_id, metric_name, device_class, v,
           (least(epoch(coalesce(lead(event_time) OVER w, window_start + INTERVAL 1 HOUR) - event_time), $cap_s)
            + CASE WHEN row_number() OVER w = 1
                   THEN least(epoch(event_time - window_start), $cap_s) ELSE 0 END) AS seconds
    FROM points
    WHERE metric_name IN ({_GAUGE_NAMES})
    WINDOW w AS (PARTITION BY device_id, metric_name, window_start ORDER BY event_time)
),
gauge_side AS (
    SELECT window_start, device_id,
           coalesce(sum(seconds) FILTER (WHERE metric_name = '{GAUGES["cpu"]}'), 0) AS cpu_observed_s,
           coalesce(sum(seconds) FILTER (WHERE metric_name = '{GAUGES["cpu"]}' AND v > $cpu_threshold), 0)
               AS cpu_above_s,
           max(v) FILTER (WHERE metric_name = '{GAUGES["cpu"]}') AS cpu_max,
           coalesce(sum(seconds) FILTER (WHERE metric_name = '{GAUGES["memory"]}'), 0) AS memory_observed_s,
           CASE WHEN any_value(memory_threshold) IS NOT NULL THEN coalesce(sum(seconds) FILTER (
               WHERE metric_name = '{GAUGES["memory"]}' AND v > memory_threshold), 0) END AS memory_above_s,
           max(v) FILTER (WHERE metric_name = '{GAUGES["memory"]}') AS memory_max_bytes,
           any_value(memory_threshold) AS memory_threshold_bytes,
           coalesce(sum(seconds) FILTER (WHERE metric_name = '{GAUGES["temperature"]}'), 0)
               AS temperature_observed_s,
           coalesce(sum(seconds) FILTER (WHERE metric_name = '{GAUGES["temperature"]}'
                                         AND v > $temperature_threshold), 0) AS temperature_above_s,
           max(v) FILTER (WHERE metric_name = '{GAUGES["temperature"]}') AS temperature_max_c
    FROM (SELECT *, $memory_bytes[list_position($memory_classes, device_class)] AS memory_threshold
          FROM gauge_stretches)
    GROUP BY ALL
),
counter_steps AS (
    SELECT window_start, device_id, event_time, v, series_start, aggregation_temporality,
           lag(v) OVER (PARTITION BY device_id, attributes, series_start ORDER BY event_time) AS previous
    FROM points WHERE metric_name = '{BYTES_METRIC}'
),
bytes_side AS (
    SELECT window_start, device_id,
           sum(CASE WHEN aggregation_temporality = 'delta' THEN v
                    WHEN previous IS NOT NULL AND v >= previous THEN v - previous
                    WHEN previous IS NOT NULL THEN v                      -- a reset
                    WHEN series_start >= $lookback_start THEN v           -- the series' first point
                    ELSE 0 END) AS telemetry_bytes
    FROM counter_steps WHERE event_time >= $start
    GROUP BY ALL
),
cohort AS (
    SELECT window_start, device_id, {", ".join(f"arg_max({c}, event_time) AS {c}" for c in COHORT)}
    FROM (SELECT window_start, device_id, event_time, {", ".join(COHORT)} FROM spans
          UNION ALL
          SELECT window_start, device_id, event_time, {", ".join(COHORT)} FROM points WHERE event_time >= $start)
    GROUP BY ALL
)
SELECT c.window_start, c.device_id, {", ".join(f"c.{d}" for d in COHORT)}, s.model_name, s.model_version,
       coalesce(s.inferences, 0)::UBIGINT AS inferences, coalesce(s.cold_starts, 0)::UBIGINT AS cold_starts,
       coalesce(s.model_loads, 0)::UBIGINT AS model_loads, coalesce(s.load_failures, 0)::UBIGINT AS load_failures,
       coalesce(s.integrity_failures, 0)::UBIGINT AS integrity_failures,
       coalesce(g.cpu_observed_s, 0) AS cpu_observed_s, coalesce(g.cpu_above_s, 0) AS cpu_above_s, g.cpu_max,
       coalesce(g.memory_observed_s, 0) AS memory_observed_s, g.memory_above_s, g.memory_max_bytes,
       coalesce(g.temperature_observed_s, 0) AS temperature_observed_s,
       coalesce(g.temperature_above_s, 0) AS temperature_above_s, g.temperature_max_c,
       coalesce(b.telemetry_bytes, 0) AS telemetry_bytes,
       $cpu_threshold AS cpu_threshold,
       coalesce(g.memory_threshold_bytes, $memory_bytes[list_position($memory_classes, c.device_class)])
           AS memory_threshold_bytes,
       $temperature_threshold AS temperature_threshold_c, $budget_bytes AS telemetry_budget_bytes_per_day
FROM cohort c
LEFT JOIN span_side s USING (window_start, device_id)
LEFT JOIN gauge_side g USING (window_start, device_id)
LEFT JOIN bytes_side b USING (window_start, device_id)
"""

DEPLOYMENT_EVENTS_SQL = f"""
WITH spans AS ({_SPANS})
SELECT window_start, device_id, {", ".join(COHORT)},
       {attribute('deployment.rollout.id')} AS rollout_id, {attribute('deployment.rollout.stage')} AS stage,
       {attribute('deployment.kind')} AS kind, {attribute('deployment.outcome')} AS outcome,
       {attribute('deployment.version.from')} AS version_from, {attribute('deployment.version.to')} AS version_to,
       model_name, event_time AS started_at, event_time + to_microseconds(duration_ns // 1000) AS ended_at
FROM spans WHERE name = 'deployment'
"""


def _bounds(read: Read, table: str, start: datetime, end: datetime) -> tuple[int, int]:
    """Raw-time bounds of ``table``'s rows in [start, end) of corrected time; an empty range when none."""
    row = read(raw_time_bounds(table), {"start": start, "end": end})
    lo, hi = row["lo"][0].as_py(), row["hi"][0].as_py()
    return (0, -1) if lo is None else (lo, hi)


class DeviceHealthHour(WindowJob):
    """Per device and hour health (``device_health_hour``) and every deployment (``deployment_events``)."""

    name = "device_health_hour"
    window = timedelta(hours=1)
    delay = timedelta(minutes=2)
    chunk = 24
    inputs = ("span_rows", "metric_points")
    outputs = ("device_health_hour", "deployment_events")

    def __init__(self, config: HealthConfig | None = None) -> None:
        self.config = config or HealthConfig()
        self.config.validate()

    def parameters(self) -> dict:
        classes, thresholds = self.config.memory_thresholds()
        return {"cpu_threshold": self.config.cpu_utilization, "temperature_threshold": self.config.temperature_c,
                "memory_classes": classes, "memory_bytes": thresholds, "cap_s": self.config.sample_gap_cap,
                "budget_bytes": self.config.telemetry_mib_per_device_day * 2**20}

    def compute(self, read: Read, start: datetime, end: datetime) -> JobOutput:
        span_lo, span_hi = _bounds(read, "span_rows", start, end)
        lookback_start = start - COUNTER_LOOKBACK
        point_lo, point_hi = _bounds(read, "metric_points", lookback_start, end)
        window = {"start": start, "end": end, "span_lo": span_lo, "span_hi": span_hi}
        health = read(DEVICE_HEALTH_SQL, {**window, **self.parameters(), "point_lo": point_lo,
                                          "point_hi": point_hi, "lookback_start": lookback_start})
        deployments = read(DEPLOYMENT_EVENTS_SQL, window)
        rows_in = sum(health["inferences"].to_pylist()) + sum(health["model_loads"].to_pylist())
        return JobOutput({"device_health_hour": health, "deployment_events": deployments},
                         rows_in=rows_in + deployments.num_rows)


def health_jobs(config: HealthConfig | None = None) -> list[WindowJob]:
    return [DeviceHealthHour(config)]
