"""The hourly shadow and ground-truth jobs: edge inferences joined on ``request_id``, in DuckDB SQL.

::

    config = ShadowConfig(max_lag=12 * 3600)
    runner = JobRunner(store, shadow_jobs(config))
    runner.run_due("shadow_hour", now)
    runner.run_due("ground_truth_hour", now)

Both jobs are windowed by the EDGE inference's skew-corrected event time
(hours), grouped by model, the edge model's version and cohort (site,
region, device class, firmware), and store only mergeable counts and sums
(docs/shadow.md derives agreement, kappa, bias, RMSE, accuracy from them):

``shadow_hour`` / ``shadow_flips_hour``
    edge requests (edge inferences with a request id), ``matched`` (a cloud
    inference of the same request id within ``max_lag``), ``edge_unmatched``,
    ``shadow_orphans`` (cloud inferences with no edge inference within
    ``max_lag``: rows of the cloud's own hour, model version and cohort
    NULL), agreement counts, score-delta and value-error sums and
    histograms; the flip matrix as one row per (edge label, cloud label).
``ground_truth_hour``
    labelled edge inferences (a ``ground_truth`` span of the same request
    id, up to ``label_horizon`` later), correct counts or error sums for the
    edge model and for its matched cloud shadow, and the label lag.

**Late rows.** A shadow or a label lands in another minute than the
inference it belongs to, so the ingest marks alone would re-open the wrong
hour. Each job maps the marked minutes to the hours of the edge inferences
whose request ids the cloud or label rows of those minutes carry
(:meth:`late_windows`), besides the minutes' own hours (late edge
inferences, orphan shadows); ``shadow_hour`` also maps late edge
inferences to the hours of their shadows, which stop being orphans. A label that arrives days later therefore
recomputes exactly its inference's hour, whatever the label's own time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from analytics.jobs.framework import JobOutput, Read, WindowJob, floor_time
from analytics.shadow.bins import (LABEL_LAG_COLUMNS, LABEL_LAG_EDGES_S, SCORE_DELTA_COLUMNS, SCORE_DELTA_EDGES,
                                   VALUE_ERROR_COLUMNS, VALUE_ERROR_EDGES, bin_sql, pivot_sql)
from analytics.shadow.config import ShadowConfig
from collector.store.marks import raw_time_bounds
from collector.store.schema import corrected_time

COHORT = ("site", "region", "device_class", "firmware_version")
KEYS = ("model_name", "model_version", *COHORT)
_KEY_DDL = "model_name VARCHAR, model_version VARCHAR, " + ", ".join(f"{c} VARCHAR" for c in COHORT)
# Slack on the raw (device) start time when pruning: a device clock wrong by up to a day still matches.
_RAW_SLACK = timedelta(days=1)

SHADOW_COUNTS = ("edge_requests", "matched", "edge_unmatched", "shadow_orphans", "compared", "agreements",
                 "score_pairs", "value_pairs")
SHADOW_SUMS = ("score_delta_sum", "score_delta_sq_sum", "error_sum", "error_sq_sum", "abs_error_sum")
SHADOW_HOUR_DDL = f"""
CREATE TABLE IF NOT EXISTS shadow_hour (
    window_start TIMESTAMP NOT NULL,     -- hour of the edge inference (of the cloud one for orphans)
    {_KEY_DDL},
    cloud_version VARCHAR,               -- the shadow model's version (the newest seen)
    {", ".join(f"{c} UBIGINT NOT NULL" for c in SHADOW_COUNTS)},
    {", ".join(f"{c} DOUBLE NOT NULL" for c in SHADOW_SUMS)},
    {", ".join(f"{c} UBIGINT NOT NULL" for c in SCORE_DELTA_COLUMNS + VALUE_ERROR_COLUMNS)}
)
"""
SHADOW_FLIPS_DDL = f"""
CREATE TABLE IF NOT EXISTS shadow_flips_hour (
    window_start TIMESTAMP NOT NULL, {_KEY_DDL},
    edge_label VARCHAR NOT NULL, cloud_label VARCHAR NOT NULL, pairs UBIGINT NOT NULL
)
"""
GROUND_TRUTH_COUNTS = ("inferences", "labelled", "class_labelled", "correct", "value_labelled",
                       "cloud_class_labelled", "cloud_correct", "cloud_value_labelled")
GROUND_TRUTH_SUMS = ("error_sum", "error_sq_sum", "abs_error_sum", "cloud_error_sum", "cloud_error_sq_sum",
                     "cloud_abs_error_sum", "lag_sum_s")
GROUND_TRUTH_HOUR_DDL = f"""
CREATE TABLE IF NOT EXISTS ground_truth_hour (
    window_start TIMESTAMP NOT NULL,     -- hour of the edge inference
    {_KEY_DDL},
    {", ".join(f"{c} UBIGINT NOT NULL" for c in GROUND_TRUTH_COUNTS)},
    {", ".join(f"{c} DOUBLE NOT NULL" for c in GROUND_TRUTH_SUMS)},
    lag_max_s DOUBLE,
    {", ".join(f"{c} UBIGINT NOT NULL" for c in LABEL_LAG_COLUMNS)}
)
"""
SHADOW_DDL = [SHADOW_HOUR_DDL, SHADOW_FLIPS_DDL, GROUND_TRUTH_HOUR_DDL]

_T = corrected_time("start_time")
_COLUMNS = ("trace_id_hi, trace_id_lo, span_id, request_id, model_name, model_version, "
            + ", ".join(COHORT) + ", prediction_label, prediction_score, prediction_value, label, label_value, "
            "received_at")


def _rows(kind: str, suffix: str) -> str:
    """Spans of ``kind`` (edge, cloud, label) in [$start_{suffix}, $end_{suffix}) of corrected time."""
    where = {"edge": "name = 'inference' AND inference_mode = 'edge'",
             "cloud": "name = 'inference' AND inference_mode = 'cloud'",
             "label": "name = 'ground_truth'"}[kind]
    return f"""
        SELECT {_COLUMNS}, {_T} AS t FROM span_rows
        WHERE {where} AND request_id IS NOT NULL
          AND start_time >= make_timestamp_ns($lo_{suffix}) AND start_time <= make_timestamp_ns($hi_{suffix})
          AND {_T} >= $start_{suffix} AND {_T} < $end_{suffix}
    """


_DT = "abs(epoch(c.t) - epoch(e.t))"


def _nearest_cloud(where: str = "TRUE") -> str:
    """Joins each edge row ``e`` (those where ``where`` holds) to its cloud shadow ``c``, if any within the lag.

    Adds the column ``nearest_rank``, which the caller keeps at 1 (a window
    function in a subquery rather than QUALIFY, which Spark SQL lacks).
    """
    return f"""
    LEFT JOIN clouds c ON c.request_id = e.request_id AND {_DT} <= $lag_s
    WHERE {where}
