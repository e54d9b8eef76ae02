"""What ``fleetwatch serve`` runs beside the collector: the read API and, when configured, the jobs.

The collector knows nothing of analytics; this module composes it. Each
piece is a :class:`collector.server.Extension`::

    extensions = service_extensions(config)        # the read API; the scheduler if config has analytics
    collector.server.run(config, metrics, extensions, readers=..., read_queue_limit=...)

The read API always runs (a gateway can be asked about its own spans);
the analytics schemas, the rollup jobs and APScheduler only with an
``analytics`` section, so a gateway never imports APScheduler; the alert
notifier only when ``alerting.receivers`` lists at least one receiver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from analytics.api.catalog import served_queries
from analytics.api.config import ApiConfig
from analytics.api.server import ReadApi
from analytics.api.sql_guard import SqlGuard
from analytics.config import AnalyticsConfig
from analytics.drift.section import DriftJobConfig
from analytics.health.config import HealthConfig
from analytics.shadow.config import ShadowConfig
from analytics.slo.alerting_config import AlertingConfig
from collector.config import CollectorConfig, parse_endpoint
from collector.store.migrations import Migrations

log = logging.getLogger("fleetwatch.analytics")


class ReadApiExtension:
    """The read API on its own listener, reading through the collector's store."""

    migrations: Sequence[Migrations] = ()

    def __init__(self, config: ApiConfig, archive: bool = False) -> None:
        self.config = config
        self.archive = archive  # the raw queries read through the archive's views
        self.api: ReadApi | None = None

    def ports(self) -> list[tuple[str, str, int]]:
        return [("the read API", *parse_endpoint(self.config.endpoint, "api.endpoint"))]

    async def start(self, collector) -> None:
        store = collector.store
        if store is None or store.reads is None:
            log.warning("no DuckDB exporter in this process: the read API is not started")
            return
        tables = await asyncio.to_thread(_readable_tables, store)
        queries = served_queries(store.versions)
        if self.archive:
            from analytics.archive.reads import reading_archive

            queries = reading_archive(queries)
        self.api = ReadApi(self.config, store.reads, queries, SqlGuard(tables))
        await self.api.start()

    async def stop(self) -> None:
        if self.api is not None:
            await self.api.stop()


