"""Per-feature verdicts, the correction for many features, the dataset's recommendation.

::

    result = compare_profiles(reference, current, DriftConfig())   # {name: Summary} on both sides
    result.recommendation      # "retrain" | "investigate" | "no action" | "insufficient data"
    result.reasons             # why, one sentence each
    [f.name for f in result.features if f.drifted]                  # ranked by severity
    result.to_json()           # what `drift compare --json` writes and the HTML report reads

A feature drifts when its effect size passes its threshold AND its test's
p-value passes the corrected alpha; a change of its missing-value share is a
second, separate signal judged the same way. Fewer than ``min_count``
values on either side gives "insufficient data", not a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from analytics.drift.config import CATEGORICAL_METHODS, NUMERIC_METHODS, DriftConfig
from analytics.drift.indices import categorical_indices, coarse_shares, missing_share_change, numeric_indices
from analytics.drift.profiles import Summary

DRIFTED, STABLE, INSUFFICIENT = "drifted", "stable", "insufficient data"


@dataclass
class FeatureResult:
    """One feature's indices, missing-share signal, verdict (``drifted``: True / False / None) and reasons."""

    name: str
    kind: str
    reference_count: int
    current_count: int
    values: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)
    effect_method: str = ""
    p_value: float | None = None
    alpha: float | None = None
    drifted: bool | None = None
    missing_drifted: bool | None = None
    severity: float = 0.0
    reasons: list[str] = field(default_factory=list)
    distribution: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return INSUFFICIENT if self.drifted is None else DRIFTED if self.drifted else STABLE

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, **self.values, "drifted": self.drifted, "status": self.status,
                "effect_method": self.effect_method, "p_value": self.p_value, "alpha_corrected": self.alpha,
                "severity": self.severity, "missing": {**self.missing, "drifted": self.missing_drifted},
                "reference_count": self.reference_count, "current_count": self.current_count,
                "reasons": self.reasons, "distribution": self.distribution}


@dataclass
class DriftResult:
    """A comparison of a current dataset with its reference: features ranked by severity and the verdict."""

    features: list[FeatureResult]
    recommendation: str
    reasons: list[str]
    config: DriftConfig

    @property
    def evaluated(self) -> list[FeatureResult]:
        return [f for f in self.features if f.drifted is not None or f.missing_drifted is not None]

    @property
    def drifted(self) -> list[FeatureResult]:
        return [f for f in self.features if f.drifted]

    def to_json(self) -> dict:
        evaluated = len(self.evaluated)
        return {"verdict": {"recommendation": self.recommendation, "reasons": self.reasons,
                            "dataset_drifted": self.recommendation == "retrain",
                            "drifted_features": len(self.drifted), "evaluated_features": evaluated,
                            "drifted_share": len(self.drifted) / evaluated if evaluated else None,
                            "correction": self.config.correction, "alpha": self.config.alpha},
                "features": [f.to_json() for f in self.features], "config": self.config.to_json()}


# The smallest p-value doubles tell apart reliably; below it a test's p-value has underflowed to 0.
P_VALUE_FLOOR = 1e-300


def p_value_text(p_value: float) -> str:
    """``p = 0.0021``, or an honest bound (``p < 1e-300``) where the p-value underflowed to 0."""
    return f"p < {P_VALUE_FLOOR:g}" if p_value < P_VALUE_FLOOR else f"p = {p_value:.2g}"


def corrected_thresholds(p_values: list[float], alpha: float, correction: str) -> float:
    """The p-value at or below which a test of this family is significant.

    Bonferroni: alpha / m. Benjamini-Hochberg: k / m * alpha for the largest k with
    p_(k) <= k / m * alpha (alpha / m when there is none: then nothing passes).
    """
    m = len(p_values)
    if m == 0:
        return alpha
    if correction == "bonferroni":
        return alpha / m
    ordered = np.sort(np.asarray(p_values, dtype=np.float64))
    passing = np.nonzero(ordered <= np.arange(1, m + 1) / m * alpha)[0]
    return float((passing[-1] + 1) / m * alpha) if len(passing) else alpha / m


def _distribution(reference: Summary, current: Summary, config: DriftConfig) -> dict:
    """Shares for the report's chart: coarse quantile bins (numeric) or categories + other."""
    if reference.kind == "numeric":
        probs, edges = reference.layout.probs, reference.layout.edges
        cuts = [edges[probs.index(round(k / config.coarse_bins, 12))] for k in range(1, config.coarse_bins)]
        labels = [f"< {cuts[0]:.4g}"] + [f"{a:.4g} .. {b:.4g}" for a, b in zip(cuts, cuts[1:])] + [f">= {cuts[-1]:.4g}"]
        shares = (coarse_shares(reference, config), coarse_shares(current, config))
    else:
        labels = [*reference.layout.categories, "(other)"]
        shares = tuple(np.asarray(s.counts, dtype=np.float64) / max(s.count, 1) for s in (reference, current))
    return {"labels": labels, "reference": [round(float(v), 6) for v in shares[0]],
            "current": [round(float(v), 6) for v in shares[1]]}