"""


# Several shadows of one request: the nearest in time answers it.
_NEAREST_RANK = f"""row_number() OVER (PARTITION BY e.trace_id_hi, e.trace_id_lo, e.span_id
                               ORDER BY {_DT} NULLS LAST, c.received_at DESC) AS nearest_rank"""


_KEY_LIST = ", ".join(KEYS)
_EDGE_SIDE_COLUMNS = ("window_start", *KEYS, "cloud_version", *SHADOW_COUNTS, *SHADOW_SUMS, *SCORE_DELTA_COLUMNS,
                      *VALUE_ERROR_COLUMNS)
# An orphan shadow row: its hour, model, cloud version and count; no edge version or cohort, zero elsewhere.
_ORPHAN_COLUMNS = {**{c: f"NULL::VARCHAR AS {c}" for c in KEYS},
                   **{c: f"0::UBIGINT AS {c}" for c in SHADOW_COUNTS + SCORE_DELTA_COLUMNS + VALUE_ERROR_COLUMNS},
                   **{c: f"0.0::DOUBLE AS {c}" for c in SHADOW_SUMS},
                   **{c: c for c in ("window_start", "model_name", "cloud_version", "shadow_orphans")}}

SHADOW_SQL = f"""
WITH edges AS ({_rows('edge', 'wide')}),
clouds AS ({_rows('cloud', 'wide')}),
pairs AS (
    SELECT * FROM (
        SELECT e.*, date_trunc('hour', e.t)::TIMESTAMP AS window_start, c.request_id IS NOT NULL AS matched,
               c.model_version AS cloud_version, c.prediction_label AS cloud_label,
               e.prediction_score - c.prediction_score AS score_delta, e.prediction_value - c.prediction_value AS err,
               {_NEAREST_RANK}
        -- edges span the window and the lag around it (for the orphans below): pairs are the window's
        FROM edges e {_nearest_cloud('e.t >= $start AND e.t < $end')}
    ) WHERE nearest_rank = 1
),
binned AS (
    SELECT *, {bin_sql('score_delta', SCORE_DELTA_EDGES)} AS score_bin, {bin_sql('err', VALUE_ERROR_EDGES)} AS err_bin
    FROM pairs
),
edge_side AS (
    SELECT window_start, {_KEY_LIST}, max(cloud_version) AS cloud_version,
           count(*)::UBIGINT AS edge_requests, (count(*) FILTER (WHERE matched))::UBIGINT AS matched,
           (count(*) FILTER (WHERE NOT matched))::UBIGINT AS edge_unmatched, 0::UBIGINT AS shadow_orphans,
           (count(*) FILTER (WHERE prediction_label IS NOT NULL AND cloud_label IS NOT NULL))::UBIGINT AS compared,
           (count(*) FILTER (WHERE prediction_label = cloud_label))::UBIGINT AS agreements,
           count(score_delta)::UBIGINT AS score_pairs, count(err)::UBIGINT AS value_pairs,
           coalesce(sum(score_delta), 0) AS score_delta_sum, coalesce(sum(score_delta * score_delta), 0)
               AS score_delta_sq_sum,
           coalesce(sum(err), 0) AS error_sum, coalesce(sum(err * err), 0) AS error_sq_sum,
           coalesce(sum(abs(err)), 0) AS abs_error_sum,
           {pivot_sql('score_bin', SCORE_DELTA_COLUMNS)}, {pivot_sql('err_bin', VALUE_ERROR_COLUMNS)}
    FROM binned GROUP BY window_start, {_KEY_LIST}
),
orphans AS (
    SELECT date_trunc('hour', c.t)::TIMESTAMP AS window_start, c.model_name, max(c.model_version) AS cloud_version,
           count(*)::UBIGINT AS shadow_orphans
    FROM clouds c
    WHERE c.t >= $start AND c.t < $end
      AND NOT EXISTS (SELECT 1 FROM edges e WHERE e.request_id = c.request_id AND {_DT} <= $lag_s)
    GROUP BY ALL
)
SELECT * FROM edge_side
UNION ALL
-- the columns in edge_side's order (a union matched on column names is DuckDB's own)
SELECT {", ".join(_ORPHAN_COLUMNS[c] for c in _EDGE_SIDE_COLUMNS)}
FROM orphans
"""

SHADOW_FLIPS_SQL = f"""
WITH edges AS ({_rows('edge', 'window')}),
clouds AS ({_rows('cloud', 'wide')}),
pairs AS (
    SELECT * FROM (
        SELECT e.*, date_trunc('hour', e.t)::TIMESTAMP AS window_start, c.prediction_label AS cloud_label,
               {_NEAREST_RANK}
        FROM edges e {_nearest_cloud()}
    ) WHERE nearest_rank = 1
)
SELECT window_start, {_KEY_LIST}, prediction_label AS edge_label, cloud_label, count(*)::UBIGINT AS pairs
FROM pairs WHERE prediction_label IS NOT NULL AND cloud_label IS NOT NULL
GROUP BY ALL
"""

GROUND_TRUTH_SQL = f"""
WITH edges AS ({_rows('edge', 'window')}),
clouds AS ({_rows('cloud', 'wide')}),
labels AS (
    -- a request labelled twice: the label received last (a correction) counts
    SELECT request_id, arg_max(label, received_at) AS label, arg_max(label_value, received_at) AS label_value,
           arg_max(t, received_at) AS t
    FROM ({_rows('label', 'labels')}) GROUP BY request_id
),
joined AS (
    SELECT * FROM (
        SELECT e.*, date_trunc('hour', e.t)::TIMESTAMP AS window_start,
               l.request_id IS NOT NULL AS labelled, l.label AS true_label, l.label_value AS true_value,
               epoch(l.t) - epoch(e.t) AS lag_s,
               c.prediction_label AS cloud_label, c.prediction_value AS cloud_value, {_NEAREST_RANK}
        FROM edges e
        LEFT JOIN labels l ON l.request_id = e.request_id
             AND epoch(l.t) - epoch(e.t) >= -$lag_s AND epoch(l.t) - epoch(e.t) < $horizon_s
        {_nearest_cloud()}
    ) WHERE nearest_rank = 1
),
binned AS (SELECT *, {bin_sql('lag_s', LABEL_LAG_EDGES_S)} AS lag_bin,
                  prediction_value - true_value AS err, cloud_value - true_value AS cloud_err FROM joined)
