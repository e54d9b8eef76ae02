"""The README's main command: `fleetwatch demo` loads the sample shifted to now, runs every job, serves dashboards.

The demo runs once for this module and tests/test_dashboards_e2e.py (the
``running_demo`` fixture); the last tests here stop it with SIGTERM.
Expectations come from sample_data/manifest.json, moved by the demo's shift.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from analytics.api.client import ReadApiClient
from bench.demo_process import DemoProcess
from bench.harness import metric_value, query, wait_until
from tests.conftest import SAMPLE_DIR

# The shared demo's start-up (load and the jobs' catch-up) counts against the first test; minutes on a busy VM.
pytestmark = pytest.mark.timeout(2400)
MANIFEST = json.loads((SAMPLE_DIR / "manifest.json").read_text())
INCIDENTS = {i["kind"]: i for i in MANIFEST["incidents"]}
SHIFT_LINE = r"^loading the sample fleet \(fleet-sample\.otlp\.zst, moved (?:(\d+) days? ?)?(?:(\d+) h ?)?(?:(\d+) min)? later\)"


def demo_shift(demo: DemoProcess) -> timedelta:
    """The shift the demo printed when it started loading."""
    days, hours, minutes = (int(g or 0) for g in demo.wait_for(SHIFT_LINE, timeout=60).groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def shifted(text: str, shift: timedelta) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) + shift


def alerts(demo: DemoProcess, shift: timedelta) -> list[dict]:
    since = shifted(MANIFEST["config"]["start"], shift) - timedelta(hours=1)
    rows = ReadApiClient(demo.api_url).query("alert_history", since=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                             until="now").records()
    for row in rows:
        row["group"] = json.loads(row["group_key"])
        for key in ("starts_at", "ends_at"):
            row[key] = row[key] and datetime.fromisoformat(row[key].replace("Z", "+00:00"))
    return rows


def test_the_demo_prints_its_progress_and_the_url_of_its_dashboards_which_answer(running_demo):
    shift = demo_shift(running_demo)
    newest = shifted(MANIFEST["config"]["start"], shift) + timedelta(hours=MANIFEST["config"]["duration_hours"])
    assert abs(newest - datetime.now(timezone.utc)) < timedelta(hours=1)  # the sample ends about now
    running_demo.wait_for(r"^loading fleet-sample\.otlp\.zst: \d+%", timeout=5)  # the load's progress
    running_demo.wait_for(r"^sample fleet loaded in \d+ s: ", timeout=5)
    running_demo.wait_for(r"^jobs: rollups \d+%, .*SLOs \d+%", timeout=5)  # the backfill's progress
    running_demo.wait_for(r"^jobs: .*drift 100%", timeout=5)
    url = running_demo.wait_for(r"^dashboards: (http://127\.0\.0\.1:(\d+)/)", timeout=5)
    assert int(url.group(2)) == running_demo.dashboards_port
    ready = running_demo.wait_for(r"^demo ready in \d+ s, every job caught up: (\S+)", timeout=5)
    assert ready.group(1) == url.group(1)
    with urllib.request.urlopen(f"{url.group(1)}_stcore/health", timeout=10) as response:
        assert response.read() == b"ok"
    with urllib.request.urlopen(url.group(1), timeout=10) as response:
        assert response.status == 200 and b"<html" in response.read().lower()


def drift_tickets(rows: list[dict]) -> set[str]:
    """Sites with a ModelDrift ticket on the drifted model's old version."""
    model = INCIDENTS["input_drift"]["cohort"]["ml.model.name"]
    return {r["group"]["site"] for r in rows if r["alertname"] == "ModelDrift" and "site" in r["group"]
            and r["group"].get("model_version") == "2.3.1" and r["group"].get("model_name") == model}


