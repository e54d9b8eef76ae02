"""Zero-tolerance failures: model loads that failed or failed their integrity check, from the raw spans.

Any one of them should page, so the SLO evaluator asks for them every
minute, straight from ``span_rows`` (model loads are rare, and the hourly
health job would be up to an hour late)::

    failures = zero_tolerance_failures(runner_read, start, end)   # pyarrow.Table
    for row in failures.to_pylist():
        row["device_id"], row["kind"], row["count"], row["first_at"], row["last_at"]

One row per device, model, version and kind: ``load_failed`` (a
``model.load`` span with status ERROR whose ``ml.model.integrity`` is not
``failed``) or ``integrity_failed`` (``ml.model.integrity`` = ``failed``),
with the device's cohort (site, region, device class, firmware), the
count and the first and last failure in [start, end) of skew-corrected
event time. The read API's ``zero_tolerance_failures`` query runs the same
SQL.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from analytics.health.job import ERROR_STATUS, attribute
from analytics.jobs.framework import Read
from collector.store.schema import corrected_time

_TIME = corrected_time("start_time")
_INTEGRITY = attribute("ml.model.integrity")

# Parameters: $since, $until (corrected event time; the read API's names). The raw
# start-time bounds of the range's minutes (ingest_marks) let DuckDB skip row groups.
FAILURE_EVENTS_SQL = f"""
WITH bounds AS (
    SELECT min(min_time) AS lo, max(max_time) AS hi FROM ingest_marks
    WHERE table_name = 'span_rows' AND minute >= date_trunc('minute', $since) AND minute < $until
)
SELECT device_id, site, region, device_class, firmware_version, model_name, model_version,
       CASE WHEN {_INTEGRITY} = 'failed' THEN 'integrity_failed' ELSE 'load_failed' END AS kind,
       {_TIME} AS event_time
FROM span_rows, bounds
WHERE name = 'model.load' AND span_rows.start_time >= bounds.lo AND span_rows.start_time <= bounds.hi
  AND {_TIME} >= $since AND {_TIME} < $until
  AND ({_INTEGRITY} = 'failed' OR status_code = {ERROR_STATUS})
"""

ZERO_TOLERANCE_SQL = f"""
WITH failed AS ({FAILURE_EVENTS_SQL})
SELECT device_id, arg_max(site, event_time) AS site, arg_max(region, event_time) AS region,
       arg_max(device_class, event_time) AS device_class,
       arg_max(firmware_version, event_time) AS firmware_version,
       model_name, model_version, kind, count(*)::BIGINT AS count,
       min(event_time) AS first_at, max(event_time) AS last_at
FROM failed
GROUP BY device_id, model_name, model_version, kind
ORDER BY first_at, device_id, kind
"""


def failure_events(read: Read, start: datetime, end: datetime) -> pa.Table:
    """Each failed model load or integrity check in [start, end) (naive UTC), with its device and cohort."""
    return read(FAILURE_EVENTS_SQL + " ORDER BY event_time, device_id", {"since": start, "until": end})


def zero_tolerance_failures(read: Read, start: datetime, end: datetime) -> pa.Table:
    """Failed model loads and integrity checks in [start, end) (naive UTC), one row per device x model x kind."""
    return read(ZERO_TOLERANCE_SQL, {"since": start, "until": end})
