"""Every dashboard page on the shipped sample, served for real with its analytics jobs caught up (AppTest).

Expectations come from sample_data/manifest.json (sites, incidents, devices),
not from what the pages compute.
"""

from __future__ import annotations

import json
import urllib.parse

import pandas as pd
import pytest

from analytics.api.client import ReadApiClient
from tests.conftest import SAMPLE_DIR
from tests.dashboard_app import charts, frame, run_page, texts, use_api

MANIFEST = json.loads((SAMPLE_DIR / "manifest.json").read_text())
INCIDENTS = {i["kind"]: i for i in MANIFEST["incidents"]}
SITES = {s["site"]: s["devices"] for s in MANIFEST["fleet"]["sites"]}


@pytest.fixture()
def api_url(served_sample, monkeypatch) -> str:
    use_api(monkeypatch, served_sample.api_url)
    return served_sample.api_url


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_executive_opens_on_the_day_before_the_newest_data_with_the_whole_fleet(api_url):
    at = run_page("executive")
    assert not at.exception
    assert at.query_params["range"] == "24h"
    # The default range ends at the newest data (the sample's end), not at the wall clock.
    assert "2026-11-03 00:01 – 2026-11-04 00:01 UTC" in texts(at)
    assert int(metric(at, "Devices online")) + int(metric(at, "Devices stale")) == len(MANIFEST["fleet"]["devices"])
    slos = frame(at, "budget_remaining").sort_values("budget_remaining")
    offline, burst = INCIDENTS["site_offline"], INCIDENTS["error_burst"]
    # The offline site spent its freshness budget many times over; the error burst its site's success budget.
    assert slos.iloc[0][["slo", "group"]].tolist() == ["telemetry-freshness-by-site",
                                                       f"site={offline['cohort']['fleet.site']}"]
    success = slos[slos["slo"] == "inference-success-by-site"]
    assert success.iloc[0]["group"] == f"site={burst['cohort']['fleet.site']}"
    assert len(charts(at)) >= 7


def test_the_site_in_the_query_string_filters_the_executive_page(api_url):
    site = INCIDENTS["input_drift"]["cohort"]["fleet.site"]
    at = run_page("executive", {"range": "7d", "site": site})
    assert not at.exception
    assert at.selectbox(key="fw_site").value == site and at.query_params["site"] == site
    assert int(metric(at, "Devices online")) + int(metric(at, "Devices stale")) == SITES[site]
    groups = set(frame(at, "budget_remaining")["group"])
    assert f"site={site}" in groups and not {g for g in groups if g.startswith("site=")} - {f"site={site}"}


def test_a_filter_that_matches_nothing_says_so(api_url):
    at = run_page("executive", {"site": "no-such-site"})
    assert not at.exception
    assert "No device matches the filter." in texts(at)
    at = run_page("on-call", {"site": "no-such-site", "range": "7d"})
    assert not at.exception
    assert "No inference matches the filter in this range." in texts(at)


def test_on_call_lists_the_error_burst_page_with_a_link_to_the_debug_view(api_url):
    burst = INCIDENTS["error_burst"]
    site = burst["cohort"]["fleet.site"]
    at = run_page("on-call", {"range": "7d"})
    assert not at.exception
    alerts = frame(at, "alertname")
    pages = alerts[(alerts["severity"] == "page") & (alerts["slo"] == "inference-success-by-site")]
    assert pages["group"].tolist() == [f"site={site}"]
    page = pages.iloc[0]
    start, end = pd.Timestamp(burst["start"]).tz_localize(None), pd.Timestamp(burst["end"]).tz_localize(None)
    assert start < page["starts_at"] <= end and page["state"] == "resolved"
    link = urllib.parse.urlsplit(page["debug"])
    assert link.path == "debug" and urllib.parse.parse_qs(link.query) == {"range": ["7d"], "site": [site]}
    # The clock-skewed devices, and no other, are listed as skewed.
    devices = frame(at, "clock_skewed")
    assert set(devices.loc[devices["clock_skewed"], "device_id"]) == set(INCIDENTS["clock_skew"]["devices"])
    assert all(urllib.parse.urlsplit(u).path == "debug" for u in devices["debug"])
    assert at.query_params["by"] == "model_version"