def test_the_jobs_find_the_samples_incidents_at_their_shifted_times(running_demo):
    shift = demo_shift(running_demo)
    # Drift tickets are stepped by the SLO evaluation once it sees the drift job's new watermark: the tick
    # after "demo ready" at the latest.
    wait_until(lambda: drift_tickets(alerts(running_demo, shift)), timeout=300, what="the drift tickets")
    rows = alerts(running_demo, shift)
    # The error burst pages its site soon after onset and resolves after it ends (as in test_slo_sample).
    burst = INCIDENTS["error_burst"]
    pages = [r for r in rows if r["slo"] == "inference-success-by-site" and r["severity"] == "page"]
    assert [r["group"] for r in pages] == [{"site": burst["cohort"]["fleet.site"]}]
    start, end = shifted(burst["start"], shift), shifted(burst["end"], shift)
    assert start < pages[0]["starts_at"] <= start + timedelta(minutes=45)
    assert end <= pages[0]["ends_at"] <= end + timedelta(minutes=35)
    # The offline site pages on freshness while it is away.
    offline = INCIDENTS["site_offline"]
    away = [r for r in rows if r["slo"] == "telemetry-freshness-by-site" and r["severity"] == "page"
            and r["group"] == {"site": offline["cohort"]["fleet.site"]}]
    assert any(shifted(offline["start"], shift) < r["starts_at"] < shifted(offline["end"], shift) for r in away)
    # The input drift opens a ModelDrift ticket for its site's cohort of the old version, and for no other site.
    assert drift_tickets(rows) == {INCIDENTS["input_drift"]["cohort"]["fleet.site"]}


def test_rollups_through_the_read_api_count_every_inference_of_the_sample(running_demo):
    client = ReadApiClient(running_demo.api_url)
    daily = client.query("golden_signals", since="-4d", until="now", step="1d", group_by="inference_mode").records()
    by_mode: dict[str, int] = {}
    for row in daily:
        by_mode[row["group"]] = by_mode.get(row["group"], 0) + row["inferences"]
    assert by_mode == {"edge": MANIFEST["counts"]["inferences_edge"], "cloud": MANIFEST["counts"]["spans"]["inference.cloud"]}
    versions = client.query("model_versions", since="-4d", until="now").records()
    assert sum(v["inferences"] for v in versions) == by_mode["edge"]
    with urllib.request.urlopen(f"{running_demo.health_url}/metrics", timeout=5) as response:
        metrics_text = response.read().decode()
    assert metric_value(metrics_text, "fleetwatch_bulk_items_written_total", signal="traces") == \
        sum(MANIFEST["counts"]["spans"].values())
    assert metric_value(metrics_text, "fleetwatch_bulk_requests_written_total", signal="metrics") == \
        MANIFEST["counts"]["requests"]["metrics"]


def test_sigterm_stops_the_demo_and_its_dashboards_and_closes_the_file(running_demo):
    assert running_demo.streamlit_pids  # seen while it ran
    assert running_demo.stop() == 0, "\n".join(running_demo.lines[-20:])
    assert running_demo.orphans() == []
    spans, devices = query(running_demo.db, "SELECT count(*), count(DISTINCT device_id) FROM spans")[0]
    assert spans == sum(MANIFEST["counts"]["spans"].values()) and devices == len(MANIFEST["fleet"]["devices"])
    stored = query(running_demo.db, "SELECT value FROM fleetwatch_meta WHERE key = 'demo.time_shift_ns'")
    assert int(stored[0][0]) == demo_shift(running_demo) // timedelta(microseconds=1) * 1000


def test_a_second_demo_on_the_same_file_keeps_the_shift_and_loads_nothing_twice_and_a_kill_9_leaves_no_dashboards(
        running_demo):
    assert running_demo.stop() == 0  # the first one is stopped (already, when the module runs in order)
    again = DemoProcess(running_demo.db)
    again.start()
    try:
        assert demo_shift(again) == demo_shift(running_demo)
        loaded = again.wait_for(r"^sample fleet loaded in \d+ s: (.*)", timeout=600).group(1)
        requests = sum(MANIFEST["counts"]["requests"].values())
        assert loaded == (f"{requests:,} requests read; 0 spans and 0 metric points written "
                          f"({requests:,} requests already in the database)")
        again.wait_for(r"^dashboards: http", timeout=600)
        assert again.kill() == -signal.SIGKILL
        assert again.streamlit_pids
        wait_until(lambda: again.orphans() == [], timeout=60, what="Streamlit to end after its parent's kill -9")
    finally:
        if again.proc.poll() is None:
            again.stop()
    assert query(running_demo.db, "SELECT count(*) FROM spans")[0][0] == sum(MANIFEST["counts"]["spans"].values())