SELECT window_start, {_KEY_LIST},
       count(*)::UBIGINT AS inferences, (count(*) FILTER (WHERE labelled))::UBIGINT AS labelled,
       (count(*) FILTER (WHERE true_label IS NOT NULL AND prediction_label IS NOT NULL))::UBIGINT AS class_labelled,
       (count(*) FILTER (WHERE prediction_label = true_label))::UBIGINT AS correct,
       count(err)::UBIGINT AS value_labelled,
       (count(*) FILTER (WHERE true_label IS NOT NULL AND cloud_label IS NOT NULL))::UBIGINT AS cloud_class_labelled,
       (count(*) FILTER (WHERE cloud_label = true_label))::UBIGINT AS cloud_correct,
       count(cloud_err)::UBIGINT AS cloud_value_labelled,
       coalesce(sum(err), 0) AS error_sum, coalesce(sum(err * err), 0) AS error_sq_sum,
       coalesce(sum(abs(err)), 0) AS abs_error_sum,
       coalesce(sum(cloud_err), 0) AS cloud_error_sum, coalesce(sum(cloud_err * cloud_err), 0) AS cloud_error_sq_sum,
       coalesce(sum(abs(cloud_err)), 0) AS cloud_abs_error_sum,
       coalesce(sum(lag_s), 0) AS lag_sum_s, max(lag_s) AS lag_max_s,
       {pivot_sql('lag_bin', LABEL_LAG_COLUMNS, 'labelled')}
