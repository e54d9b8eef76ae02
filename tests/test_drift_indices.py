"""Every drift index against a direct numpy / scipy computation on the raw samples or the same counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from analytics.drift.config import DriftConfig
from analytics.drift.indices import categorical_indices, missing_share_change, numeric_indices
from tests.drift_data import categories, normal, profiles

N = 100_000


@pytest.mark.parametrize("shift", [0.0, 0.25, 0.5, 1.0])
def test_ks_and_wasserstein_match_scipy_on_the_raw_samples_within_their_bounds(shift):
    ref_x, cur_x = normal(N, seed=1), normal(N, mean=shift, seed=2)
    ref, cur = profiles({"x": ref_x}, {"x": cur_x})
    values = numeric_indices(ref["x"], cur["x"], DriftConfig())
    exact_ks = stats.ks_2samp(ref_x, cur_x).statistic
    assert values["ks"] <= exact_ks + 1e-12 <= values["ks"] + values["ks_error_bound"] + 1e-12
    assert values["ks_error_bound"] <= 0.0101
    # the expected value for a mean shift of `shift` std between normals: 2 Phi(shift / 2) - 1
    assert values["ks"] == pytest.approx(2 * stats.norm.cdf(shift / 2) - 1, abs=0.015)
    exact_w = stats.wasserstein_distance(ref_x, cur_x) / np.std(ref_x, ddof=1)
    assert abs(values["wasserstein"] - exact_w) <= values["wasserstein_error_bound"]
    assert values["wasserstein"] == pytest.approx(exact_w, abs=0.01)  # what binning costs in practice
    assert values["wasserstein"] == pytest.approx(shift, abs=0.02)


def test_identical_samples_give_about_zero():
    x = normal(N, seed=3)
    ref, cur = profiles({"x": x, "c": categories(N, {"a": .5, "b": .3, "c": .2})},
                        {"x": x, "c": categories(N, {"a": .5, "b": .3, "c": .2})}, categorical=["c"])
    values = numeric_indices(ref["x"], cur["x"], DriftConfig())
    assert values["psi"] == 0 and values["ks"] == 0 and values["jensen_shannon"] == 0
    assert values["wasserstein"] < 1e-12 and values["ks_p_value"] == 1
    cat = categorical_indices(ref["c"], cur["c"], DriftConfig())
    assert cat["psi"] < 1e-3 and cat["linf"] < 0.01 and cat["chi_square_p_value"] > 0.001


def test_ks_p_value_brackets_scipys_asymptotic_p_value():
    ref_x, cur_x = normal(2000, seed=4), normal(2000, mean=0.08, seed=5)
    ref, cur = profiles({"x": ref_x}, {"x": cur_x})
    values = numeric_indices(ref["x"], cur["x"], DriftConfig())
    exact = stats.ks_2samp(ref_x, cur_x, method="asymp").pvalue
    upper = values["ks_p_value"]
    lower = stats.kstwo.sf(values["ks"] + values["ks_error_bound"], 1000)
    assert lower - 1e-12 <= exact <= upper + 1e-12
    assert 0.001 < upper < 0.9  # a case where the p-value is not trivially 0 or 1


def test_psi_equals_a_hand_computation_on_the_reference_deciles():
    ref_x, cur_x = normal(N, seed=6), normal(N, mean=0.3, std=1.2, seed=7)
    ref, cur = profiles({"x": ref_x}, {"x": cur_x})
    deciles = np.quantile(ref_x, np.arange(1, 10) / 10)  # linear interpolation, as DuckDB's quantile_cont
    r = np.bincount(np.searchsorted(deciles, ref_x, side="right"), minlength=10) / N
    c = np.bincount(np.searchsorted(deciles, cur_x, side="right"), minlength=10) / N
    expected = float(np.sum((c - r) * np.log(c / r)))
    assert numeric_indices(ref["x"], cur["x"], DriftConfig())["psi"] == pytest.approx(expected, rel=1e-9)


def test_psi_uses_epsilon_for_an_empty_bin():
    ref_x = normal(N, seed=8)
    ref, cur = profiles({"x": ref_x}, {"x": np.full(1000, 50.0)})
    # everything in the last decile: nine empty bins at epsilon, one at share 1
    r = np.full(10, 0.1)
    c = np.where(np.arange(10) == 9, 1.0, 1e-4)
    expected = float(np.sum((c - r) * np.log(c / r)))
    assert numeric_indices(ref["x"], cur["x"], DriftConfig())["psi"] == pytest.approx(expected, rel=1e-9)


def test_jensen_shannon_and_chi_square_match_scipy_on_the_same_counts():
    ref, cur = profiles({"c": categories(5000, {"a": .5, "b": .3, "c": .15, "d": .05}, seed=9)},
                        {"c": categories(3000, {"a": .4, "b": .3, "c": .2, "d": .1}, seed=10)}, categorical=["c"])
    values = categorical_indices(ref["c"], cur["c"], DriftConfig())
    r, c = np.asarray(ref["c"].counts, float), np.asarray(cur["c"].counts, float)
    assert values["jensen_shannon"] == pytest.approx(jensenshannon(r, c, base=2), rel=1e-9)
    table = np.asarray([r, c])
    expected = stats.chi2_contingency(table[:, table.sum(axis=0) > 0], correction=False)
    assert (values["chi_square"], values["chi_square_dof"]) == (pytest.approx(expected.statistic), expected.dof)
    assert values["chi_square_p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert values["linf"] == pytest.approx(np.max(np.abs(r / r.sum() - c / c.sum())))
    numeric_ref, numeric_cur = profiles({"x": normal(N, seed=11)}, {"x": normal(N, mean=0.2, seed=12)})
    fine_r, fine_c = (np.asarray(s["x"].counts, float) for s in (numeric_ref, numeric_cur))
    assert numeric_indices(numeric_ref["x"], numeric_cur["x"], DriftConfig())["jensen_shannon"] == pytest.approx(
        jensenshannon(fine_r, fine_c, base=2), rel=1e-9)


def test_missing_share_change_is_the_two_proportion_z_test():
    ref_x = normal(4000, seed=13)
    ref_x[:200] = np.nan                      # 5 % missing
    cur_x = normal(3000, seed=14)
    cur_x[:300] = np.nan                      # 10 % missing
    ref, cur = profiles({"x": ref_x}, {"x": cur_x})
    assert (ref["x"].missing, cur["x"].missing) == (200, 300)
    signal = missing_share_change(ref["x"], cur["x"])
    assert signal["change"] == pytest.approx(0.05)
    # a 2x2 chi-square without continuity correction is the squared z: same p-value
    expected = stats.chi2_contingency([[200, 3800], [300, 2700]], correction=False)
    assert signal["z"] ** 2 == pytest.approx(expected.statistic)
    assert signal["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
