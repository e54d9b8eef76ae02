"""The read API's shadow and ground-truth queries (docs/api.md has an example of each; docs/shadow.md the formulas).

Every rate is derived here, at query time, from the hourly counts of
:mod:`analytics.shadow.jobs` summed over the whole range: agreement is
summed agreements over summed compared pairs, Cohen's kappa comes from the
summed flip matrix (never an average of hourly kappas), RMSE from summed
squares. So any range, step or grouping gives the exact figure.
"""

from __future__ import annotations

from analytics.api.params import Param
from analytics.api.queries import NamedQuery
from analytics.shadow.bins import LABEL_LAG_COLUMNS, SCORE_DELTA_COLUMNS, VALUE_ERROR_COLUMNS
from analytics.shadow.jobs import COHORT

_GROUPS = {"none": "'all'", "site": "site", "region": "region", "device_class": "device_class",
           "firmware_version": "firmware_version", "cohort": "concat_ws('/', " + ", ".join(COHORT) + ")"}
_STEPS = {"none": "NULL::TIMESTAMP", "hour": "window_start", "day": "date_trunc('day', window_start)::TIMESTAMP"}
_FILTER = ("(window_start >= $since AND window_start < $until AND ($model_name IS NULL OR model_name = $model_name) "
           "AND ($model_version IS NULL OR model_version = $model_version) AND ($site IS NULL OR site = $site))")
# A correlation over fewer paired hours is noise (over two it is always +-1): no value, the hours say why.
MIN_TRACKING_HOURS = 6
_KEYS = ("step_start", "model_name", "model_version", "grp")
_SELECT_KEYS = "{step} AS step_start, model_name, model_version, {group_by} AS grp"


def _same(a: str, b: str, keys: tuple[str, ...] = _KEYS) -> str:
    """Join condition on the group keys, NULL matching NULL (orphan shadows have no version)."""
    return " AND ".join(f"{a}.{k} IS NOT DISTINCT FROM {b}.{k}" for k in keys)


# Cohen's kappa from the summed flip matrix: p_o = diagonal / N, p_e = sum over classes of
# (edge row share x cloud column share), kappa = (p_o - p_e) / (1 - p_e).
_KAPPA_CTES = f"""
flips AS (
    SELECT {_SELECT_KEYS}, edge_label, cloud_label, sum(pairs) AS n
    FROM shadow_flips_hour WHERE {_FILTER} GROUP BY ALL
),
edge_rows AS (SELECT step_start, model_name, model_version, grp, edge_label AS label, sum(n) AS n
              FROM flips GROUP BY ALL),
cloud_cols AS (SELECT step_start, model_name, model_version, grp, cloud_label AS label, sum(n) AS n
               FROM flips GROUP BY ALL),
chance AS (
    SELECT r.step_start, r.model_name, r.model_version, r.grp, sum(r.n * c.n) AS rc
    FROM edge_rows r JOIN cloud_cols c ON {_same('r', 'c')} AND r.label = c.label GROUP BY ALL
),
kappa AS (
    SELECT f.step_start, f.model_name, f.model_version, f.grp, sum(f.n) AS total,
           coalesce(sum(f.n) FILTER (WHERE f.edge_label = f.cloud_label), 0) AS diagonal
    FROM flips f GROUP BY ALL
)"""

_GT_SUMS = ("inferences", "labelled", "class_labelled", "correct", "value_labelled", "cloud_class_labelled",
            "cloud_correct", "cloud_value_labelled", "error_sum", "error_sq_sum", "abs_error_sum", "cloud_error_sum",
            "cloud_error_sq_sum", "cloud_abs_error_sum", "lag_sum_s")
_GT_CTE = f"""
gt AS (
    SELECT {_SELECT_KEYS}, {", ".join(f"sum({c}) AS {c}" for c in _GT_SUMS)}, max(lag_max_s) AS lag_max_s,
           {", ".join(f"sum({c}) AS {c}" for c in LABEL_LAG_COLUMNS)}
    FROM ground_truth_hour WHERE {_FILTER} GROUP BY ALL
)"""

_SHADOW_SUMS = ("edge_requests", "matched", "edge_unmatched", "shadow_orphans", "compared", "agreements",
                "score_pairs", "value_pairs", "score_delta_sum", "score_delta_sq_sum", "error_sum", "error_sq_sum",
                "abs_error_sum")

def _histogram(columns: tuple[str, ...]) -> str:
    """The summed bin columns as one list (bins in docs/shadow.md)."""
    return "[" + ", ".join(f"sum({c})::BIGINT" for c in columns) + "]"


