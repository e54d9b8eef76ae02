"""The per-minute SLI jobs: good and total per SLO, group and minute, in DuckDB SQL.

Two window jobs, one table each, with the same columns
(:func:`analytics.slo.sli_sql.sli_table_ddl`)::

    jobs = sli_jobs(load_slo_file("slos.yaml"))     # [SliMinute, FreshnessMinute] as the kinds need
    runner = JobRunner(store, jobs)
    runner.run_due("slo_sli_minute", now)

``slo_sli_minute`` (this module): the event kinds, windowed by
skew-corrected event start time as the rollups are, so it inherits their
guarantees (idempotent minutes, watermark, late data re-opening exactly the
minutes it touches):

``success``
    inference spans whose status is not ERROR.
``latency``
    inference spans with ``duration_ns <= threshold`` (exact, the raw nanoseconds).
``deployment``
    ``deployment`` spans whose ``deployment.outcome`` attribute is
    ``success`` (a span without the attribute: status not ERROR). A
    deployment counts in the minute it *started*: the ingest marks that
    re-open windows for late data, and the row-group pruning, are on the
    start time, and a span is only exported once it has ended, so its
    outcome is known whichever minute it lands in.

``slo_freshness_minute``: see :mod:`analytics.slo.freshness_job`.

Rows: ``window_start``, ``slo``, the five dimensions (the SLO's ``group_by``
ones filled, the others NULL), ``group_key`` (the group as a JSON object,
``{}`` for an ungrouped SLO), ``good`` and ``total``. A minute and group
without events has no row: no data, which the burn-rate code tells apart
from zero errors. Window sums of these rows are the counts
:func:`analytics.slo.rules.evaluate_severity` takes.

All event SLOs are computed from one scan of ``span_rows`` per span of
minutes: an intermediate per minute x the five dimensions (x inference or
deployment) with one ``count(*) FILTER`` per distinct good condition, then
each SLO's filters and ``group_by`` applied to that small intermediate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from analytics.jobs.framework import JobOutput, Read, WindowJob
from analytics.rollups import inference_rows_sql, raw_span_bounds
from analytics.slo.freshness_job import FRESHNESS_TABLE, FreshnessMinute
from analytics.slo.sli_sql import GoodConditions, sli_table_ddl, slo_rows_sql
from analytics.slo.spec import DIMENSIONS, SloSpec

EVENT_KINDS = ("success", "latency", "deployment")
ERROR_STATUS = 2  # span_rows.status_code of OTLP STATUS_CODE_ERROR
# The span each event kind counts.
SPAN_NAMES = {"success": "inference", "latency": "inference", "deployment": "deployment"}
DEPLOYMENT_OUTCOME = """json_extract_string(attributes, '$."deployment.outcome"')"""

SLI_TABLE = "slo_sli_minute"
SLI_TABLES = (SLI_TABLE, FRESHNESS_TABLE)
SLI_MINUTE_DDL = sli_table_ddl(SLI_TABLE)


def good_condition(spec: SloSpec) -> str:
    """SQL that is true for a good event of ``spec`` (validated specs only: numbers, no user text)."""
    if spec.sli.kind == "success":
        return f"status_code IS DISTINCT FROM {ERROR_STATUS}"
    if spec.sli.kind == "latency":
        return f"duration_ns <= {int(spec.sli.threshold_ns)}"
    if spec.sli.kind == "deployment":
        # The name test first, so that the JSON is only parsed on deployment spans.
        return (f"name = 'deployment' AND "
                f"coalesce({DEPLOYMENT_OUTCOME} = 'success', status_code IS DISTINCT FROM {ERROR_STATUS})")
    raise ValueError(f"slo {spec.name}: the event SLI job computes {', '.join(EVENT_KINDS)}, not {spec.sli.kind}")


def event_sli_sql(specs: Sequence[SloSpec]) -> str:
    """Every event SLO's rows for [$start, $end) from one scan (parameters as :func:`inference_rows_sql`)."""
    conditions = GoodConditions()
    selects = []
    for spec in specs:
        column = conditions.column_for(good_condition(spec))
        selects.append(slo_rows_sql(spec, "fine", column, f"span_name = '{SPAN_NAMES[spec.sli.kind]}'"))
    names = tuple(sorted({SPAN_NAMES[s.sli.kind] for s in specs}))
    dims = ", ".join(DIMENSIONS)
    return f"""
        WITH rows AS ({inference_rows_sql('minute', names)}),
        fine AS MATERIALIZED (
            SELECT window_start, name AS span_name, {dims}, {conditions.counts_sql()}
            FROM rows GROUP BY window_start, name, {dims}
        )
        {" UNION ALL ".join(selects)}
    """


class SliMinute(WindowJob):
    """Per-minute good/total of every success, latency and deployment SLO of a spec list (one scan)."""

    name = SLI_TABLE
    window = timedelta(minutes=1)
    inputs = ("span_rows",)
    outputs = (SLI_TABLE,)

    def __init__(self, specs: Sequence[SloSpec]) -> None:
        self.specs = [s for s in specs if s.sli.kind in EVENT_KINDS]
        self.sql = event_sli_sql(self.specs) if self.specs else ""

    def compute(self, read: Read, start: datetime, end: datetime) -> JobOutput:
        params = raw_span_bounds(read, start, end)
        if params is None or not self.specs:
            return JobOutput({SLI_TABLE: None}, rows_in=0)
        table = read(self.sql, params)
        # Events counted, once per SLO an event falls under.
        return JobOutput({SLI_TABLE: table}, rows_in=sum(table["total"].to_pylist()) if table.num_rows else 0)


def sli_jobs(specs: Sequence[SloSpec]) -> list[WindowJob]:
    """The SLI jobs a spec list needs: events (success, latency, deployment) and freshness, each if used."""
    jobs: list[WindowJob] = []
    if any(s.sli.kind in EVENT_KINDS for s in specs):
        jobs.append(SliMinute(specs))
    if any(s.sli.kind == "freshness" for s in specs):
        jobs.append(FreshnessMinute(specs))
    return jobs


def sli_table(spec: SloSpec) -> str:
    """The table holding the per-minute good/total of ``spec``."""
    return FRESHNESS_TABLE if spec.sli.kind == "freshness" else SLI_TABLE
