"""The per-minute SLI job: good and total events per SLO, group and minute, in DuckDB SQL.

A :class:`~analytics.jobs.framework.WindowJob` like the golden-signal
rollups, so it inherits their guarantees (idempotent minutes, watermark,
late data re-opening exactly the minutes it touches)::

    job = SliMinute(load_slo_file("slos.yaml"))
    runner = JobRunner(store, [job])
    runner.run_due(job.name, now)

Rows of ``slo_sli_minute``: ``window_start``, ``slo``, the five dimensions
(the SLO's ``group_by`` ones filled, the others NULL), ``group_key`` (the
group as a JSON object, ``{}`` for an ungrouped SLO), ``good`` and ``total``.
A minute and group without events has no row: no data, which the burn-rate
code tells apart from zero errors. Window sums of these rows are the counts
:func:`analytics.slo.rules.evaluate_severity` takes.

Kinds computed here: ``success`` (status not ERROR) and ``latency``
(``duration_ns <= threshold``, exact), both over inference spans, windowed
by skew-corrected event time as the rollups are. ``freshness`` and
``deployment`` SLOs are skipped by this job (see docs/slo.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pyarrow as pa

from analytics.jobs.framework import JobOutput, Read
from analytics.rollups import _inference_rows, _SpanRollup
from analytics.slo.spec import DIMENSIONS, SloSpec
from collector.store.marks import raw_time_bounds

COMPUTED_KINDS = ("success", "latency")
ERROR_STATUS = 2  # span_rows.status_code of OTLP STATUS_CODE_ERROR

SLI_MINUTE_DDL = f"""
CREATE TABLE IF NOT EXISTS slo_sli_minute (
    window_start TIMESTAMP NOT NULL,
    slo VARCHAR NOT NULL,
    {", ".join(f"{d} VARCHAR" for d in DIMENSIONS)},
    group_key VARCHAR NOT NULL,
    good UBIGINT NOT NULL,
    total UBIGINT NOT NULL
)
"""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def good_condition(spec: SloSpec) -> str:
    """SQL that is true for a good event of ``spec`` (validated specs only: numbers, no user text)."""
    if spec.sli.kind == "success":
        return f"status_code IS DISTINCT FROM {ERROR_STATUS}"
    if spec.sli.kind == "latency":
        return f"duration_ns <= {int(spec.sli.threshold_ns)}"
    raise ValueError(f"slo {spec.name}: the SLI job computes {', '.join(COMPUTED_KINDS)}, not {spec.sli.kind}")


def sli_minute_sql(spec: SloSpec) -> str:
    """Good and total per minute and group of one SLO (parameters $start, $end, $lo, $hi as the rollups)."""
    dims = ", ".join(d if d in spec.group_by else f"NULL::VARCHAR AS {d}" for d in DIMENSIONS)
    group_key = ("to_json(struct_pack(" + ", ".join(f"{d} := {d}" for d in sorted(spec.group_by)) + "))::VARCHAR"
                 if spec.group_by else "'{}'")
    where = " AND ".join(f"{d} IN ({', '.join(_quote(v) for v in values)})" for d, values in spec.filters.items())
    group_by = ", ".join(["window_start", *spec.group_by])
    return f"""
        WITH rows AS ({_inference_rows('minute')})
        SELECT window_start, {_quote(spec.name)} AS slo, {dims}, {group_key} AS group_key,
               (count(*) FILTER (WHERE {good_condition(spec)}))::UBIGINT AS good, count(*)::UBIGINT AS total
        FROM rows {f"WHERE {where}" if where else ""}
        GROUP BY {group_by}
    """


class SliMinute(_SpanRollup):
    """Per-minute good/total for every success and latency SLO of a spec list (several queries, one output)."""

    name = "slo_sli_minute"
    window = timedelta(minutes=1)
    outputs = ("slo_sli_minute",)

    def __init__(self, specs: Sequence[SloSpec]) -> None:
        self.specs = [s for s in specs if s.sli.kind in COMPUTED_KINDS]
        self.queries = [sli_minute_sql(s) for s in self.specs]

    def compute(self, read: Read, start: datetime, end: datetime) -> JobOutput:
        bounds = read(raw_time_bounds("span_rows"), {"start": start, "end": end})
        lo, hi = bounds["lo"][0].as_py(), bounds["hi"][0].as_py()
        if lo is None or not self.queries:  # no span was ever written into this span of time
            return JobOutput({self.outputs[0]: None}, rows_in=0)
        params = {"start": start, "end": end, "lo": lo, "hi": hi}
        tables = [read(sql, params) for sql in self.queries]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        # Events counted, once per SLO an inference falls under.
        return JobOutput({self.outputs[0]: table}, rows_in=sum(sum(t["total"].to_pylist()) for t in tables))


def sli_jobs(specs: Sequence[SloSpec]) -> list[SliMinute]:
    """The SLI jobs the evaluation of ``specs`` waits for."""
    return [SliMinute(specs)]
