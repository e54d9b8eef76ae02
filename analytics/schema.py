"""The analytics tables' schema versions (see :mod:`collector.store.migrations`)."""

from __future__ import annotations

from analytics.jobs.schema import JOB_TABLES
from analytics.rollups import ROLLUP_DDL
from analytics.slo.outbox import OUTBOX_DDL
from collector.store.migrations import Migration, Migrations

ANALYTICS = Migrations("analytics", [
    Migration(1, "job_runs, job_state, golden-signal and device rollups", [*JOB_TABLES, *ROLLUP_DDL]),
    Migration(2, "alert_outbox: alert notifications awaiting delivery", OUTBOX_DDL),
])