def test_an_absolute_range_in_the_query_string_is_the_range_shown(api_url):
    burst = INCIDENTS["error_burst"]
    site = burst["cohort"]["fleet.site"]
    during = {"from": "2026-11-02T14:00:00Z", "to": "2026-11-02T16:00:00Z"}
    at = run_page("on-call", during)
    assert not at.exception and at.selectbox(key="fw_range").value == "custom"
    assert "2026-11-02 14:00 – 2026-11-02 16:00 UTC" in texts(at)
    assert f"site={site}" in frame(at, "alertname").query("severity == 'page'")["group"].tolist()
    # A day later the page had long resolved: only the still-open tickets overlap that range.
    at = run_page("on-call", {"from": "2026-11-03T14:00:00Z", "to": "2026-11-03T16:00:00Z"})
    assert not at.exception
    alerts = frame(at, "alertname")
    assert f"site={site}" not in alerts.query("severity == 'page'")["group"].tolist()


def test_debug_shows_a_device_and_the_waterfall_of_one_of_its_failed_traces(api_url):
    device = INCIDENTS["error_burst"]["devices"][0]
    spans = ReadApiClient(api_url).query("device_spans", device_id=device, since="2026-11-02T14:24:00Z",
                                         until="2026-11-02T15:09:00Z").records()
    failed = next(s for s in spans if s["status_code"] == "ERROR" and s["name"] == "inference")
    at = run_page("debug", {"from": "2026-11-02T14:00:00Z", "to": "2026-11-02T16:00:00Z",
                                            "device": device, "trace": failed["trace_id"]})
    assert not at.exception
    assert at.selectbox(key="dbg_device").value == device
    trace_spans = ReadApiClient(api_url).query("trace_spans", trace_id=failed["trace_id"]).records()
    waterfall = next(c for c in charts(at) if c["layout"]["yaxis"]["title"]["text"] == "span")
    labels = [y for trace in waterfall["data"] for y in trace["y"]]
    assert sorted(labels) == sorted(f"{s['name']} · {s['span_id'][:8]}" for s in trace_spans)
    errors = frame(at, "status_message")
    assert failed["status_message"] in errors["status_message"].tolist()
    recent = frame(at, "prediction_label")
    assert len(recent) == min(200, len([s for s in ReadApiClient(api_url).query(
        "device_spans", device_id=device, since="2026-11-02T14:00:00Z", until="2026-11-02T16:00:00Z").rows]))
    metrics_chart = next(c for c in charts(at) if any("device.temperature" in str(t.get("name")) for t in c["data"]))
    assert metrics_chart["data"]


def test_drift_opens_on_the_drifted_site_with_its_shifted_feature(api_url):
    drift = INCIDENTS["input_drift"]
    site = drift["cohort"]["fleet.site"]
    at = run_page("drift")
    assert not at.exception
    drifted = frame(at, "drifted_features")
    rows = drifted[drifted["cohort"] == f"site={site}"]
    assert set(rows["model_version"]) == {"2.3.1", "2.4.0"} and set(rows["verdict"]) == {"retrain"}
    assert all("brightness" in features for features in rows["drifted_features"])
    assert json.loads(at.selectbox(key="drift_cohort").value) == {"site": site}
    assert at.selectbox(key="drift_feature").value == "brightness"
    heatmap = next(c for c in charts(at) if c["data"][0]["type"] == "heatmap")
    assert set(heatmap["data"][0]["y"]) >= {"brightness", "contrast", "blur", "lighting"}
    # The report the server builds, offered for download.
    at.button(key="drift_build").click().run()
    assert not at.exception
    assert at.get("download_button"), texts(at)



def test_slo_status_as_of_a_past_instant_is_the_state_then(served_sample):
    """The pages show the SLOs at their range's end: the named query looks back (api.md, slo_status)."""
    burst = INCIDENTS["error_burst"]
    site = burst["cohort"]["fleet.site"]
    client = ReadApiClient(served_sample.api_url)
    during = client.query("slo_status", as_of="2026-11-02T15:00:00Z", slo="inference-success-by-site",
                          site=site).records()
    assert [(r["evaluated_at"], r["page"]) for r in during] == [("2026-11-02T15:00:00Z", "firing")]
    assert "page firing" in during[0]["alerts"]
    after = client.query("slo_status", as_of="2026-11-03T15:00:00Z", slo="inference-success-by-site",
                         site=site).records()
    assert after[0]["page"] == "ok" and "page" not in after[0]["alerts"]


def test_on_call_filtered_by_a_site_lists_that_sites_alerts_and_fleet_wide_ones_only(api_url):
    site = INCIDENTS["error_burst"]["cohort"]["fleet.site"]
    at = run_page("on-call", {"range": "7d", "site": site})
    assert not at.exception
    alerts = frame(at, "alertname")
    assert f"site={site}" in set(alerts.query("severity == 'page'")["group"])
    assert all(f"site={site}" in group or group == "all" for group in alerts["group"]), alerts["group"].tolist()
