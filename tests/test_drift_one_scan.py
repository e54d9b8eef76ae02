"""Every feature in one scan (analytics/drift/wide_sql.py) gives exactly the per-feature computation's profiles.

The per-feature SQL builders (``reference_layout``, ``summary_sql``) are the direct computation: one
query per feature. The library's profiles and current summaries read each row once for all features.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from analytics.drift.config import DriftConfig
from analytics.drift.profile_sql import (FeatureSpec, profile_reference, reference_layout, summaries_from_rows,
                                         summarise_groups, summary_sql)
from analytics.drift.profiles import quantile_levels
from analytics.drift.quantiles import exact_quantiles_by_feature
from analytics.drift.sql_text import run_read
from collector.store.files import open_database

NUMERIC = [f"x{i}" for i in range(5)]
CATEGORICAL = ["c0", "c1"]


def _known(n: int, seed: int) -> pa.Table:
    """Values on a 1/8 grid (sums exact in any order), a point mass, missing values of every kind, text."""
    rng = np.random.default_rng(seed)
    columns: dict = {}
    for i, name in enumerate(NUMERIC):
        x = np.round(rng.normal(i * 10, 1 + i, n) * 8) / 8
        x[rng.random(n) < 0.1] = 3.0   # a point mass: duplicate edges, empty zero-width bins
        text = x.astype(str).astype(object)
        text[rng.random(n) < 0.05] = None
        text[rng.random(n) < 0.01] = "nan"
        text[rng.random(n) < 0.01] = "not a number"
        columns[name] = pa.array(text, pa.string())
    for name in CATEGORICAL:
        values = rng.choice(np.array(["a", "b", "c", "d", "e", "rare1", "rare2"], dtype=object), n,
                            p=[.3, .25, .2, .1, .1, .03, .02])
        values[rng.random(n) < 0.04] = None
        columns[name] = pa.array(values, pa.string())
    columns["site"] = pa.array(rng.choice(np.array(["s1", "s2", "s3", None], dtype=object), n), pa.string())
    return pa.table(columns)


FEATURES = [FeatureSpec(n, "numeric") for n in NUMERIC] + [FeatureSpec(n, "categorical") for n in CATEGORICAL]
CONFIG = DriftConfig(top_k=4)


def _direct(con, source: str, where: str | None = None, group_by=(), layouts=None) -> dict:
    """``{group: {name: Summary}}`` one query per feature (with its own layout unless given)."""
    out: dict = {}
    for feature in FEATURES:
        layout = layouts[feature.name] if layouts else reference_layout(con, feature, CONFIG, source, where)
        rows = run_read(con, summary_sql(layout, feature.sql, source, where, group_by))
        for key, summary in summaries_from_rows(layout, rows, len(group_by)).items():
            out.setdefault(key, {})[feature.name] = summary
    return out


def test_one_scan_profiles_and_group_summaries_equal_the_per_feature_computation():
    con = open_database(":memory:")
    con.register("ref", _known(20_000, seed=1))
    con.register("cur", _known(8_000, seed=2))
    reference = profile_reference(con, "ref", FEATURES, CONFIG)
    assert reference == _direct(con, "ref")[()]
    layouts = {name: s.layout for name, s in reference.items()}
    assert summarise_groups(con, "cur", reference, group_by=["site"]) == \
        _direct(con, "cur", group_by=["site"], layouts=layouts)
    where = "site = 's2'"
    assert summarise_groups(con, "cur", reference, where=where) == _direct(con, "cur", where, layouts=layouts)


def test_the_number_of_queries_does_not_grow_with_the_features():
    con = open_database(":memory:")
    con.register("ref", _known(5_000, seed=3))
    calls: list[str] = []

    def read(sql, params):
        calls.append(sql)
        return con.sql(sql, params=params).to_arrow_table()

    counts = []
    for features in (FEATURES[:1] + FEATURES[-1:], FEATURES):
        calls.clear()
        reference = profile_reference(read, "ref", features, CONFIG)
        summarise_groups(read, "ref", reference, group_by=["site"])
        counts.append(len(calls))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("max_ranked", [200_000, 1_000, 10])
def test_quantiles_of_many_features_at_once_are_numpys_whatever_the_zoom(max_ranked):
    rng = np.random.default_rng(5)
    heavy = np.concatenate([rng.normal(0, 1, 20_000), np.zeros(4_000), [1e12, -1e12]])  # zoom into one bucket
    smooth = rng.lognormal(0, 2, 15_000)
    constant = np.full(300, 7.5)
    con = open_database(":memory:")
    con.register("data", pa.table({"f": np.repeat([0, 1, 3], [len(heavy), len(smooth), len(constant)]),
                                   "v": np.concatenate([heavy, smooth, constant])}))
    levels = quantile_levels(100)
    found = exact_quantiles_by_feature(con, "data", [0, 1, 2, 3], levels, max_ranked=max_ranked)
    assert found[0] == tuple(np.quantile(heavy, levels).tolist())
    assert found[1] == tuple(np.quantile(smooth, levels).tolist())
    assert found[2] == ()                                   # no value
    assert found[3] == (7.5,) * len(levels)
