"""``fleetwatch analytics run``: the window jobs over a Parquet archive on an engine, their aggregates to Parquet.

::

    engine = SparkEngine("/srv/archive", master="local[2]")        # or DuckDBEngine("/srv/archive")
    summary = run_archive(engine, archive_jobs(specs), start, end, "/srv/out")
    # /srv/out/rollup_minute/windows-20261102T0000-20261103T0000.parquet, ... and /srv/out/_run.json

The jobs are the live ones (:mod:`analytics.rollups`, :mod:`analytics.slo.sli_job`,
:mod:`analytics.shadow.jobs`, :mod:`analytics.drift.jobs`), computing with
their own ``compute``; only the reader changes. A query over ``span_rows``
goes to the engine; a query of the run's state (a drift job's references
and stored hours) to an in-memory DuckDB holding the analytics tables. The
engine derives ``ingest_marks`` once (one row per minute of data); a copy
sits in the state, which answers the queries that read the marks alone
(each job's raw-time bounds lookups: on Spark, a second or so of planning
and scheduling each, saved). In the state, each computed span
replaces its windows exactly as the live runner does
(:func:`analytics.jobs.framework.replace_windows`). Spans are a day of
windows at most (a window if longer), oldest first.

OUT holds one directory per output table with the columns and types of
the DuckDB table, and ``_run.json`` (engine, window, jobs and their
tables), which ``fleetwatch analytics load`` reads
(:mod:`analytics.engines.load`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics.engines.inputs import MARKS_TABLE, engine_relations
from analytics.jobs.framework import WindowJob, floor_time, replace_windows
from collector.store.files import open_database

RUN_FILE = "_run.json"
RUN_FORMAT = "fleetwatch-analytics-run/1"
SPAN = timedelta(days=1)


@dataclass
class RunSummary:
    """What one run wrote: rows per output table, and seconds per job."""

    engine: str
    start: datetime
    end: datetime
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def archive_jobs(slo_specs: Sequence = (), shadow=None, drift=None, only: Sequence[str] = ()) -> list[WindowJob]:
    """The window jobs an archive run computes: rollups, event SLIs, shadow and ground truth, drift."""
    from analytics.drift.jobs import drift_jobs
    from analytics.rollups import rollup_jobs
    from analytics.shadow.jobs import shadow_jobs
    from analytics.slo.sli_job import SliMinute

    jobs = rollup_jobs() + shadow_jobs(shadow) + drift_jobs(drift)
    events = SliMinute(slo_specs)
    if events.specs:  # freshness is windowed by receive time over every signal: not from the span archive
        jobs.append(events)
    if only:
        unknown = sorted(set(only) - {job.name for job in jobs})
        if unknown:
            raise ValueError(f"unknown job {unknown[0]!r}: the archive jobs are {', '.join(j.name for j in jobs)}")
        jobs = [job for job in jobs if job.name in only]
    return jobs


def supported_jobs(engine, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """``names`` split into the jobs ``engine`` runs and those it does not (``engine.unsupported_jobs``)."""
    unsupported = getattr(engine, "unsupported_jobs", {})
    return [n for n in names if n not in unsupported], [n for n in names if n in unsupported]


def state_database(engine) -> duckdb.DuckDBPyConnection:
    """Where a run keeps its results: the engine's own connection (DuckDB) or an in-memory DuckDB with the
    analytics tables."""
    con = getattr(engine, "state", None)
    if con is None:
        con = open_database(":memory:")
    from analytics.schema import ANALYTICS

    for step in ANALYTICS.steps:
        for statement in step.statements:
            con.execute(statement)
    return con


class RoutedRead:
    """The jobs' ``read``: archive relations from the engine, everything else from the run's state."""

    def __init__(self, engine, state: duckdb.DuckDBPyConnection) -> None:
        self.engine = engine
        self.state = state

    def __call__(self, sql: str, params: dict | None = None) -> pa.Table:
        if self.engine is not None and engine_relations(sql) - {MARKS_TABLE}:
            return self.engine.read(sql, params)
        return self.state.sql(sql, params=params or None).to_arrow_table()


def copy_marks(engine, state: duckdb.DuckDBPyConnection) -> None:
    """The engine's ``ingest_marks`` into the run's state (the DuckDB engine's state already holds them)."""
    if getattr(engine, "state", None) is state:
        return
    state.register("engine_marks", engine.read(f"SELECT * FROM {MARKS_TABLE}"))
    state.execute(f"CREATE OR REPLACE TEMP TABLE {MARKS_TABLE} AS SELECT * FROM engine_marks")
    state.unregister("engine_marks")


def run_archive(engine, jobs: Sequence[WindowJob], start: datetime, end: datetime, out: str | Path,
                progress=None) -> RunSummary:
    """Compute ``jobs`` for the windows of [start, end) on ``engine`` and write their aggregates under ``out``."""
    if not start < end:
        raise ValueError(f"--from must be before --to, got {start.isoformat()} and {end.isoformat()}")
    _, refused = supported_jobs(engine, [job.name for job in jobs])
    if refused:
        raise ValueError(f"{refused[0]} does not run on {engine.name}: {engine.unsupported_jobs[refused[0]]}")
    out = Path(out)
    state = state_database(engine)
    copy_marks(engine, state)
    read = RoutedRead(engine, state)
    summary = RunSummary(engine.name, start, end)
    covered: dict[str, dict] = {}  # job -> the windows it replaced and its tables
    for job in jobs:
        clock = time.perf_counter()
        first, last = floor_time(start, job.window), _ceil_time(end, job.window)
        span = max(job.window, SPAN)
        at = first
        while at < last:
            until = min(at + span, last)
            output = job.compute(read, at, until)
            state.execute("BEGIN")
            replace_windows(state, job, at, until, output.tables)
            state.execute("COMMIT")
            at = until
        covered[job.name] = {"from": first.isoformat(), "to": last.isoformat(), "tables": list(job.outputs)}
        summary.seconds[job.name] = round(time.perf_counter() - clock, 3)
        if progress:
            progress(f"{job.name}: {first.isoformat()} to {last.isoformat()} in {summary.seconds[job.name]:.1f} s")
    out.mkdir(parents=True, exist_ok=True)
    name = f"windows-{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}.parquet"
    for job_span in covered.values():
        for table in job_span["tables"]:
            directory = out / table
            directory.mkdir(exist_ok=True)
            target = directory / name
            tmp = directory / f".{name}.tmp"
            state.execute(f"COPY (SELECT * FROM {table} ORDER BY ALL) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)")
            tmp.replace(target)  # whole or absent: a reader never sees half a file
            summary.rows[table] = state.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    manifest = {"format": RUN_FORMAT, "engine": engine.name, "from": start.isoformat(), "to": end.isoformat(),
                "file": name, "jobs": covered, "rows": summary.rows, "seconds": summary.seconds}
    (out / RUN_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    if getattr(engine, "state", None) is not state:
        state.close()
    return summary


def _ceil_time(t: datetime, window: timedelta) -> datetime:
    floor = floor_time(t, window)
    return floor if floor == t else floor + window
