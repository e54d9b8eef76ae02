"""Drift statistics: reference profiles, current summaries, indices, verdicts, reports (docs/drift.md).

::

    from analytics.drift import DriftConfig, FeatureSpec, compare_profiles, profile_reference, summarise

    reference = profile_reference(con, "training", [FeatureSpec("brightness", "numeric")])  # once; store it
    current = summarise(con, "serving_hour", reference)          # per window; windows merge by Summary.merge
    result = compare_profiles(reference, current, DriftConfig())
    result.recommendation, result.to_json()

Everything heavy runs in DuckDB SQL; Python sees about a hundred rows per
feature. ``analytics.drift.files.compare_files`` does the same on two
Parquet / CSV files, ``analytics.drift.report_html.render_report`` writes the
HTML report.
"""

from analytics.drift.config import DriftConfig
from analytics.drift.profile_sql import FeatureSpec, profile_reference, summarise, summarise_groups
from analytics.drift.profiles import Layout, Summary, merge_all, summaries_from_arrow, summaries_to_arrow
from analytics.drift.verdict import DriftResult, FeatureResult, compare_profiles

__all__ = ["DriftConfig", "DriftResult", "FeatureResult", "FeatureSpec", "Layout", "Summary", "compare_profiles",
           "merge_all", "profile_reference", "summaries_from_arrow", "summaries_to_arrow", "summarise",
           "summarise_groups"]