FROM binned GROUP BY window_start, {_KEY_LIST}
"""

# The hours of the rows of kind {target} that share a request id with the rows of kind {touched}
# in some marked minutes (the edge inferences of late shadows and labels; the shadows of late edges).
RELATED_HOURS_SQL = f"""
WITH marked AS (
    SELECT min(min_time) AS lo, max(max_time) AS hi FROM ingest_marks
    WHERE table_name = 'span_rows' AND list_contains($minutes, minute)
),
touched AS (
    SELECT request_id, {_T} AS t FROM span_rows, marked
    WHERE ({{touched}}) AND request_id IS NOT NULL AND start_time >= marked.lo AND start_time <= marked.hi
      AND list_contains($minutes, date_trunc('minute', {_T})::TIMESTAMP)
),
bounds AS (SELECT min(t) AS lo, max(t) AS hi FROM touched)
SELECT DISTINCT date_trunc('hour', {_T})::TIMESTAMP AS hour
FROM span_rows JOIN touched USING (request_id), bounds
WHERE ({{target}})
  AND start_time >= bounds.lo - to_seconds($before_s + {_RAW_SLACK.total_seconds()})
  AND start_time <= bounds.hi + to_seconds($after_s + {_RAW_SLACK.total_seconds()})
  AND {_T} >= touched.t - to_seconds($before_s) AND {_T} <= touched.t + to_seconds($after_s)
