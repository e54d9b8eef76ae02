"""The read API's drift queries (docs/api.md has an example of each); they read the drift job's ``drift_results``.

``drift_status`` is the newest verdict per model version and cohort,
``drift_features`` every feature's indices over time (the dashboards'
feature x time heatmap), ``drift_distribution`` one feature's reference and
current shares per bin for one window. No module of the statistics is
imported here: a gateway serves the catalog without numpy or scipy.
"""

from __future__ import annotations

from analytics.api.params import Param
from analytics.api.queries import NamedQuery

_WINDOW = Param("window", "choice", "hourly (1h) or daily (1d) results", default="1d", choices=("1h", "1d"))
_MODEL = Param("model_name", "string", "only this model (default: all)")
_VERSION = Param("model_version", "string", "only this model version (default: all)")
_COHORT = Param("cohort", "string", "the cohort as stored: {} (the whole version) or {\"site\":\"...\"}",
                default="{}")
_FILTER = ("window_length = $window AND ($model_name IS NULL OR model_name = $model_name) "
           "AND ($model_version IS NULL OR model_version = $model_version)")
_INDICES = "psi, ks, wasserstein, jensen_shannon, chi_square, linf"

DRIFT_QUERIES = (
    NamedQuery(
        "drift_status",
        "The newest drift verdict per model version and cohort, with the drifted features and the reasons.",
        f"""
        SELECT model_name, model_version, cohort, window_start, window_end, hours, status, verdict,
               drifted_features, severity, current_count, reference_kind, reference_start, reasons,
               (detail::JSON ->> 'evaluated_features')::INTEGER AS evaluated_features,
               detail::JSON ->> 'correction' AS correction, (detail::JSON ->> 'alpha')::DOUBLE AS alpha
        FROM drift_results
        WHERE feature = '*' AND {_FILTER} AND ($status IS NULL OR status = $status)
          AND ($until IS NULL OR window_start < $until)
        QUALIFY row_number() OVER (PARTITION BY model_name, model_version, cohort ORDER BY window_start DESC) = 1
        ORDER BY model_name, model_version, cohort
        """,
        (_WINDOW, _MODEL, _VERSION,
         Param("status", "choice", "only this status", choices=("drifted", "ok", "insufficient_data")),
         Param("until", "timestamp", "the newest window starting before this (default: the newest)")),
        needs="analytics",
    ),
    NamedQuery(
        "drift_features",
        "Every feature's drift indices and status per window over a time range (the feature x time heatmap).",
        f"""
        SELECT window_start, model_name, model_version, cohort, feature, kind, status, {_INDICES},
               p_value, severity, missing_share_change, reference_count, current_count,
               detail::JSON ->> 'effect_method' AS effect_method,
               (detail::JSON ->> 'cramers_v')::DOUBLE AS cramers_v, reasons
        FROM drift_results
        WHERE feature <> '*' AND {_FILTER} AND cohort = $cohort
          AND window_start >= $since AND window_start < $until
        ORDER BY model_name, model_version, feature, window_start
        """,
        (_WINDOW, _MODEL, _VERSION, _COHORT,
         Param("since", "timestamp", "start of the time range (inclusive)", default="-7d"),
         Param("until", "timestamp", "end of the time range (exclusive)", default="now")),
        needs="analytics",
    ),
    NamedQuery(
        "drift_distribution",
        "One feature's reference and current shares per bin (reference deciles, or categories) for one window.",
        f"""
        WITH chosen AS (
            SELECT window_start, model_name, model_version, feature, detail::JSON -> 'distribution' AS d
            FROM drift_results
            WHERE feature = $feature AND {_FILTER} AND cohort = $cohort
              AND ($at IS NULL OR window_start <= $at) AND status <> 'insufficient_data'
            ORDER BY window_start DESC, model_version DESC LIMIT 1
        )
        SELECT window_start, model_name, model_version, feature,
               unnest(range(json_array_length(d -> 'labels')::BIGINT)) AS bin,
               unnest(from_json(d -> 'labels', '["VARCHAR"]')) AS label,
               unnest(from_json(d -> 'reference', '["DOUBLE"]')) AS reference_share,
               unnest(from_json(d -> 'current', '["DOUBLE"]')) AS current_share
        FROM chosen
        """,
        (Param("feature", "string", "the feature (ml.feature.<name> without the prefix, or prediction_label, ...)",
               required=True),
         _WINDOW, _MODEL, _VERSION, _COHORT,
         Param("at", "timestamp", "the newest window starting at or before this (default: the newest)")),
        needs="analytics",
    ),
)
