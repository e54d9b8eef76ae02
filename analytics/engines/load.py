"""``fleetwatch analytics load``: an archive run's aggregates into the central DuckDB file, window by window.

::

    loaded = load_run("central.duckdb", "/srv/out")      # {table: rows}; no server may hold the file

For every job of the run (``OUT/_run.json``) the windows it covered are
replaced in one transaction -- the rows the live job would replace for
that span (:meth:`WindowJob.replaced_rows`), then the run's rows -- so
loading twice, or loading a re-run, leaves each window once. The job's
watermark (``job_state``) moves to the end of the run if it was behind, so
that a scheduler on the central file does not recompute the loaded windows
from raw data it does not hold; ``job_runs`` records the load (reason
``loaded``). Alerts, reports, the read API and dashboards then read the
tables as if the jobs had run there.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

from analytics.engines.run import RUN_FILE, RUN_FORMAT, archive_jobs
from analytics.jobs.framework import replace_windows
from collector.store.files import open_database
from collector.store.migrations import migrate


def read_manifest(out: str | Path) -> dict:
    path = Path(out) / RUN_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{out}: no {RUN_FILE} (not the output of fleetwatch analytics run)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if manifest.get("format") != RUN_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {RUN_FORMAT!r}")
    return manifest


def load_run(db: str, out: str | Path) -> dict[str, int]:
    """Replace the windows of the run in ``out`` in the DuckDB file ``db``; returns the rows loaded per table."""
    from analytics.schema import ANALYTICS
    from collector.store.versions import COLLECTOR

    manifest = read_manifest(out)
    jobs = {job.name: job for job in archive_jobs()}
    unknown = sorted(set(manifest["jobs"]) - set(jobs) - {"slo_sli_minute"})
    if unknown:
        raise ValueError(f"{out}: job {unknown[0]!r} is not an archive job")
    if "slo_sli_minute" in manifest["jobs"]:
        from analytics.slo.sli_job import SliMinute

        jobs["slo_sli_minute"] = SliMinute([])  # only its windows and tables are needed here
    tables = {name: {table: pq.read_table(Path(out) / table / manifest["file"]) for table in span["tables"]}
              for name, span in manifest["jobs"].items()}
    con = open_database(db)
    loaded: dict[str, int] = {}
    try:
        migrate(con, [COLLECTOR, ANALYTICS])
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        con.execute("BEGIN")
        for name, span in manifest["jobs"].items():
            start, end = datetime.fromisoformat(span["from"]), datetime.fromisoformat(span["to"])
            replace_windows(con, jobs[name], start, end, tables[name])
            rows = sum(t.num_rows for t in tables[name].values())
            con.execute("INSERT INTO job_runs VALUES (?, ?, ?, 'loaded', ?, ?, 0, ?, 'ok', NULL)",
                        [name, start, end, now, now, rows])
            # A job new to the file has seen the marks already there: they are not late data for it.
            con.execute("INSERT INTO job_state SELECT ?, ?, (SELECT coalesce(max(seq), 0) FROM ingest_marks), ? "
                        "ON CONFLICT (job) DO UPDATE SET watermark = greatest(job_state.watermark, "
                        "excluded.watermark), updated_at = excluded.updated_at", [name, end, now])
            loaded.update({table: t.num_rows for table, t in tables[name].items()})
        con.execute("COMMIT")
    finally:
        con.close()
    return loaded
