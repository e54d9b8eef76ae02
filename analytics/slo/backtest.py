"""Backtest: the live SLO rules, with the live code, at every minute of a past range of a file no server holds.

::

    for transition in backtest("fleet.duckdb", load_slo_file("slos.yaml"), start, end):
        print(json.dumps(transition.to_json()))   # {"at", "slo", "group", "severity", "state", "burn_rates", ...}

The file is attached read-only to an in-memory DuckDB. The SLI jobs of the
specs compute their minutes from the raw tables into memory (a period
before ``start`` too, so that the first instant sees full windows), unless
``reuse_sli`` says the file's own SLI tables were computed by a server with
the same SLO definitions; then the
:class:`~analytics.slo.evaluator.SloEvaluator` steps through the range a
day at a time, exactly as :class:`~analytics.slo.job.SloJob` does live,
without announcing anything. Alerts start from nothing at ``start``: an
alert already burning then is pending first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa

from analytics.jobs.framework import floor_time
from analytics.slo.evaluator import SloEvaluator, Transition
from analytics.slo.lifecycle import LifecycleConfig
from analytics.slo.schema import SLI_DDL
from analytics.slo.sli_job import sli_jobs
from analytics.slo.spec import SloSpec
from collector.store.files import open_database

log = logging.getLogger("fleetwatch.slo")
MINUTE = timedelta(minutes=1)


def _reader(con: duckdb.DuckDBPyConnection) -> Callable[[str, dict], pa.Table]:
    def read(sql: str, params: dict | None = None) -> pa.Table:
        return con.sql(sql, params=params or None).to_arrow_table()
    return read


def open_for_backtest(path: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with ``path`` attached read-only behind it (its tables readable by name)."""
    open_database(path, read_only=True).close()  # a foreign or locked file is named in one line here
    con = open_database(":memory:")
    con.execute("ATTACH ? AS fleet (READ_ONLY)", [path])
    # Tables created here (the SLIs recomputed) shadow the file's own of the same name.
    con.execute("SET search_path = 'memory.main,fleet.main'")
    return con


def compute_slis(con: duckdb.DuckDBPyConnection, specs: Sequence[SloSpec], start: datetime, end: datetime,
                 progress: Callable[[str], None] | None = None) -> None:
    """Run the SLI jobs of ``specs`` over ``[start, end)`` into in-memory tables of ``con``."""
    for ddl in SLI_DDL:
        con.execute(ddl)
    read = _reader(con)
    for job in sli_jobs(specs):
        at, step = start, job.window * job.chunk
        while at < end:
            until = min(at + step, end)
            output = job.compute(read, at, until)
            for table, rows in output.tables.items():
                if rows is not None and rows.num_rows:
                    con.register("job_output", rows)
                    con.execute(f"INSERT INTO memory.main.{table} BY NAME SELECT * FROM job_output")
                    con.unregister("job_output")
            at = until
        if progress is not None:
            progress(f"{job.name}: {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} computed")


def backtest(path: str, specs: Sequence[SloSpec], start: datetime, end: datetime, *,
             lifecycle: LifecycleConfig | None = None, reuse_sli: bool = False,
             progress: Callable[[str], None] | None = None) -> Iterator[Transition]:
    """Each alert transition of ``specs`` over ``[start, end)`` of the file at ``path``, in time order."""
    if not specs:
        raise ValueError("backtest: the SLO file has no SLOs")
    start, end = floor_time(start, MINUTE), floor_time(end, MINUTE)
    if end <= start:
        raise ValueError(f"backtest: --to ({end}) must be after --from ({start})")
    con = open_for_backtest(path)
    try:
        if not reuse_sli:
            lookback = max(spec.period_duration for spec in specs)
            compute_slis(con, specs, start - lookback, end, progress)
        evaluator = SloEvaluator(specs, lifecycle)
        read = _reader(con)
        at = start
        while at < end:
            until = min(at + evaluator.max_chunk, end)
            result = evaluator.evaluate(read, at, until)
            yield from sorted(result.transitions, key=lambda t: (t.at, t.slo, t.severity, t.alertname))
            at = until
    finally:
        con.close()
