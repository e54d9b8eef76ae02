"""The archive of a DuckDB file no server holds (``fleetwatch archive export``).

::

    exported, pruned = export_file("fleet.duckdb", ArchiveConfig(path="/srv/archive", hot_period=0),
                                   until=datetime(2026, 11, 5))
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from analytics.archive.backends import FileBackend
from analytics.archive.config import ArchiveConfig
from analytics.archive.exporter import ARCHIVE, ArchiveExporter, ExportReport
from analytics.archive.service import closed_before, hot_boundary
from analytics.archive.views import refresh_all_views
from collector.store.files import open_database
from collector.store.migrations import migrate


def export_file(db: str, config: ArchiveConfig, until: datetime, *,
                progress: Callable[[str], None] | None = None) -> tuple[ExportReport, ExportReport | None]:
    """Export ``db``'s hours closed by ``until`` to ``config.path``; prune if ``config.hot_period``."""
    con = open_database(db)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "span_rows" not in tables:
            raise ValueError(f"{db} holds no fleetwatch telemetry (no span_rows table)")
        migrate(con, [ARCHIVE])
        backend = FileBackend(con)
        exporter = ArchiveExporter(backend, config.path, progress=progress)
        backend.write(lambda c: refresh_all_views(c, exporter.root))
        exported = exporter.export(closed_before(until, config))
        jobs = con.execute("SELECT min(watermark) FROM job_state").fetchone()[0] if "job_state" in tables else None
        boundary = hot_boundary(until, config, jobs)
        pruned = exporter.prune(boundary) if boundary is not None else None
        return exported, pruned
    finally:
        con.close()
