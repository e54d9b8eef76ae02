"""The analytics tables' schema versions (see :mod:`collector.store.migrations`)."""

from __future__ import annotations

from analytics.jobs.schema import JOB_TABLES
from analytics.rollups import ROLLUP_DDL
from analytics.slo.freshness_job import FRESHNESS_DDL, PRESENCE_DDL
from analytics.slo.sli_job import SLI_MINUTE_DDL
from collector.store.migrations import Migration, Migrations

ANALYTICS = Migrations("analytics", [
    Migration(1, "job_runs, job_state, golden-signal and device rollups", [*JOB_TABLES, *ROLLUP_DDL]),
    Migration(2, "SLI tables: slo_sli_minute, slo_freshness_minute, device_receive_minute",
              [SLI_MINUTE_DDL, FRESHNESS_DDL, PRESENCE_DDL]),
])
