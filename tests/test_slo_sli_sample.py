"""The SLI jobs on the shipped sample: the manifest's site outage and error burst show, and nothing else does."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from analytics.jobs.framework import JobRunner
from analytics.schema import ANALYTICS
from analytics.slo.sli_job import sli_jobs
from analytics.slo.spec import slos_from_dict
from collector.store.database import Store
from collector.store.versions import COLLECTOR
from tests.analytics_data import read

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
MANIFEST = json.loads((SAMPLE / "manifest.json").read_text())
STALENESS = 15
SPECS = slos_from_dict({"slos": [
    {"name": "success-by-site", "objective": 0.995, "group_by": ["site"]},
    {"name": "fresh-by-site", "objective": 0.99, "group_by": ["site"],
     "sli": {"kind": "freshness", "max_staleness_minutes": STALENESS}},
]})


def _incident(kind: str) -> tuple[str, datetime, datetime]:
    (incident,) = [i for i in MANIFEST["incidents"] if i["kind"] == kind]
    start, end = (datetime.fromisoformat(incident[k].replace("Z", "")) for k in ("start", "end"))
    return incident["cohort"]["fleet.site"], start, end


SAMPLE_END = datetime.fromisoformat(MANIFEST["config"]["start"].replace("Z", "")) \
    + timedelta(hours=MANIFEST["config"]["duration_hours"])


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory, sample_db):
    """The shipped sample, loaded once (about 25 s here), with both SLI jobs run over all of it."""
    db = tmp_path_factory.mktemp("sample") / "fw.duckdb"
    shutil.copyfile(sample_db, db)  # the session's one load of the sample (tests/conftest.py)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    runner = JobRunner(store, sli_jobs(SPECS))
    for job in runner.jobs:
        assert runner.run_due(job, SAMPLE_END + timedelta(minutes=1)).error is None
    yield store
    store.close()


def test_freshness_by_site_drops_for_the_offline_site_during_its_outage_only(sample_store):
    site, start, end = _incident("site_offline")
    rows = read(sample_store, "SELECT window_start, site, good, total FROM slo_freshness_minute").to_pylist()
    assert rows and max(r["window_start"] for r in rows) < SAMPLE_END
    stale = [r for r in rows if r["good"] < r["total"]]
    assert {r["site"] for r in stale} == {site}
    assert all(start <= r["window_start"] <= end for r in stale)
    # Once its newest telemetry is older than the staleness limit, none of its devices is fresh, and all still count.
    outage = {r["window_start"]: r for r in rows if r["site"] == site
              and start + timedelta(minutes=STALENESS + 1) <= r["window_start"] < end - timedelta(minutes=1)}
    assert len(outage) >= 6 * 60 - STALENESS - 2
    devices = len(next(i for i in MANIFEST["incidents"] if i["kind"] == "site_offline")["devices"])
    assert all(r["good"] == 0 and r["total"] == devices for r in outage.values())


def test_success_by_site_shows_the_error_burst_at_its_site_and_the_baseline_elsewhere(sample_store):
    site, start, end = _incident("error_burst")
    rows = read(sample_store, "SELECT site, window_start >= $start AND window_start < $end AS burst, "
                              "sum(total - good)::BIGINT AS bad, sum(total)::BIGINT AS total FROM slo_sli_minute "
                              "WHERE slo = 'success-by-site' GROUP BY ALL", {"start": start, "end": end}).to_pylist()
    ratio = {(r["site"], r["burst"]): r["bad"] / r["total"] for r in rows}
    assert 0.2 < ratio[(site, True)] < 0.4  # about 30 % bad
    assert all(value < 0.05 for (s, burst), value in ratio.items() if s != site or not burst)