SHADOW_AGREEMENT_SQL = f"""
WITH s AS (
    SELECT {_SELECT_KEYS}, max(cloud_version) AS cloud_version, {", ".join(f"sum({c}) AS {c}" for c in _SHADOW_SUMS)},
           {_histogram(SCORE_DELTA_COLUMNS)} AS score_delta_hist, {_histogram(VALUE_ERROR_COLUMNS)} AS value_error_hist
    FROM shadow_hour WHERE {_FILTER} GROUP BY ALL
),
{_KAPPA_CTES},
{_GT_CTE},
rates AS (
    SELECT s.*,
           s.agreements / nullif(s.compared, 0) AS agreement_rate,
           (k.diagonal / k.total - ch.rc / (k.total * k.total)) / nullif(1 - ch.rc / (k.total * k.total), 0) AS kappa,
           coalesce(1 - g.cloud_correct / nullif(g.cloud_class_labelled, 0), $assumed_cloud_error) AS cloud_error_rate,
           CASE WHEN g.cloud_class_labelled > 0 THEN 'ground_truth'
                WHEN $assumed_cloud_error IS NOT NULL THEN 'assumed' END AS cloud_error_source,
           1 - g.correct / nullif(g.class_labelled, 0) AS measured_edge_error,
           g.class_labelled AS labelled_pairs
    FROM s
    LEFT JOIN kappa k ON {_same('s', 'k')}
    LEFT JOIN chance ch ON {_same('s', 'ch')}
    LEFT JOIN gt g ON {_same('s', 'g')}
)
SELECT step_start, model_name, model_version, grp AS "group", cloud_version,
       edge_requests::BIGINT AS edge_requests, matched::BIGINT AS matched,
       edge_unmatched::BIGINT AS edge_unmatched, shadow_orphans::BIGINT AS shadow_orphans,
       (matched + shadow_orphans)::BIGINT AS cloud_answers,
       matched / nullif(edge_requests, 0) AS coverage,
       compared::BIGINT AS compared, agreements::BIGINT AS agreements, agreement_rate, kappa,
       score_delta_sum / nullif(score_pairs, 0) AS score_delta_mean,
       sqrt(greatest(score_delta_sq_sum / nullif(score_pairs, 0)
                     - pow(score_delta_sum / nullif(score_pairs, 0), 2), 0)) AS score_delta_std, score_delta_hist,
       value_pairs::BIGINT AS value_pairs, error_sum / nullif(value_pairs, 0) AS bias,
       abs_error_sum / nullif(value_pairs, 0) AS mae, sqrt(error_sq_sum / nullif(value_pairs, 0)) AS rmse,
       value_error_hist,
       cloud_error_rate, cloud_error_source,
       -- the label-free bound on the edge error rate (docs/shadow.md): |d - e_c| <= e_e <= d + e_c
       abs((1 - agreement_rate) - cloud_error_rate) AS edge_error_lower,
       -- (least() skips NULLs: without both rates there is no bound)
       CASE WHEN agreement_rate IS NOT NULL AND cloud_error_rate IS NOT NULL
            THEN least(1.0, (1 - agreement_rate) + cloud_error_rate) END AS edge_error_upper,
       measured_edge_error, labelled_pairs::BIGINT AS labelled
FROM rates
ORDER BY model_name, model_version NULLS LAST, "group", step_start
"""

SHADOW_FLIPS_SQL = f"""
WITH flips AS (
    SELECT {_SELECT_KEYS}, edge_label, cloud_label, sum(pairs) AS n
    FROM shadow_flips_hour WHERE {_FILTER} GROUP BY ALL
)
SELECT step_start, model_name, model_version, grp AS "group", edge_label, cloud_label, n::BIGINT AS pairs,
       n / sum(n) OVER (PARTITION BY step_start, model_name, model_version, grp, edge_label) AS share_of_edge_label
FROM flips ORDER BY model_name, model_version, "group", step_start, edge_label, cloud_label
"""

