"""docs/drift.md stays true: its defaults, thresholds, bin counts and worked example are what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from analytics.drift.config import DriftConfig
from analytics.drift.indices import KSTWO_LIMIT, jensen_shannon, psi
from analytics.drift.profiles import TAIL_LEVELS, quantile_levels
from analytics.drift.quantiles import BUCKETS, MAX_RANKED

DOC = (Path(__file__).resolve().parent.parent / "docs" / "drift.md").read_text()


def _section(title: str) -> str:
    return DOC.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_configuration_table_is_the_defaults():
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", _section("Configuration"), flags=re.M)
    defaults = DriftConfig()
    assert len(rows) == 12
    for field, value in rows:
        actual = getattr(defaults, field)
        assert (str(actual) == value.strip() if isinstance(actual, str) else actual == float(value)), field


def test_index_table_thresholds_are_the_defaults():
    cell = r"(?:[^|\\]|\\.)+"  # a table cell; formulas escape their pipes as \|
    rows = re.findall(rf"^\| `(\w+)` \|{cell}\|{cell}\| ([\d.]+)", _section("Indices"), flags=re.M)
    assert {name for name, _ in rows} == set(DriftConfig().thresholds)
    for name, value in rows:
        assert DriftConfig().threshold(name) == float(value), name


def test_numbers_in_the_text():
    profiles = _section("Profiles: summarise the reference once, every window on its bins")
    levels = quantile_levels(DriftConfig().fine_bins)
    assert f"{len(levels)} edges, so {len(levels) + 1} counts" in profiles
    assert ", ".join(f"{t:g}" for t in TAIL_LEVELS) in profiles
    assert f"{BUCKETS:,}-bucket" in profiles and f"more than {MAX_RANKED:,} values" in profiles
    assert f"**top {DriftConfig().top_k}**" in profiles
    assert f"n_e = {KSTWO_LIMIT:,}" in _section("Indices")
    verdicts = _section("Verdicts")
    config = DriftConfig()
    assert f"fewer than **{config.min_count}**" in verdicts
    assert f"**{config.dataset_drift_share * 100:g} %**" in verdicts and f"PSI ≥ **{config.psi_major:g}**" in verdicts
    assert f"at least **{config.missing_share_change * 100:g} points**" in _section("Indices")


def test_worked_psi_example():
    text = " ".join(_section("Indices").split())
    match = re.search(r"current shares ([\d., ]+?) give \*\*PSI = ([\d.]+)\*\* \(moderate\) and a Jensen–Shannon "
                      r"distance of (\d+\.\d+)", text)
    current = np.array([float(v) for v in match.group(1).split(", ")])
    reference = np.full(10, 0.1)
    assert psi(reference, current, DriftConfig().psi_epsilon) == pytest.approx(float(match.group(2)), abs=5e-5)
    assert jensen_shannon(reference, current) == pytest.approx(float(match.group(3)), abs=5e-5)