def _evaluate(reference: Summary, current: Summary, config: DriftConfig) -> FeatureResult:
    result = FeatureResult(reference.name, reference.kind, reference.count, current.count)
    result.missing = missing_share_change(reference, current)
    if min(reference.total, current.total) < config.min_count:
        result.missing["p_value"] = None
    enough = min(reference.count, current.count) >= config.min_count and reference.kind == current.kind
    if not enough:
        result.values = dict.fromkeys(NUMERIC_METHODS if reference.kind == "numeric" else CATEGORICAL_METHODS)
        result.reasons.append(f"insufficient data: {reference.count} reference and {current.count} current values "
                              f"(at least {config.min_count} each needed)")
        return result
    if reference.kind == "numeric":
        result.values = numeric_indices(reference, current, config)
        result.effect_method, result.p_value = config.numeric_effect, result.values["ks_p_value"]
    else:
        result.values = categorical_indices(reference, current, config)
        result.effect_method, result.p_value = config.categorical_effect, result.values["chi_square_p_value"]
    result.distribution = _distribution(reference, current, config)
    return result


def _effect(result: FeatureResult) -> float | None:
    method = result.effect_method
    return result.values.get("cramers_v" if method == "chi_square" else method)


def _fall_back_to_psi(result: FeatureResult) -> None:
    """A reference without spread has no normalised Wasserstein: PSI decides instead."""
    if _effect(result) is None and result.p_value is not None:
        result.reasons.append(f"{result.effect_method} undefined (the reference has no spread): PSI decides")
        result.effect_method = "psi"


def _judge(result: FeatureResult, alpha: float, config: DriftConfig) -> None:
    result.alpha = alpha
    _fall_back_to_psi(result)
    if result.p_value is not None:
        effect, threshold = _effect(result), config.threshold(result.effect_method)
        big = effect is not None and effect >= threshold
        significant = result.p_value <= alpha
        result.drifted = big and significant
        result.severity = (effect or 0.0) / threshold
        if result.drifted:
            result.reasons.append(f"{result.effect_method} {effect:.3g} >= {threshold:g} with "
                                  f"{p_value_text(result.p_value)} <= {alpha:.2g}")
        elif big:
            result.reasons.append(f"{result.effect_method} {effect:.3g} >= {threshold:g} but "
                                  f"{p_value_text(result.p_value)} > {alpha:.2g}: not significant")
    missing_p = result.missing.get("p_value")
    if missing_p is not None:
        change = result.missing["change"]
        result.missing_drifted = abs(change) >= config.missing_share_change and missing_p <= alpha
        result.severity = max(result.severity, abs(change) / config.missing_share_change)
        if result.missing_drifted:
            result.reasons.append(f"missing share {result.missing['reference_share']:.1%} -> "
                                  f"{result.missing['current_share']:.1%} ({p_value_text(missing_p)})")
            result.drifted = True  # also when the distribution had too few values to judge


def compare_profiles(reference: Mapping[str, Summary], current: Mapping[str, Summary],
                     config: DriftConfig | None = None) -> DriftResult:
    """Judge every feature of ``reference`` against ``current`` (same names, same layouts)."""
    config = (config or DriftConfig()).validate()
    missing = sorted(set(reference) - set(current))
    if missing:
        raise ValueError(f"no current summary for feature {missing[0]!r}")
    results = []
    for name in reference:
        if current[name].layout != reference[name].layout:
            raise ValueError(f"feature {name!r}: the current summary is not on the reference's layout")
        results.append(_evaluate(reference[name], current[name], config))
    p_values = [r.p_value for r in results if r.p_value is not None]
    p_values += [r.missing["p_value"] for r in results if r.missing.get("p_value") is not None]
    alpha = corrected_thresholds(p_values, config.alpha, config.correction)
    for result in results:
        _judge(result, alpha, config)
    results.sort(key=lambda r: (not r.drifted, -r.severity, r.name))
    recommendation, reasons = _recommend(results, config)
    return DriftResult(results, recommendation, reasons, config)


def _recommend(results: list[FeatureResult], config: DriftConfig) -> tuple[str, list[str]]:
    evaluated = [r for r in results if r.drifted is not None]
    drifted = [r for r in evaluated if r.drifted]
    if not evaluated:
        return "insufficient data", [f"no feature has {config.min_count} values on both sides"]
    share = len(drifted) / len(evaluated)
    reasons = []
    if share >= config.dataset_drift_share:
        reasons.append(f"{len(drifted)} of {len(evaluated)} features drifted ({share:.0%} >= "
                       f"{config.dataset_drift_share:.0%})")
    major = [r for r in drifted if (r.values.get("psi") or 0) >= config.psi_major]
    reasons += [f"{r.name}: PSI {r.values['psi']:.3g} >= {config.psi_major:g} (major shift)" for r in major]
    if reasons:
        return "retrain", reasons + [f"{r.name}: {'; '.join(r.reasons)}" for r in drifted if r not in major][:10]
    if drifted:
        return "investigate", [f"{r.name}: {'; '.join(r.reasons)}" for r in drifted]
    return "no action", [f"none of {len(evaluated)} features drifted (effect over its threshold and significant "
                         f"at the {config.correction}-corrected alpha {config.alpha:g})"]
