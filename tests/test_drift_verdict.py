"""Verdicts: effect size AND significance, small samples, the corrections, the dataset's recommendation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analytics.drift.config import DriftConfig
from analytics.drift.verdict import compare_profiles, corrected_thresholds
from tests.drift_data import categories, normal, profiles


def test_too_few_values_is_insufficient_data_not_a_verdict():
    ref, cur = profiles({"x": normal(5000, seed=1)}, {"x": normal(50, mean=3, seed=2)})
    result = compare_profiles(ref, cur, DriftConfig(min_count=100))
    feature = result.features[0]
    assert feature.drifted is None and feature.status == "insufficient data"
    assert feature.to_json()["wasserstein"] is None and feature.to_json()["ks"] is None  # every method, as null
    assert result.recommendation == "insufficient data"
    assert compare_profiles(ref, cur, DriftConfig(min_count=50)).features[0].drifted is True


def test_a_tiny_shift_at_large_n_is_significant_but_not_drift():
    ref, cur = profiles({"x": normal(400_000, seed=3)}, {"x": normal(400_000, mean=0.03, seed=4)})
    feature = compare_profiles(ref, cur).features[0]
    assert feature.p_value < 1e-10 and feature.values["wasserstein"] < 0.1
    assert feature.drifted is False


def test_a_large_effect_without_significance_is_not_drift():
    ref, cur = profiles({"x": normal(120, seed=11)}, {"x": normal(120, mean=0.1, seed=61)})
    feature = compare_profiles(ref, cur, DriftConfig(min_count=100)).features[0]
    assert feature.values["wasserstein"] >= 0.1 and feature.p_value > 0.05
    assert feature.drifted is False and "not significant" in feature.reasons[0]


@pytest.mark.parametrize("correction", ["bonferroni", "benjamini-hochberg"])
def test_corrections_reject_what_the_textbook_procedures_reject(correction):
    p = np.random.default_rng(7).uniform(0, 0.02, 40).tolist() + [0.3, 0.6, 0.9]
    threshold = corrected_thresholds(p, 0.05, correction)
    rejected = {i for i, v in enumerate(p) if v <= threshold}
    if correction == "bonferroni":
        expected = {i for i, v in enumerate(p) if v * len(p) <= 0.05}
    else:
        expected = set(np.nonzero(stats.false_discovery_control(p, method="bh") <= 0.05)[0])
    assert rejected == expected and 0 < len(expected) < len(p)


def test_the_dataset_verdict_and_severity_ranking():
    n = 20_000
    reference = {f"f{i}": normal(n, seed=i) for i in range(10)}
    current = {f"f{i}": normal(n, seed=100 + i) for i in range(10)}
    reference["lighting"] = categories(n, {"day": .7, "night": .3}, seed=50)
    current["lighting"] = categories(n, {"day": .7, "night": .3}, seed=51)
    ref, cur = profiles(reference, current, categorical=["lighting"])
    assert compare_profiles(ref, cur).recommendation == "no action"

    current["f3"] = normal(n, mean=0.2, seed=103)          # moderate shift: investigate
    ref, cur = profiles(reference, current, categorical=["lighting"])
    result = compare_profiles(ref, cur)
    assert result.recommendation == "investigate" and [f.name for f in result.drifted] == ["f3"]

    current["f5"] = normal(n, mean=1.0, seed=105)          # major shift (PSI > 0.25): retrain, ranked first
    current["lighting"] = categories(n, {"day": .4, "night": .6}, seed=52)
    ref, cur = profiles(reference, current, categorical=["lighting"])
    result = compare_profiles(ref, cur, DriftConfig(correction="bonferroni"))
    assert result.recommendation == "retrain"
    assert [f.name for f in result.features[:3]] == ["f5", "lighting", "f3"]
    assert any("f5: PSI" in reason for reason in result.reasons)
    payload = result.to_json()
    assert payload["verdict"]["drifted_features"] == 3 and payload["verdict"]["correction"] == "bonferroni"


def test_a_change_of_the_missing_share_is_its_own_signal():
    reference, current = normal(10_000, seed=8), normal(10_000, seed=9)
    current[:2000] = np.nan
    ref, cur = profiles({"x": reference}, {"x": current})
    feature = compare_profiles(ref, cur).features[0]
    assert feature.values["wasserstein"] < 0.1 and feature.missing_drifted and feature.drifted
    assert "missing share 0.0% -> 20.0%" in " ".join(feature.reasons)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="drift.coarse_bins"):
        DriftConfig(coarse_bins=7).validate()
    with pytest.raises(ValueError, match="drift.correction"):
        DriftConfig(correction="holm").validate()
    with pytest.raises(ValueError, match="unknown method 'kl'"):
        DriftConfig(thresholds={"kl": 0.1}).validate()


def test_a_reference_without_spread_is_judged_by_psi():
    ref, cur = profiles({"x": np.full(5000, 3.0)}, {"x": normal(5000, mean=3, seed=10)})
    feature = compare_profiles(ref, cur).features[0]
    assert feature.values["wasserstein"] is None and feature.effect_method == "psi"
    assert feature.drifted is True
