"""The scheduled drift job: hourly summaries per model version x cohort x feature, and results per hour and day.

::

    job = DriftJob(DriftJobConfig())
    runner = JobRunner(store, [job])
    runner.run_due(job.name, now)            # what APScheduler calls

Each hour, for every model version with edge inferences in it:

1. the version's reference (:mod:`analytics.drift.references`): an
   imported one, else the pinned one (the first ``reference_days`` whole
   hours after its first edge inference, computed once at the first hour
   after they closed), or the trailing one of the day (the previous
   ``reference_days`` days, computed at the day's first hour). Hours
   before a version's reference exists get no result: they are the reference;
2. the hour's :class:`~analytics.drift.profiles.Summary` of every feature on
   the reference's layout, per cohort -- the whole version (``{}``) and each
   of ``cohorts`` (``{"site": "atl-factory-2"}``, ...) -- in DuckDB SQL,
   kept in ``drift_summaries`` (JSON, mergeable: a day is the sum of its hours);
3. ``drift_results``: per window (``1h``, and ``1d``: the merged hours of
   its day so far), cohort and feature the indices, ``status`` (drifted |
   ok | insufficient_data), and one dataset row (feature ``*``) with the
   ``verdict`` (retrain | investigate | no_action; NULL when insufficient)
   and its reasons. Results are history: they are kept.

``span_rows`` is the input, so late data re-opens exactly its hours; the
day rows of the days those hours fall in are rebuilt from the stored hours
in the same transaction (:meth:`DriftJob.replaced_rows`).
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from datetime import datetime, timedelta

import pyarrow as pa

from analytics.drift.section import DriftJobConfig
from analytics.drift.profiles import Summary
from analytics.drift.references import (
    EVENT_HOUR,
    REFERENCE_SCHEMA,
    StoredReference,
    edge_params,
    edge_source,
    first_seen,
    in_force,
    load_references,
    reference_table,
    trailing_window,
    versions_by_hour,
    window_reference,
)
from analytics.drift.sql_text import run_read
from analytics.drift.verdict import DriftResult, evaluate_profiles, family_alpha, judge_profiles
from analytics.drift.wide_sql import Parts, WideFeature, group_parts
from analytics.jobs.framework import JobOutput, Read, WindowJob, floor_time

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
WHOLE_VERSION = "{}"
DATASET = "*"
METHODS = ("psi", "ks", "wasserstein", "jensen_shannon", "chi_square", "linf")
STATUS = {"drifted": "drifted", "stable": "ok", "insufficient data": "insufficient_data"}
VERDICT = {"retrain": "retrain", "investigate": "investigate", "no action": "no_action"}

SUMMARIES_DDL = """
CREATE TABLE IF NOT EXISTS drift_summaries (
    window_start TIMESTAMP NOT NULL,   -- the hour
    model_name VARCHAR NOT NULL, model_version VARCHAR NOT NULL,
    cohort VARCHAR NOT NULL,           -- JSON object: {} (the whole version) or {"site": "..."}, ...
    feature VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    reference_kind VARCHAR NOT NULL, reference_start TIMESTAMP,   -- which reference's layout
    count BIGINT NOT NULL, missing BIGINT NOT NULL,
    summary VARCHAR NOT NULL           -- analytics.drift.profiles.Summary as JSON
)
"""

RESULTS_DDL = """
CREATE TABLE IF NOT EXISTS drift_results (
    window_start TIMESTAMP NOT NULL, window_length VARCHAR NOT NULL,   -- 1h | 1d
    window_end TIMESTAMP NOT NULL, hours INTEGER NOT NULL,             -- hours of data merged (1d: up to 24)
    model_name VARCHAR NOT NULL, model_version VARCHAR NOT NULL, cohort VARCHAR NOT NULL,
    feature VARCHAR NOT NULL,          -- * : the dataset row of the cohort
    kind VARCHAR,                      -- numeric | categorical (NULL for *)
    status VARCHAR NOT NULL,           -- drifted | ok | insufficient_data
    verdict VARCHAR,                   -- *: retrain | investigate | no_action (NULL: insufficient data)
    drifted_features VARCHAR[],        -- *: the drifted features, most severe first
    psi DOUBLE, ks DOUBLE, wasserstein DOUBLE, jensen_shannon DOUBLE, chi_square DOUBLE, linf DOUBLE,
    p_value DOUBLE, alpha_corrected DOUBLE, severity DOUBLE, missing_share_change DOUBLE,
    reference_count BIGINT, current_count BIGINT,
    reference_kind VARCHAR NOT NULL, reference_start TIMESTAMP,
    reasons VARCHAR[],
    detail VARCHAR                     -- the feature's JSON (values, distribution) or the dataset verdict's
)
"""

DRIFT_DDL = [SUMMARIES_DDL, RESULTS_DDL]

_SUMMARY_SCHEMA = pa.schema([
    ("window_start", pa.timestamp("us")), ("model_name", pa.string()), ("model_version", pa.string()),
    ("cohort", pa.string()), ("feature", pa.string()), ("kind", pa.string()), ("reference_kind", pa.string()),
    ("reference_start", pa.timestamp("us")), ("count", pa.int64()), ("missing", pa.int64()),
    ("summary", pa.string()),
])
_RESULT_SCHEMA = pa.schema([
    ("window_start", pa.timestamp("us")), ("window_length", pa.string()), ("window_end", pa.timestamp("us")),
    ("hours", pa.int32()), ("model_name", pa.string()), ("model_version", pa.string()), ("cohort", pa.string()),
    ("feature", pa.string()), ("kind", pa.string()), ("status", pa.string()), ("verdict", pa.string()),
    ("drifted_features", pa.list_(pa.string())),
    *[(m, pa.float64()) for m in METHODS], ("p_value", pa.float64()), ("alpha_corrected", pa.float64()),
    ("severity", pa.float64()), ("missing_share_change", pa.float64()), ("reference_count", pa.int64()),
    ("current_count", pa.int64()), ("reference_kind", pa.string()), ("reference_start", pa.timestamp("us")),
    ("reasons", pa.list_(pa.string())), ("detail", pa.string()),
])


def cohort_rollup(groups: dict[tuple, list[Parts]]) -> dict[tuple[int, str | None], list[Parts]]:
    """Add the parts of every combination of cohort values up to each cohort: ``(d, value)`` with ``d`` 0 (the
    whole version) or 1 + the index of the dimension. The scan aggregates once per row; this only adds its
    few combinations."""
    out: dict[tuple[int, str | None], list[Parts]] = {}
    for values, parts in groups.items():
        for key in [(0, None), *((d + 1, v) for d, v in enumerate(values) if v is not None)]:
            if key in out:
                for total, part in zip(out[key], parts):
                    total.add(part)
            else:
                out[key] = [copy.deepcopy(part) for part in parts]
    return out


def drifted_sites(read, model: str, version: str, start: datetime, end: datetime,
                  span_results: list[dict]) -> list[str]:
    """The sites where another version of ``model`` was drifted in an hour of [start, end) (stored results and
    this span's ``span_results``): a version rolled out during an incident must not learn the incident as
    normal, so its pinned reference leaves these sites out."""
    stored = run_read(read, "SELECT DISTINCT json_extract_string(cohort, '$.site') FROM drift_results "
                            "WHERE window_length = '1h' AND feature = '*' AND status = 'drifted' "
                            "AND model_name = $model AND model_version <> $version AND window_start >= $start "
                            "AND window_start < $end AND json_extract_string(cohort, '$.site') IS NOT NULL",
                      {"model": model, "version": version, "start": start, "end": end})
    sites = {site for (site,) in stored}
    sites |= {json.loads(r["cohort"]).get("site") for r in span_results
              if r["window_length"] == "1h" and r["feature"] == DATASET and r["status"] == "drifted"
              and r["model_name"] == model and r["model_version"] != version and start <= r["window_start"] < end}
    return sorted(s for s in sites if s)


def cohort_key(cohorts: list[str], dimension: int, value: str | None) -> str:
    """The ``cohort`` column of :func:`cohort_rollup`'s group: ``{}`` or ``{"site":"atl-factory-2"}``."""
    return WHOLE_VERSION if dimension == 0 else json.dumps({cohorts[dimension - 1]: value}, separators=(",", ":"))


class DriftJob(WindowJob):
    """Hourly drift summaries and hourly / daily results per model version, cohort and feature (module docstring)."""

    name = "drift_hour"
    window = HOUR
    delay = timedelta(minutes=5)
    chunk = 24
    inputs = ("span_rows",)
    outputs = ("drift_references", "drift_summaries", "drift_results")

    def __init__(self, config: DriftJobConfig | None = None) -> None:
        self.config = (config or DriftJobConfig()).validate()
        self.drift_config = self.config.drift_config()

    def replaced_rows(self, table: str, start: datetime, end: datetime) -> tuple[str, list]:
        if table != "drift_results":
            return super().replaced_rows(table, start, end)
        # The days the span touches are rebuilt whole from their stored and new hours.
        day_start, day_end = floor_time(start, DAY), floor_time(end - timedelta(microseconds=1), DAY) + DAY
        return ("(window_length = '1h' AND window_start >= ? AND window_start < ?) OR "
                "(window_length = '1d' AND window_start >= ? AND window_start < ?)", [start, end, day_start, day_end])

    # -- the computation -------------------------------------------------
    def compute(self, read: Read, start: datetime, end: datetime) -> JobOutput:
        stored = load_references(read)
        # References this span wrote before are re-emitted as they are: a reference is computed once.
        kept = read("SELECT * FROM drift_references WHERE window_start >= $start AND window_start < $end",
                    {"start": start, "end": end}).select(REFERENCE_SCHEMA.names).cast(REFERENCE_SCHEMA)
        references = in_force(stored)
        by_identity = {(r.model, r.version, r.kind, r.start): r for r in stored}
        new_references: list[pa.Table] = []
        summary_rows: list[dict] = []
        hourly: dict[tuple, dict[str, Summary]] = {}   # (hour, model, version, cohort) -> {feature: Summary}
        identity_of: dict[tuple, tuple] = {}
        rows_in = 0
        seen_first: dict[tuple[str, str], datetime] | None = None
        results: list[dict] = []
        present = versions_by_hour(read, start, end)
        scanned: dict[tuple, dict[datetime, dict]] = {}   # reference identity -> {hour: groups}
        hour = start
        while hour < end:
            for model, version in present.get(hour, ()):
                reference = references.get((model, version))
                if self._needs_reference(reference, hour):
                    if seen_first is None:
                        seen_first = first_seen(read)
                    reference = self._new_reference(read, model, version, hour, seen_first.get((model, version)),
                                                    results)
                    if reference is not None:
                        references[(model, version)] = by_identity[(model, version, reference.kind, reference.start)] \
                            = reference
                        new_references.append(reference_table(model, version, reference.summaries, reference.kind,
                                                              reference.start, reference.end, window_start=hour))
                if reference is None or not reference.summaries:
                    continue
                identity = (model, version, reference.kind, reference.start)
                if hour not in scanned.get(identity, {}):
                    # One scan for every hour of the span this reference stays in force for, not one per hour:
                    # a scale-out engine's cost is per query (about a second on Spark), not per row.
                    scanned[identity] = self._summarise(read, reference, hour, self._in_force_until(reference, hour,
                                                                                                    end))
                groups = scanned[identity].get(hour, {})
                for (cohort,), summaries in sorted(groups.items()):
                    hourly[(hour, model, version, cohort)] = summaries
                    identity_of[(hour, model, version, cohort)] = (model, version, reference.kind, reference.start)
                    if cohort == WHOLE_VERSION:
                        rows_in += max(s.total for s in summaries.values())
                    summary_rows += [_summary_row(hour, model, version, cohort, reference, s)
                                     for s in summaries.values()]
            # The hour's results now: a reference pinned at a later hour of this span leaves out what they flag.
            results += self._result_rows(hour, HOUR, {
                (model, version, cohort): (1, by_identity[identity_of[(h, model, version, cohort)]], summaries)
                for (h, model, version, cohort), summaries in sorted(hourly.items()) if h == hour})
            hour += HOUR
        results += self._day_rows(read, start, end, hourly, identity_of, by_identity)
        return JobOutput({"drift_references": pa.concat_tables([kept, *new_references]),
                          "drift_summaries": pa.Table.from_pylist(summary_rows, schema=_SUMMARY_SCHEMA),
                          "drift_results": pa.Table.from_pylist(results, schema=_RESULT_SCHEMA)}, rows_in=rows_in)

    def _summarise(self, read, reference: StoredReference, start: datetime,
                   end: datetime) -> dict[datetime, dict[tuple, dict[str, Summary]]]:
        """``{hour: {(cohort,): {feature: Summary}}}`` of the reference's version in the hours of [start, end):
        one scan of their spans for every hour, feature and cohort."""
        cohorts = self.config.cohorts
        layouts = {name: s.layout for name, s in reference.summaries.items()}
        source, exprs = edge_source(list(layouts), [f"{EVENT_HOUR} AS fw_hour", *cohorts])
        combinations = group_parts(read, [WideFeature(layout.kind, exprs[name]) for name, layout in layouts.items()],
                                   list(layouts.values()), source,
                                   params=edge_params(read, reference.model, reference.version, start, end),
                                   group_by=["fw_hour", *cohorts])
        by_hour: dict[datetime, dict[tuple, list[Parts]]] = defaultdict(dict)
        for (hour, *values), parts in combinations.items():
            by_hour[hour][tuple(values)] = parts
        return {hour: {(cohort_key(cohorts, dimension, value),):
                       {name: part.summary(layout) for (name, layout), part in zip(layouts.items(), parts)}
                       for (dimension, value), parts in cohort_rollup(groups).items()}
                for hour, groups in by_hour.items()}

    @staticmethod
    def _in_force_until(reference: StoredReference, hour: datetime, end: datetime) -> datetime:
        """Until when (at most ``end``) ``reference`` is the one in force from ``hour`` on: a trailing one until
        the day's end, the others for good."""
        return min(end, floor_time(hour, DAY) + DAY) if reference.kind == "trailing" else end

    def _needs_reference(self, reference: StoredReference | None, hour: datetime) -> bool:
        if reference is None:
            return True
        if reference.kind == "trailing":
            return reference.end != floor_time(hour, DAY)
        return False  # pinned and imported references never change

    def _new_reference(self, read, model: str, version: str, hour: datetime, first: datetime | None,
                       span_results: list[dict]) -> StoredReference | None:
        days = timedelta(days=self.config.reference_days)
        if self.config.reference == "trailing":
            ref_start, ref_end = trailing_window(floor_time(hour, DAY), self.config.reference_days)
        elif first is None:
            return None
        else:
            ref_start = floor_time(first, HOUR)
            ref_end = ref_start + days
            if ref_end > hour:
                return None  # the pinned window has not closed yet
        excluded = drifted_sites(read, model, version, ref_start, ref_end, span_results) \
            if self.config.reference == "pinned" else []
        summaries = window_reference(read, model, version, ref_start, ref_end, self.drift_config, excluded)
        if not summaries or not any(s.total for s in summaries.values()):
            return None
        return StoredReference(model, version, self.config.reference, ref_start, ref_end, summaries, hour)

    def _day_rows(self, read, start, end, hourly, identity_of, by_identity) -> list[dict]:
        """The 1d rows of every day [start, end) touches: its stored hours outside the span plus the new ones."""
        day_start, day_end = floor_time(start, DAY), floor_time(end - timedelta(microseconds=1), DAY) + DAY
        stored = read("SELECT window_start, model_name, model_version, cohort, reference_kind, reference_start, "
                      "summary FROM drift_summaries WHERE window_start >= $day_start AND window_start < $day_end "
                      "AND NOT (window_start >= $start AND window_start < $end)",
                      {"day_start": day_start, "day_end": day_end, "start": start, "end": end}).to_pylist()
        hours: dict[tuple, dict[tuple, dict[str, Summary]]] = defaultdict(dict)  # (day, m, v, c) -> identity -> ...
        hour_sets: dict[tuple, dict[tuple, set]] = defaultdict(lambda: defaultdict(set))
        newest: dict[tuple, tuple[datetime, tuple]] = {}

        def add(hour, model, version, cohort, identity, summary: Summary) -> None:
            key = (floor_time(hour, DAY), model, version, cohort)
            merged = hours[key].setdefault(identity, {})
            merged[summary.name] = merged[summary.name].merge(summary) if summary.name in merged else summary
            hour_sets[key][identity].add(hour)
            if key not in newest or hour >= newest[key][0]:
                newest[key] = (hour, identity)

        for row in stored:
            add(row["window_start"], row["model_name"], row["model_version"], row["cohort"],
                (row["model_name"], row["model_version"], row["reference_kind"], row["reference_start"]),
                Summary.from_json_text(row["summary"]))
        for (hour, model, version, cohort), summaries in hourly.items():
            for summary in summaries.values():
                add(hour, model, version, cohort, identity_of[(hour, model, version, cohort)], summary)
        families: dict[datetime, dict[tuple, tuple]] = defaultdict(dict)  # day -> (model, version, cohort) -> ...
        for key in sorted(hours):
            day, model, version, cohort = key
            identity = newest[key][1]  # a day that changed reference is judged on its newest one
            reference = by_identity.get(identity)
            if reference is not None:
                families[day][(model, version, cohort)] = (len(hour_sets[key][identity]), reference,
                                                           hours[key][identity])
        return [row for day, cohorts in families.items() for row in self._result_rows(day, DAY, cohorts)]

    def _result_rows(self, window_start: datetime, length: timedelta,
                     cohorts: dict[tuple, tuple[int, StoredReference, dict[str, Summary]]]) -> list[dict]:
        """The rows of one window, ``cohorts`` keyed by (model, version, cohort), judged as one family of tests:
        the correction for many tests counts every feature x cohort x version of the run (not each cohort's
        features alone), so that a hundred cohorts of noise do not make a hundred chances of a false flag."""
        evaluated = {}
        for key, (_, reference, current) in cohorts.items():
            complete = {name: current.get(name) or Summary(s.layout, (0,) * s.layout.bins)
                        for name, s in reference.summaries.items()}
            evaluated[key] = evaluate_profiles(reference.summaries, complete, self.drift_config)
        alpha = family_alpha(list(evaluated.values()), self.drift_config)
        rows = []
        for (model, version, cohort), (hours, reference, _) in cohorts.items():
            rows += self._cohort_rows(window_start, length, hours, model, version, cohort, reference,
                                      judge_profiles(evaluated[(model, version, cohort)], self.drift_config, alpha))
        return rows

    def _cohort_rows(self, window_start: datetime, length: timedelta, hours: int, model: str, version: str,
                     cohort: str, reference: StoredReference, result: DriftResult) -> list[dict]:
        base = {"window_start": window_start, "window_length": "1h" if length == HOUR else "1d",
                "window_end": window_start + length, "hours": hours, "model_name": model, "model_version": version,
                "cohort": cohort, "reference_kind": reference.kind, "reference_start": reference.start}
        rows = [_dataset_row(base, result)]
        for feature in result.features:
            values = feature.values
            rows.append({**base, "feature": feature.name, "kind": feature.kind, "status": STATUS[feature.status],
                         **{m: values.get("cramers_v" if m == "chi_square" else m) for m in METHODS},
                         "p_value": feature.p_value, "alpha_corrected": feature.alpha, "severity": feature.severity,
                         "missing_share_change": feature.missing.get("change"),
                         "reference_count": feature.reference_count, "current_count": feature.current_count,
                         "reasons": feature.reasons, "detail": json.dumps(feature.to_json(), sort_keys=True)})
        return rows


def _dataset_row(base: dict, result: DriftResult) -> dict:
    verdict = VERDICT.get(result.recommendation)
    status = "insufficient_data" if verdict is None else "ok" if verdict == "no_action" else "drifted"
    return {**base, "feature": DATASET, "status": status, "verdict": verdict,
            "drifted_features": [f.name for f in result.drifted],
            "severity": max((f.severity for f in result.features), default=0.0),
            "reference_count": max((f.reference_count for f in result.features), default=0),
            "current_count": max((f.current_count for f in result.features), default=0),
            "reasons": result.reasons, "detail": json.dumps(result.to_json()["verdict"], sort_keys=True)}


def _summary_row(hour: datetime, model: str, version: str, cohort: str, reference: StoredReference,
                 summary: Summary) -> dict:
    return {"window_start": hour, "model_name": model, "model_version": version, "cohort": cohort,
            "feature": summary.name, "kind": summary.kind, "reference_kind": reference.kind,
            "reference_start": reference.start, "count": summary.count, "missing": summary.missing,
            "summary": summary.to_json_text()}


def drift_jobs(config: DriftJobConfig | None = None) -> list[WindowJob]:
    return [DriftJob(config)]