GROUND_TRUTH_ACCURACY_SQL = f"""
WITH {_GT_CTE.strip()},
hourly AS (
    -- per hour: disagreement rate (shadow) beside measured edge error (labels), for the tracking correlation
    SELECT {_SELECT_KEYS}, window_start, 1 - sum(s.agreements) / nullif(sum(s.compared), 0) AS disagreement,
           1 - sum(g.correct) / nullif(sum(g.class_labelled), 0) AS measured_error
    FROM ground_truth_hour g
    JOIN shadow_hour s USING (window_start, model_name, model_version, site, region, device_class, firmware_version)
    WHERE {_FILTER.replace("window_start", "g.window_start")}
    GROUP BY ALL
),
tracking AS (
    SELECT step_start, model_name, model_version, grp, count(*) FILTER (WHERE disagreement IS NOT NULL AND
           measured_error IS NOT NULL) AS tracking_hours,
           CASE WHEN tracking_hours >= {MIN_TRACKING_HOURS} THEN corr(disagreement, measured_error) END AS tracking_corr
    FROM hourly GROUP BY ALL
),
-- per hour: the drift job's dataset severity (the cohort's most severe feature) beside measured edge error
error_hourly AS (
    SELECT {_SELECT_KEYS}, window_start, 1 - sum(correct) / nullif(sum(class_labelled), 0) AS measured_error
    FROM ground_truth_hour WHERE {_FILTER} GROUP BY ALL
),
drift_hourly AS (
    SELECT {{step}} AS step_start, model_name, model_version, {{drift_group}} AS grp, window_start, severity
    FROM drift_results
    WHERE window_length = '1h' AND feature = '*' AND status <> 'insufficient_data'
      AND window_start >= $since AND window_start < $until AND ($model_name IS NULL OR model_name = $model_name)
      AND ($model_version IS NULL OR model_version = $model_version)
),
drift_tracking AS (
    SELECT e.step_start, e.model_name, e.model_version, e.grp,
           count(*) FILTER (WHERE e.measured_error IS NOT NULL) AS drift_tracking_hours,
           CASE WHEN drift_tracking_hours >= {MIN_TRACKING_HOURS} THEN corr(d.severity, e.measured_error) END
               AS drift_tracking_corr
    FROM error_hourly e JOIN drift_hourly d ON {_same('e', 'd')} AND e.window_start = d.window_start
    GROUP BY ALL
)
SELECT g.step_start, g.model_name, g.model_version, g.grp AS "group",
       g.inferences::BIGINT AS inferences, g.labelled::BIGINT AS labelled,
       g.labelled / nullif(g.inferences, 0) AS label_coverage,
       g.class_labelled::BIGINT AS class_labelled, g.correct / nullif(g.class_labelled, 0) AS accuracy,
       g.cloud_correct / nullif(g.cloud_class_labelled, 0) AS cloud_accuracy,
       g.value_labelled::BIGINT AS value_labelled, g.error_sum / nullif(g.value_labelled, 0) AS bias,
       g.abs_error_sum / nullif(g.value_labelled, 0) AS mae, sqrt(g.error_sq_sum / nullif(g.value_labelled, 0)) AS rmse,
       g.cloud_abs_error_sum / nullif(g.cloud_value_labelled, 0) AS cloud_mae,
       sqrt(g.cloud_error_sq_sum / nullif(g.cloud_value_labelled, 0)) AS cloud_rmse,
       t.tracking_corr, t.tracking_hours::BIGINT AS tracking_hours,
       dt.drift_tracking_corr, coalesce(dt.drift_tracking_hours, 0)::BIGINT AS drift_tracking_hours
FROM gt g LEFT JOIN tracking t ON {_same('g', 't')} LEFT JOIN drift_tracking dt ON {_same('g', 'dt')}
ORDER BY g.model_name, g.model_version, "group", g.step_start
"""

LABEL_LAG_SQL = f"""
WITH {_GT_CTE.strip()}
SELECT step_start, model_name, model_version, grp AS "group", labelled::BIGINT AS labelled,
       lag_sum_s / nullif(labelled, 0) AS lag_mean_s, lag_max_s,
       {", ".join(f"{c}::BIGINT AS {c}" for c in LABEL_LAG_COLUMNS)}
FROM gt WHERE labelled > 0
ORDER BY model_name, model_version, "group", step_start
"""

# Model versions by when the edge fleet first ran them (the hourly rollups), and how often new ones come.
RETRAINING_CADENCE_SQL = """
WITH versions AS (
    SELECT model_name, model_version, min(window_start) AS first_seen, max(window_start) AS last_seen,
           sum(inferences)::BIGINT AS inferences
    FROM rollup_hour
    WHERE inference_mode = 'edge' AND model_name IS NOT NULL AND window_start >= $since AND window_start < $until
      AND ($model_name IS NULL OR model_name = $model_name)
    GROUP BY ALL
)
SELECT model_name, model_version, first_seen, last_seen, inferences,
       lag(model_version) OVER w AS previous_version,
       epoch(first_seen - lag(first_seen) OVER w) / 86400 AS days_since_previous,
       {period} AS period_start,
       count(*) OVER (PARTITION BY model_name, {period}) AS versions_in_period
FROM versions
WINDOW w AS (PARTITION BY model_name ORDER BY first_seen, model_version)
ORDER BY model_name, first_seen, model_version
"""


