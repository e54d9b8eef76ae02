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

from importlib import import_module

# Loaded on first use (PEP 562), so that the light modules of this package (``section``: the config
# section; ``queries``: the read API's named queries) import without numpy and scipy on a gateway.
_EXPORTS = {"DriftConfig": "config", "FeatureSpec": "profile_sql", "profile_reference": "profile_sql",
            "summarise": "profile_sql", "summarise_groups": "profile_sql", "Layout": "profiles", "Summary": "profiles",
            "merge_all": "profiles", "summaries_from_arrow": "profiles", "summaries_to_arrow": "profiles",
            "DriftResult": "verdict", "FeatureResult": "verdict", "compare_profiles": "verdict"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"analytics.drift.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'analytics.drift' has no attribute {name!r}")


__all__ = ["DriftConfig", "DriftResult", "FeatureResult", "FeatureSpec", "Layout", "Summary", "compare_profiles",
           "merge_all", "profile_reference", "summaries_from_arrow", "summaries_to_arrow", "summarise",
           "summarise_groups"]
