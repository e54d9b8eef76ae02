"""The read API's fleet-health queries (docs/api.md has an example of each).

``fleet_health`` sums :mod:`analytics.health.job`'s hours per cohort or
device; ``rollout_status`` counts each rollout stage's devices by their
latest deployment outcome; ``zero_tolerance_failures`` reads the raw
model-load spans with the SQL the SLO evaluator uses.
"""

from __future__ import annotations

from analytics.api.params import Param
from analytics.api.queries import NamedQuery
from analytics.health.failures import ZERO_TOLERANCE_SQL

_GROUPS = {"device": "device_id", "site": "site", "region": "region", "device_class": "device_class",
           "model_name": "model_name", "model_version": "model_name || '@' || model_version",
           "firmware_version": "firmware_version", "none": "'all'"}
_FILTERED = ("device_id", "site", "region", "device_class", "model_name", "firmware_version")
_FILTER_SQL = " AND ".join(f"(${d} IS NULL OR {d} = ${d})" for d in _FILTERED)
_SUMMED = ("inferences", "cold_starts", "model_loads", "load_failures", "integrity_failures", "cpu_observed_s",
           "cpu_above_s", "memory_observed_s", "memory_above_s", "temperature_observed_s", "temperature_above_s")

FLEET_HEALTH_SQL = f"""
WITH device_days AS (
    SELECT {{group_by}} AS grp, device_id, date_trunc('day', window_start) AS day,
           {", ".join(f"sum({c}) AS {c}" for c in _SUMMED)},
           max(cpu_max) AS cpu_max, max(memory_max_bytes) AS memory_max_bytes,
           max(temperature_max_c) AS temperature_max_c,
           sum(telemetry_bytes) AS telemetry_bytes, max(telemetry_budget_bytes_per_day) AS budget
    FROM device_health_hour
    WHERE window_start >= $since AND window_start < $until AND {_FILTER_SQL}
    GROUP BY ALL
)
SELECT grp AS "group", count(DISTINCT device_id) AS devices,
       sum(inferences)::BIGINT AS inferences, sum(cold_starts)::BIGINT AS cold_starts,
       sum(cold_starts) / nullif(sum(inferences), 0) AS cold_start_rate,
       sum(model_loads)::BIGINT AS model_loads, sum(load_failures)::BIGINT AS load_failures,
       sum(integrity_failures)::BIGINT AS integrity_failures,
       sum(cpu_above_s) AS cpu_above_s, sum(cpu_above_s) / nullif(sum(cpu_observed_s), 0) AS cpu_above_share,
       max(cpu_max) AS cpu_max,
       sum(memory_above_s) AS memory_above_s,
       sum(memory_above_s) / nullif(sum(memory_observed_s) FILTER (WHERE memory_above_s IS NOT NULL), 0)
           AS memory_above_share,
       max(memory_max_bytes) AS memory_max_bytes,
       sum(temperature_above_s) AS temperature_above_s,
       sum(temperature_above_s) / nullif(sum(temperature_observed_s), 0) AS temperature_above_share,
       max(temperature_max_c) AS temperature_max_c,
       sum(telemetry_bytes)::BIGINT AS telemetry_bytes,
       sum(telemetry_bytes) / sum(budget) AS telemetry_budget_used,
       (count(*) FILTER (WHERE telemetry_bytes > budget))::BIGINT AS device_days_over_budget
FROM device_days
GROUP BY grp ORDER BY grp
"""

ROLLOUT_STATUS_SQL = """
WITH latest AS (
    SELECT rollout_id, stage, device_id, arg_max(outcome, ended_at) AS outcome, any_value(kind) AS kind,
           any_value(version_from) AS version_from, any_value(version_to) AS version_to,
           min(started_at) AS started_at, max(ended_at) AS ended_at
    FROM deployment_events
    WHERE window_start >= $since AND window_start < $until AND ($rollout_id IS NULL OR rollout_id = $rollout_id)
    GROUP BY rollout_id, stage, device_id
)
SELECT rollout_id, stage, any_value(kind) AS kind, any_value(version_from) AS version_from,
       any_value(version_to) AS version_to, count(*)::BIGINT AS devices_targeted,
       (count(*) FILTER (WHERE outcome = 'success'))::BIGINT AS succeeded,
       (count(*) FILTER (WHERE outcome IN ('failed', 'rolled_back')))::BIGINT AS failed,
       (count(*) FILTER (WHERE outcome = 'rolled_back'))::BIGINT AS rolled_back,
       (count(*) FILTER (WHERE outcome IS NULL OR outcome NOT IN ('success', 'failed', 'rolled_back')))::BIGINT
           AS in_progress,
       count(*) FILTER (WHERE outcome = 'success')
           / nullif(count(*) FILTER (WHERE outcome IN ('success', 'failed', 'rolled_back')), 0) AS success_ratio,
       min(started_at) AS first_started, max(ended_at) AS last_ended
FROM latest
GROUP BY rollout_id, stage
ORDER BY rollout_id, first_started
"""



def _range(since: str) -> tuple[Param, Param]:
    return (Param("since", "timestamp", "start of the time range (inclusive)", default=since),
            Param("until", "timestamp", "end of the time range (exclusive)", default="now"))


HEALTH_QUERIES = (
    NamedQuery(
        "fleet_health",
        "Fleet health per device or cohort over a time range: cold-start rate, time above the CPU, memory and "
        "temperature thresholds, model-load and integrity failures, telemetry bytes against the daily budget.",
        FLEET_HEALTH_SQL,
        (*_range("-1d"),
         Param("group_by", "choice", "one row per device or per value of this dimension", default="device",
               choices=tuple(_GROUPS)),
         *(Param(d, "string", f"only this {d.replace('_', ' ')} (default: all)") for d in _FILTERED)),
        fragments={"group_by": _GROUPS},
        needs="analytics",
    ),
    NamedQuery(
        "rollout_status",
        "Per rollout and stage: devices targeted (that reported a deployment), succeeded, failed (rolled back "
        "included), in progress, and the success ratio of the finished ones; a device counts by its latest outcome.",
        ROLLOUT_STATUS_SQL,
        (*_range("-30d"),  # of the deployments' starts
         Param("rollout_id", "string", "only this rollout (default: all)")),
        needs="analytics",
    ),
    NamedQuery(
        "zero_tolerance_failures",
        "Failed model loads and integrity checks per device, model, version and kind (load_failed, "
        "integrity_failed): any one is a page.",
        ZERO_TOLERANCE_SQL,
        _range("-1d"),
        # Reads raw spans only, but it is a fleet-health question: served where analytics runs.
        needs="analytics",
    ),
)
