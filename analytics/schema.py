"""The analytics tables' schema versions (see :mod:`collector.store.migrations`)."""

from __future__ import annotations

from analytics.drift.jobs import DRIFT_DDL
from analytics.drift.references import REFERENCES_DDL
from analytics.health.job import HEALTH_DDL
from analytics.jobs.schema import JOB_TABLES
from analytics.rollups import ROLLUP_DDL
from analytics.shadow.jobs import SHADOW_DDL
from analytics.slo.outbox import OUTBOX_DDL
from analytics.slo.schema import EVALUATION_DDL, SLI_DDL
from collector.store.migrations import Migration, Migrations

ANALYTICS = Migrations("analytics", [
    Migration(1, "job_runs, job_state, golden-signal and device rollups", [*JOB_TABLES, *ROLLUP_DDL]),
    Migration(2, "fleet health: device_health_hour, deployment_events", HEALTH_DDL),
    Migration(3, "SLI tables: slo_sli_minute, slo_freshness_minute, device_receive_minute", SLI_DDL),
    Migration(4, "SLO alerts, evaluations and the notification outbox", [*EVALUATION_DDL, *OUTBOX_DDL]),
    Migration(5, "shadow mode and ground truth: shadow_hour, shadow_flips_hour, ground_truth_hour", SHADOW_DDL),
    Migration(6, "drift: drift_references, drift_summaries, drift_results", [REFERENCES_DDL, *DRIFT_DDL]),
])
