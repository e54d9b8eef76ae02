"""The archive inside ``fleetwatch serve``: export closed hours and prune old ones on a schedule.

::

    extension = ArchiveExtension(config.section("archive"))   # one of serve's extensions
    # start(): migrates nothing itself (its schema is in `migrations`), refreshes the archive views,
    #          starts a thread that every `schedule` runs export() then prune()
    # stop():  waits for the running pass; a part is committed whole or not at all

Rows are pruned only once archived and, on a file with analytics jobs,
only once every job's watermark has passed them (a job still catching up
must see the rows it has not computed). ``/metrics`` counts
``fleetwatch_archive_rows_exported_total{table}``,
``fleetwatch_archive_bytes_written_total{table}``,
``fleetwatch_archive_rows_pruned_total{table}`` and failed passes
(``fleetwatch_archive_failures_total``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from analytics.archive.backends import StoreBackend
from analytics.archive.config import ArchiveConfig
from analytics.archive.exporter import ARCHIVE, ArchiveExporter, ExportReport
from analytics.archive.views import refresh_all_views
from analytics.jobs.framework import floor_time
from collector.store.migrations import Migrations

log = logging.getLogger("fleetwatch.archive")

HOUR = timedelta(hours=1)


def closed_before(now: datetime, config: ArchiveConfig) -> datetime:
    """Hours ending at or before this are closed (the job framework's rule, with the archive's delay)."""
    return floor_time(now - timedelta(seconds=config.delay), HOUR)


def hot_boundary(now: datetime, config: ArchiveConfig, jobs_done_until: datetime | None) -> datetime | None:
    """Archived hours ending at or before this may leave the file (None: keep everything)."""
    if not config.hot_period:
        return None
    boundary = floor_time(now - timedelta(seconds=config.hot_period), HOUR)
    if jobs_done_until is not None:
        boundary = min(boundary, floor_time(jobs_done_until, HOUR))
    return boundary


class ArchiveExtension:
    """Exports and prunes on its own thread, through the collector's store; see the module docstring."""

    def __init__(self, config: ArchiveConfig) -> None:
        self.config = config
        self.migrations: Sequence[Migrations] = (ARCHIVE,)
        self.exporter: ArchiveExporter | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._metrics = None

    def ports(self) -> list[tuple[str, str, int]]:
        return []

    async def start(self, collector) -> None:
        import asyncio

        store = collector.store
        if store is None:
            log.warning("no DuckDB exporter in this process: the archive is not written")
            return
        registry = collector.metrics.registry
        exported = registry.counter("fleetwatch_archive_rows_exported_total", "Rows written to the archive.",
                                    ["table"])
        written = registry.counter("fleetwatch_archive_bytes_written_total", "Parquet bytes written to the archive.",
                                   ["table"])
        pruned = registry.counter("fleetwatch_archive_rows_pruned_total",
                                  "Archived rows deleted from the DuckDB file (retention).", ["table"])
        self._failures = registry.counter("fleetwatch_archive_failures_total", "Archive passes that failed.")

        def on_part(table: str, rows: int, size: int) -> None:
            exported.inc(rows, table=table)
            written.inc(size, table=table)

        backend = StoreBackend(store)
        self.exporter = ArchiveExporter(backend, self.config.path, on_part=on_part,
                                        on_prune=lambda table, rows: pruned.inc(rows, table=table))
        # The views name the archive's path: a moved archive is found again at start-up.
        await asyncio.to_thread(backend.write, lambda con: refresh_all_views(con, self.exporter.root))
        self._thread = threading.Thread(target=self._loop, name="archive", daemon=True)
        self._thread.start()

    def run_once(self, now: datetime | None = None) -> tuple[ExportReport, ExportReport | None]:
        """One pass: export every closed hour, then prune what the hot period no longer covers."""
        assert self.exporter is not None
        now = now or datetime.now(timezone.utc).replace(tzinfo=None)
        exported = self.exporter.export(closed_before(now, self.config), should_stop=self._stop.is_set)
        boundary = hot_boundary(now, self.config, self._jobs_done_until())
        pruned = self.exporter.prune(boundary, should_stop=self._stop.is_set) if boundary is not None else None
        return exported, pruned

    def _jobs_done_until(self) -> datetime | None:
        """The oldest watermark of the analytics jobs on this file (None: no jobs here)."""
        assert self.exporter is not None

        def oldest(cur):
            exists = cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'job_state'"
                                 ).fetchone()[0]
            return cur.execute("SELECT min(watermark) FROM job_state").fetchone()[0] if exists else None
        return self.exporter.backend.read(oldest)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                exported, pruned = self.run_once()
                if exported.parts or (pruned and pruned.pruned_rows):
                    log.info("archive: %d parts, %d rows, %d bytes written; %d rows pruned", exported.parts,
                             exported.rows, exported.bytes, pruned.pruned_rows if pruned else 0)
            except Exception as exc:  # recorded and retried at the next tick; serving goes on
                self._failures.inc()
                log.error("archive pass failed: %.300s", exc)
            self._stop.wait(self.config.schedule)

    async def stop(self) -> None:
        import asyncio

        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