"""
_KINDS = {"edge": "name = 'inference' AND inference_mode = 'edge'",
          "cloud": "name = 'inference' AND inference_mode = 'cloud'", "label": "name = 'ground_truth'"}


def related_hours(read: Read, minutes: list[datetime], touched: tuple[str, ...], target: str,
                  before_s: float, after_s: float) -> set[datetime]:
    """Hours of ``target`` rows (a kind) at most ``before_s`` before / ``after_s`` after a ``touched`` row."""
    sql = RELATED_HOURS_SQL.format(touched=" OR ".join(f"({_KINDS[k]})" for k in touched), target=_KINDS[target])
    return set(read(sql, {"minutes": minutes, "before_s": before_s, "after_s": after_s})["hour"].to_pylist())


def _bounds(read: Read, start: datetime, end: datetime, suffix: str) -> dict:
    """Parameters of :func:`_rows` for corrected times [start, end): raw bounds from the ingest marks."""
    row = read(raw_time_bounds("span_rows"), {"start": floor_time(start, timedelta(minutes=1)), "end": end})
    lo, hi = row["lo"][0].as_py(), row["hi"][0].as_py()
    lo, hi = (0, -1) if lo is None else (lo, hi)
    return {f"start_{suffix}": start, f"end_{suffix}": end, f"lo_{suffix}": lo, f"hi_{suffix}": hi}


class _EdgeHourJob(WindowJob):
    """An hourly job keyed by the edge inference's hour; late shadows / labels re-open that hour."""

    window = timedelta(hours=1)
    delay = timedelta(minutes=2)
    chunk = 24
    inputs = ("span_rows",)
    touched_kinds: tuple[str, ...] = ()

    def __init__(self, config: ShadowConfig | None = None) -> None:
        self.config = config or ShadowConfig()
        self.config.validate()

    def edge_offsets(self) -> tuple[float, float]:
        """How far (seconds) an edge inference may lie before / after a touched cloud or label row."""
        return self.config.max_lag, self.config.max_lag

    def late_windows(self, read: Read, minutes: list[datetime]) -> set[datetime]:
        own = super().late_windows(read, minutes)
        if not minutes:
            return own
        before, after = self.edge_offsets()
        return own | related_hours(read, minutes, self.touched_kinds, "edge", before, after)

    def window_params(self, read: Read, start: datetime, end: datetime) -> dict:
        lag = timedelta(seconds=self.config.max_lag)
        return {**_bounds(read, start, end, "window"), **_bounds(read, start - lag, end + lag, "wide"),
                "start": start, "end": end, "lag_s": self.config.max_lag}


class ShadowHour(_EdgeHourJob):
    """Edge vs cloud per edge model version, cohort and hour (``shadow_hour``, ``shadow_flips_hour``)."""

    name = "shadow_hour"
    outputs = ("shadow_hour", "shadow_flips_hour")
    touched_kinds = ("cloud",)

    def late_windows(self, read: Read, minutes: list[datetime]) -> set[datetime]:
        # A late edge inference also un-orphans a shadow counted in the shadow's own hour.
        hours = super().late_windows(read, minutes)
        if minutes:
            hours |= related_hours(read, minutes, ("edge",), "cloud", self.config.max_lag, self.config.max_lag)
        return hours

    def compute(self, read: Read, start: datetime, end: datetime) -> JobOutput:
        params = self.window_params(read, start, end)
        shadow = read(SHADOW_SQL, {k: v for k, v in params.items() if not k.endswith("_window")})
        flips = read(SHADOW_FLIPS_SQL, {k: v for k, v in params.items() if k not in ("start", "end")})
        rows_in = sum(shadow["edge_requests"].to_pylist()) + sum(shadow["shadow_orphans"].to_pylist())
        return JobOutput({"shadow_hour": shadow, "shadow_flips_hour": flips}, rows_in=rows_in)


class GroundTruthHour(_EdgeHourJob):
    """Labels joined to edge inferences (and their shadows) per version, cohort and inference hour."""

    name = "ground_truth_hour"
    outputs = ("ground_truth_hour",)
    touched_kinds = ("cloud", "label")

    def edge_offsets(self) -> tuple[float, float]:
        # A label comes up to label_horizon after its inference (a little before, on a skewed clock).
        return max(self.config.label_horizon, self.config.max_lag), self.config.max_lag

    def compute(self, read: Read, start: datetime, end: datetime) -> JobOutput:
        params = self.window_params(read, start, end)
        labels = _bounds(read, start - timedelta(seconds=self.config.max_lag),
                         end + timedelta(seconds=self.config.label_horizon), "labels")
        rows = read(GROUND_TRUTH_SQL, {**{k: v for k, v in params.items() if k not in ("start", "end")}, **labels,
                                       "horizon_s": self.config.label_horizon})
        return JobOutput({"ground_truth_hour": rows}, rows_in=sum(rows["inferences"].to_pylist()))


def shadow_jobs(config: ShadowConfig | None = None) -> list[WindowJob]:
    return [ShadowHour(config), GroundTruthHour(config)]