class AnalyticsExtension:
    """The window jobs (golden-signal rollups first) on APScheduler, writing through the collector's store."""

    def __init__(self, config: AnalyticsConfig, alerting: AlertingConfig | None = None,
                 health: HealthConfig | None = None, shadow: ShadowConfig | None = None,
                 drift: DriftJobConfig | None = None) -> None:
        from analytics.schema import ANALYTICS

        self.config = config
        self.alerting = alerting
        self.health = health or HealthConfig()
        self.shadow = shadow or ShadowConfig()
        self.drift = drift or DriftJobConfig()
        self.migrations: Sequence[Migrations] = (ANALYTICS,)
        self.scheduler = None

    def ports(self) -> list[tuple[str, str, int]]:
        return []

    async def start(self, collector) -> None:
        from analytics.drift.alerts import DriftAlerts
        from analytics.drift.jobs import drift_jobs
        from analytics.health.alerts import ZeroToleranceAlerts
        from analytics.health.job import health_jobs
        from analytics.jobs.framework import JobRunner
        from analytics.jobs.scheduler import AnalyticsScheduler
        from analytics.rollups import rollup_jobs
        from analytics.shadow.jobs import shadow_jobs
        from analytics.slo.job import SloJob
        from analytics.slo.sli_job import sli_jobs

        if collector.store is None:
            log.warning("no DuckDB exporter in this process: analytics jobs are not started")
            return
        # Drift runs with analytics whether or not the drift section is there (it only changes defaults).
        jobs = rollup_jobs() + health_jobs(self.health) + shadow_jobs(self.shadow) + drift_jobs(self.drift)
        specs = self.config.slo_specs()
        slo_inputs = sli_jobs(specs)
        jobs += slo_inputs
        # The SLO alerts, the zero-tolerance health alerts and the drift tickets, evaluated behind the jobs
        # they read (drift alerts wait for the drift job's watermark themselves).
        waits_for = [job.name for job in slo_inputs] or ["rollup_minute"]
        lifecycle = self.alerting.lifecycle() if self.alerting else None
        zero_tolerance = ZeroToleranceAlerts(lifecycle.repeat_interval) if lifecycle else ZeroToleranceAlerts()
        drift_alerts = DriftAlerts(self.drift.alert_window)
        tasks = [SloJob(collector.store, specs, sli_jobs=waits_for, lifecycle=lifecycle,
                        alert_providers=[zero_tolerance, drift_alerts],
                        enqueue=self._enqueue if self.alerting and self.alerting.receivers else None,
                        notify_window=timedelta(seconds=self.config.notify_window),
                        query_timeout=self.config.query_timeout)]
        for job in jobs:
            if self.config.backfill is not None:
                job.backfill = timedelta(seconds=self.config.backfill)
        runner = JobRunner(collector.store, jobs, query_timeout=self.config.query_timeout)
        self.scheduler = AnalyticsScheduler(runner, collector.metrics.registry, workers=self.config.workers,
                                            tasks=tasks)
        self.scheduler.start()

    def _enqueue(self, con, messages) -> int:
        """Notifications into the outbox, inside the evaluation's write transaction."""
        from analytics.slo.outbox import deliveries_for, enqueue

        return enqueue(con, deliveries_for(messages, self.alerting))

    async def stop(self) -> None:
        if self.scheduler is not None:
            # Waits for running jobs: each window commits whole or not at all.
            await asyncio.to_thread(self.scheduler.shutdown)


class NotifierExtension:
    """The alert notifier (:mod:`analytics.slo.notifier`): delivers the outbox the evaluator fills."""

    migrations: Sequence[Migrations] = ()  # alert_outbox is in the analytics schema

    def __init__(self, config: AlertingConfig) -> None:
        self.config = config
        self.notifier = None

    def ports(self) -> list[tuple[str, str, int]]:
        return []

    async def start(self, collector) -> None:
        from analytics.slo.notifier import Notifier

        if collector.store is None:
            log.warning("no DuckDB exporter in this process: alert notifications are not sent")
            return
        self.notifier = Notifier(collector.store, self.config, collector.metrics.registry)
        self.notifier.start()

    async def stop(self) -> None:
        if self.notifier is not None:
            await asyncio.to_thread(self.notifier.stop)


def service_extensions(config: CollectorConfig) -> list:
    """The extensions ``fleetwatch serve`` runs for ``config``."""
    extensions: list = []
    archive = config.section("archive")
    if archive is not None:
        from analytics.archive.service import ArchiveExtension

        # Before the read API: its views exist by the time the API lists the readable tables.
        extensions.append(ArchiveExtension(archive))
    api = config.section("api")
    if api is not None and api.enabled:
        extensions.append(ReadApiExtension(api, archive=archive is not None))
    analytics = config.section("analytics")
    alerting = config.section("alerting")
    if analytics is not None:
        extensions.append(AnalyticsExtension(analytics, alerting, config.section("health"),
                                             config.section("shadow"), config.section("drift")))
    # Without receivers alerts are still evaluated and stored; nothing connects anywhere.
    if alerting is not None and alerting.receivers:
        if analytics is None:
            log.warning("alerting.receivers is configured without the analytics section: no alerts to send")
        else:
            extensions.append(NotifierExtension(alerting))
    return extensions


def _readable_tables(store) -> set[str]:
    """Every table and view of the file but the storage and bookkeeping ones only the writer needs."""
    hidden = {"schema_migrations", "batch_heads", "ingest_log", "fleetwatch_meta"}
    names = store.reads.run("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'",
                            max_rows=10_000, timeout=30).table["table_name"].to_pylist()
    return {name for name in names if name not in hidden}