def _common(since: str) -> tuple[Param, ...]:
    return (Param("since", "timestamp", "start of the time range (inclusive; whole hours)", default=since),
            Param("until", "timestamp", "end of the time range (exclusive)", default="now"),
            Param("model_name", "string", "only this model (default: all)"),
            Param("model_version", "string", "only this edge model version (default: all)"),
            Param("site", "string", "only this site (default: all)"),
            Param("group_by", "choice", "one row per value of this cohort dimension", default="none",
                  choices=tuple(_GROUPS)),
            Param("step", "choice", "one row per hour or day of the range, or one for it all", default="none",
                  choices=tuple(_STEPS)))


_FRAGMENTS = {"group_by": _GROUPS, "step": _STEPS}


def _drift_group(values: dict) -> dict[str, str]:
    """The drift cohort (analytics.drift.jobs.cohort_key: ``{}`` or ``{"site":"..."}``) that is the group.

    With ``site`` set the ground truth covers that site, so the matching drift cohort is the site's; a
    grouping the drift job has no cohort for (``cohort``, the concatenation of every dimension) has none.
    """
    by = values["group_by"]
    if by == "none":
        return {"drift_group": "CASE WHEN cohort = CASE WHEN $site IS NULL THEN '{}' "
                               "ELSE json_object('site', $site)::VARCHAR END THEN 'all' END"}
    if by == "cohort":
        return {"drift_group": "NULL::VARCHAR"}
    # by is one of the drift job's cohort dimensions (a fixed choice, never the caller's text)
    site = "" if by == "site" else " AND $site IS NULL"
    return {"drift_group": f"CASE WHEN json_keys(cohort) = ['{by}']{site} AND ($site IS NULL OR cohort ->> '$.site' = $site) "
                           f"THEN cohort ->> '$.{by}' END"}

SHADOW_QUERIES = (
    NamedQuery(
        "shadow_agreement",
        "Edge vs cloud shadow per model, edge model version and cohort: coverage, agreement rate, Cohen's kappa, "
        "score deltas, regression bias / MAE / RMSE, unmatched requests on both sides, and the label-free bound "
        "on the edge error rate beside the measured one.",
        SHADOW_AGREEMENT_SQL,
        (*_common("-1d"),
         Param("assumed_cloud_error", "float", "the cloud model's error rate where no labels measure it",
               minimum=0.0, maximum=1.0)),
        fragments=_FRAGMENTS,
        needs="analytics",
    ),
    NamedQuery(
        "shadow_flips",
        "The flip matrix: edge label x cloud label counts of matched requests, summed over the range.",
        SHADOW_FLIPS_SQL, _common("-1d"), fragments=_FRAGMENTS, needs="analytics",
    ),
    NamedQuery(
        "ground_truth_accuracy",
        "Accuracy (classifiers) or bias / MAE / RMSE (regressors) of the edge model and its cloud shadow against "
        "late labels, by inference time; label coverage; how the hourly disagreement rate tracked measured error.",
        GROUND_TRUTH_ACCURACY_SQL, _common("-7d"), fragments=_FRAGMENTS, derive=_drift_group, needs="analytics",
    ),
    NamedQuery(
        "label_lag",
        "How late labels arrive: label time minus inference time, mean, max and a histogram.",
        LABEL_LAG_SQL, _common("-7d"), fragments=_FRAGMENTS, needs="analytics",
    ),
    NamedQuery(
        "retraining_cadence",
        "Model versions in the order the edge fleet first ran them: first and last hour seen, days since the "
        "previous version, versions first seen per period.",
        RETRAINING_CADENCE_SQL,
        (Param("since", "timestamp", "start of the time range (inclusive)", default="-90d"),
         Param("until", "timestamp", "end of the time range (exclusive)", default="now"),
         Param("model_name", "string", "only this model (default: all)"),
         Param("period", "choice", "the period versions are counted per", default="week",
               choices=("day", "week", "month"))),
        fragments={"period": {p: f"date_trunc('{p}', first_seen)::TIMESTAMP" for p in ("day", "week", "month")}},
        needs="analytics",
    ),
)
