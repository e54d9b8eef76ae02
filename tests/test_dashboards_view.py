"""The dashboards' view: a time range and filters read from, and written back to, a URL query string."""

from __future__ import annotations

import urllib.parse

import pandas as pd

from analytics.slo.lifecycle import AlertKey, AlertState
from analytics.slo.payload import PayloadConfig
from dashboards.view import CUSTOM, View

NEWEST = pd.Timestamp("2026-11-04T00:00:00.170816590Z")


def test_a_preset_ends_at_the_newest_data_rounded_up_to_the_minute():
    view = View.from_query({"range": "6h"}, NEWEST)
    assert (view.since, view.until) == (pd.Timestamp("2026-11-03T18:01Z"), pd.Timestamp("2026-11-04T00:01Z"))
    assert View.from_query({}, NEWEST).range == "24h"
    assert View.from_query({"range": "1y"}, NEWEST).range == "24h"  # unknown: the default, not an error


def test_an_absolute_range_wins_when_valid():
    view = View.from_query({"range": "6h", "from": "2026-11-02T14:00:00Z", "to": "2026-11-02T16:00:00+00:00"}, NEWEST)
    assert (view.range, view.since, view.until) == (CUSTOM, pd.Timestamp("2026-11-02T14:00Z"),
                                                    pd.Timestamp("2026-11-02T16:00Z"))
    assert view.query() == {"from": "2026-11-02T14:00:00Z", "to": "2026-11-02T16:00:00Z"}
    for bad in ({"from": "yesterday", "to": "2026-11-02T16:00:00Z"},
                {"from": "2026-11-02T16:00:00Z", "to": "2026-11-02T14:00:00Z"}, {"from": "2026-11-02T16:00:00Z"}):
        assert View.from_query(bad, NEWEST).range == "24h"


def test_filters_become_api_parameters_and_links_carry_the_view():
    view = View.from_query({"range": "7d", "site": "ams-factory-1", "model": "defect-detector", "other": "x"}, NEWEST)
    assert view.api_filters() == {"site": "ams-factory-1", "model_name": "defect-detector"}
    assert view.query() == {"range": "7d", "model": "defect-detector", "site": "ams-factory-1"}
    assert view.link("debug", device="ams1-coral-001", trace=None) == \
        "debug?range=7d&model=defect-detector&site=ams-factory-1&device=ams1-coral-001"
    # A cohort's keys that are no filter (firmware_version) are left out of the view.
    assert view.with_filters(site="atl-factory-2", firmware_version="6.1.0").filters == \
        {"site": "atl-factory-2", "model": "defect-detector"}


def test_an_alert_link_opens_its_group():
    """The notifier's dashboard_url template, as docs/configuration.md gives it, opens the alert's group."""
    config = PayloadConfig(dashboard_url_template="http://127.0.0.1:8501/on-call?slo={slo}&{group_query}")
    group = {"model_name": "defect-detector", "site": "ams-factory-1"}
    link = config.link(config.dashboard_url_template, AlertState(AlertKey.of("inference-success-by-site", "page", group)))
    path, _, query = link.partition("?")
    assert path.endswith("/on-call")
    view = View.from_query(dict(urllib.parse.parse_qsl(query)), NEWEST)
    assert view.filters == {"model": "defect-detector", "site": "ams-factory-1"}
    assert view.api_filters() == {"model_name": "defect-detector", "site": "ams-factory-1"}


def test_thinned_series_keep_every_peak_as_numpy_block_maxima_do():
    import numpy as np

    from dashboards.charts import MAX_POINTS, thin

    rng = np.random.default_rng(7)
    minutes = pd.date_range("2026-11-01", periods=1440, freq="min")
    frame = pd.DataFrame({"t": minutes.repeat(2), "w": ["burn_5m", "burn_1h"] * 1440, "v": rng.random(2880)})
    frame.loc[777, "v"] = 99.0  # one minute's spike: the on-call engineer must still see it
    thinned = thin(frame, "t", "v", by="w")
    for window, part in frame.groupby("w"):
        values = part.sort_values("t")["v"].to_numpy()
        run = -(-len(values) // MAX_POINTS)
        kept = thinned[thinned["w"] == window]
        assert len(kept) <= MAX_POINTS
        assert np.array_equal(kept["v"].to_numpy(), values.reshape(-1, run).max(axis=1))
        assert kept["t"].tolist() == part.sort_values("t")["t"].iloc[::run].tolist()  # each run's first minute
    assert thinned["v"].max() == 99.0
    short = frame.head(100)
    assert thin(short, "t", "v", by="w").sort_values(["w", "t"]).reset_index(drop=True).equals(
        short.sort_values(["w", "t"]).reset_index(drop=True))  # a short series is drawn as it is
