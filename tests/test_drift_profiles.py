"""Profiles are deterministic, merge exactly, count missing values, serialise to JSON and Arrow."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from analytics.drift.config import DriftConfig
from analytics.drift.profile_sql import FeatureSpec, profile_reference, summarise, summarise_groups
from analytics.drift.profiles import Summary, merge_all, summaries_from_arrow, summaries_to_arrow
from collector.store.files import open_database
from tests.drift_data import categories

FEATURES = [FeatureSpec("x", "numeric"), FeatureSpec("c", "categorical")]


def _data(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.lognormal(3, 1, n) + 1e6, "c": categories(n, {"a": .6, "b": .3, "z": .1}, seed),
                     "hour": rng.integers(0, 2, n)})


def _profile_text(threads: int) -> list[str]:
    con = open_database(":memory:", config={"threads": str(threads)})
    con.register("data", _data(300_000, seed=1))
    return [s.to_json_text() for s in profile_reference(con, "data", FEATURES).values()]


def test_the_same_input_gives_byte_identical_profiles_whatever_the_threads():
    # large values around 1e6 make the floating-point sums depend on their order if anything does
    assert _profile_text(1) == _profile_text(2) == _profile_text(2)


def test_two_windows_merged_equal_the_summary_of_both():
    con = open_database(":memory:")
    con.register("data", _data(50_000, seed=2))
    reference = profile_reference(con, "data", FEATURES)
    both = summarise(con, "data", reference)
    hours = [summarise(con, "data", reference, where=f"hour = {h}") for h in (0, 1)]
    for name in ("x", "c"):
        merged = hours[0][name].merge(hours[1][name])
        assert merged.counts == both[name].counts and merged.missing == both[name].missing
        assert (merged.minimum, merged.maximum) == (both[name].minimum, both[name].maximum)
        assert merged.sum == pytest.approx(both[name].sum, rel=1e-10, abs=1e-6)
        assert merged.sum_sq == pytest.approx(both[name].sum_sq, rel=1e-10)
    assert both["x"].std == pytest.approx(np.std(_data(50_000, seed=2)["x"].to_numpy(), ddof=1), rel=1e-9)
    by_hour = summarise_groups(con, "data", reference, group_by=["hour"])
    assert sorted(by_hour) == [(0,), (1,)]
    assert merge_all([by_hour[(0,)]["x"], by_hour[(1,)]["x"]]).counts == both["x"].counts
    with pytest.raises(ValueError, match="different layouts"):
        both["x"].merge(Summary(reference["c"].layout, reference["c"].counts))


def test_missing_values_are_counted_not_dropped():
    con = open_database(":memory:")
    con.execute("CREATE TABLE ref AS SELECT range::DOUBLE AS x, (range % 3)::VARCHAR AS c FROM range(1000)")
    con.execute("CREATE TABLE cur (x VARCHAR, c VARCHAR)")
    con.execute("INSERT INTO cur VALUES ('1.5', 'a'), (NULL, NULL), ('nan', '1'), ('inf', '2'), ('oops', '0'),"
                " ('-1e9', NULL)")
    reference = profile_reference(con, "ref", FEATURES)
    current = summarise(con, "cur", reference)
    assert (current["x"].count, current["x"].missing) == (2, 4)   # NULL, NaN, inf and text are missing
    assert current["x"].counts[0] == 1 and current["x"].minimum == -1e9   # below the reference's minimum
    assert (current["c"].count, current["c"].missing) == (4, 2)
    assert current["c"].counts[-1] == 1                                   # 'a' is not a reference category


def test_top_k_categories_and_other():
    con = open_database(":memory:")
    con.execute("CREATE TABLE ref AS SELECT (range % 30)::VARCHAR AS c FROM range(3000) UNION ALL "
                "SELECT '7' FROM range(50)")
    reference = profile_reference(con, "ref", [FeatureSpec("c", "categorical")], DriftConfig(top_k=5))
    layout = reference["c"].layout
    assert layout.categories == ("7", "0", "1", "10", "11")   # by count, ties by value
    assert reference["c"].counts == (150, 100, 100, 100, 100, 2500)


def test_json_and_arrow_round_trip():
    con = open_database(":memory:")
    con.register("data", _data(10_000, seed=3))
    reference = profile_reference(con, "data", FEATURES)
    for summary in reference.values():
        assert Summary.from_json_text(summary.to_json_text()) == summary
    table = summaries_to_arrow(list(reference.values()))
    con.register("stored", table)
    assert summaries_from_arrow(con.sql("SELECT * FROM stored").to_arrow_table()) == list(reference.values())
    with pytest.raises(ValueError, match="format"):
        Summary.from_json({**reference["x"].to_json(), "format": 99})


def test_a_reference_without_values_gives_an_empty_layout():
    con = open_database(":memory:")
    con.execute("CREATE TABLE ref AS SELECT NULL::DOUBLE AS x, NULL::VARCHAR AS c FROM range(10)")
    reference = profile_reference(con, "ref", FEATURES)
    assert reference["x"].layout.edges == () and reference["x"].missing == 10
    assert reference["c"].layout.categories == () and reference["c"].missing == 10


@pytest.mark.parametrize("max_ranked", [200_000, 1_000, 10])
def test_reference_quantiles_are_numpys_whatever_the_zoom(max_ranked):
    from analytics.drift.profiles import quantile_levels
    from analytics.drift.quantiles import exact_quantiles

    rng = np.random.default_rng(5)
    # a point mass, far outliers (everything else in one histogram bucket), NULLs
    x = np.concatenate([rng.normal(0, 1, 30_000), np.zeros(5_000), [1e12, -1e12], rng.lognormal(0, 2, 5_000)])
    con = open_database(":memory:")
    con.register("data", pa.table({"x": np.concatenate([x, [np.nan] * 10])}))
    levels = quantile_levels(100)
    edges = exact_quantiles(con, "(SELECT CASE WHEN isfinite(x) THEN x END AS v FROM data)", levels,
                            max_ranked=max_ranked)
    assert edges == tuple(np.quantile(x, levels).tolist())


def test_a_read_callable_returning_arrow_gives_the_same_profiles():
    con = open_database(":memory:")
    con.register("data", _data(20_000, seed=4))
    calls = []

    def read(sql, params):  # the job framework's reader: named parameters in, a pyarrow Table out
        calls.append(sql)
        return con.sql(sql, params=params).to_arrow_table()

    by_callable = profile_reference(read, "data", FEATURES)
    assert calls and by_callable == profile_reference(con, "data", FEATURES)
    assert summarise(read, "data", by_callable, where="hour = $h", params={"h": 1}) == \
        summarise(con, "data", by_callable, where="hour = $h", params={"h": 1})
