"""The shipped sample's burn incidents page or ticket as its manifest says, and nothing else alerts.

``fleetwatch slo backtest`` runs the shipped SLO file (sample_data/slos.yaml)
over the loaded sample; every expectation comes from sample_data/manifest.json
(cohorts, times), none from the evaluator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from tests.conftest import SAMPLE_DIR

MANIFEST = json.loads((SAMPLE_DIR / "manifest.json").read_text())
INCIDENTS = {i["kind"]: i for i in MANIFEST["incidents"]}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


@pytest.fixture(scope="module")
def transitions(sample_db):
    start = MANIFEST["config"]["start"]
    end = (_time(start) + timedelta(hours=MANIFEST["config"]["duration_hours"])).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = subprocess.run([sys.executable, "-m", "fleetwatch", "slo", "backtest", "--db", str(sample_db),
                          "--slos", str(SAMPLE_DIR / "slos.yaml"), "--from", start, "--to", end],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert all(set(t) >= {"at", "slo", "group", "severity", "state", "burn_rates"} for t in lines)
    for t in lines:
        t["at"] = _time(t["at"])
    return lines


def test_the_error_burst_pages_its_site_soon_after_onset_and_resolves_minutes_after_it_ends(transitions):
    burst = INCIDENTS["error_burst"]
    site = burst["cohort"]["fleet.site"]
    start, end = _time(burst["start"]), _time(burst["end"])
    pages = [t for t in transitions if t["severity"] == "page" and t["slo"].startswith("inference-success")]
    assert [(t["slo"], t["group"], t["state"]) for t in pages] == [
        ("inference-success-by-site", {"site": site}, "firing"), ("inference-success-by-site", {"site": site}, "resolved")]
    fired, resolved = pages[0], pages[1]
    # 30 % failing burns a 1 % budget at 30x: the 1h window passes 14.4x once about half of it is burst.
    assert start < fired["at"] <= start + timedelta(minutes=45)
    assert fired["burn_rates"]["1h"] > 14.4 and fired["burn_rates"]["5m"] > 14.4
    assert end <= resolved["at"] <= end + timedelta(minutes=35)  # the slow page's 30m short window


def test_the_slow_error_increase_tickets_its_region_and_never_pages(transitions):
    slow = INCIDENTS["slow_error_increase"]
    region = slow["cohort"]["fleet.region"]
    sites = {s["site"] for s in MANIFEST["fleet"]["sites"] if s["region"] == region}
    tickets = [t for t in transitions if t["severity"] == "ticket" and t["slo"].startswith("inference-success")]
    region_tickets = [t for t in tickets if t["group"] == {"region": region} and t["state"] == "firing"]
    assert region_tickets and region_tickets[-1]["at"] >= _time(slow["start"]) + timedelta(hours=12)
    # Success tickets only inside the incidents' cohorts: the region and its sites.
    assert {t["group"].get("region") or t["group"].get("site") for t in tickets} <= {region, *sites}
    assert not [t for t in transitions if t["severity"] == "page" and t["group"].get("region") == region]


def test_the_firmware_latency_regression_tickets_the_tpu_sticks_only_after_the_rollout(transitions):
    regression = INCIDENTS["latency_regression"]
    rollout = next(r for r in MANIFEST["rollouts"] if r["rollout_id"] == regression["magnitude"]["rollout_id"])
    fleet_stage = next(s for s in rollout["stages"] if s["stage"] == "fleet")
    stage_start = datetime(1970, 1, 1) + timedelta(microseconds=fleet_stage["start_unix_nano"] // 1000)
    latency = [t for t in transitions if t["slo"] == "coral-latency"]
    assert latency and latency[0]["state"] == "firing" and latency[0]["severity"] == "ticket"
    assert latency[0]["at"] > stage_start


def test_the_offline_site_pages_on_freshness_and_resolves_after_its_uplink_returns(transitions):
    offline = INCIDENTS["site_offline"]
    site = offline["cohort"]["fleet.site"]
    start, end = _time(offline["start"]), _time(offline["end"])
    fresh = [t for t in transitions if t["slo"] == "telemetry-freshness-by-site"]
    assert {tuple(t["group"].items()) for t in fresh} == {(("site", site),)}  # no other site goes stale
    pages = [(t["state"], t["at"]) for t in fresh if t["severity"] == "page"]
    assert [state for state, _ in pages] == ["firing", "resolved"]
    # 15 minutes of staleness before a device counts as bad, then the 5m/1h or 30m/6h windows and 2m pending.
    assert start + timedelta(minutes=15) < pages[0][1] <= start + timedelta(minutes=45)
    assert end < pages[1][1] <= end + timedelta(minutes=40)
