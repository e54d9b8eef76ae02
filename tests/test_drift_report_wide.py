"""The drift report of a model with 50 features stays a few MB at most (issue 11), hourly and daily.

One device sends two UTC days of inferences with 50 input features
through the real OpenTelemetry SDK to a real collector: the first day is
the pinned reference, on the second ten numeric features shift by one
standard deviation and two categorical ones change their shares.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from analytics.drift.jobs import DriftJob
from analytics.drift.section import DriftJobConfig
from analytics.jobs.framework import JobRunner
from analytics.schema import ANALYTICS
from bench.harness import CollectorProcess
from collector.store.database import Store
from collector.store.versions import COLLECTOR
from tests.sdk_devices import Device, emit_span

MODEL, VERSION = "wide-model", "1.0"
NUMERIC = [f"sensor_{i:02d}" for i in range(45)]
CATEGORICAL = [f"category_{i}" for i in range(5)]
SHIFTED = NUMERIC[:10]
PER_HOUR = 10
CEILING = 3 * 2**20  # "a few MB at most for 50 features"
CATEGORIES = ("daylight-overcast-north-window", "fluorescent-tube", "led", "low", "infrared-night")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@pytest.fixture(scope="module")
def wide_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("wide") / "wide.duckdb"
    reference_day = (_now() - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = np.random.default_rng(11)

    def inferences(tracer):
        for hour in range(48):
            shifted = hour >= 24
            for i in range(PER_HOUR):
                at = reference_day + timedelta(hours=hour, minutes=i * 60 / PER_HOUR)
                attrs = {"ml.model.name": MODEL, "ml.model.version": VERSION, "ml.inference.mode": "edge",
                         "ml.request.id": f"w-{hour}-{i}", "ml.prediction.label": "ok", "ml.prediction.score": 0.9}
                for name in NUMERIC:
                    attrs[f"ml.feature.{name}"] = float(rng.normal(1.0 if shifted and name in SHIFTED else 0.0))
                for j, name in enumerate(CATEGORICAL):
                    shares = [0.1, 0.1, 0.2, 0.5, 0.1] if shifted and j < 2 else [0.3, 0.3, 0.2, 0.1, 0.1]
                    attrs[f"ml.feature.{name}"] = str(rng.choice(CATEGORIES, p=shares))
                emit_span(tracer, "inference", at, attrs)

    with CollectorProcess(db) as collector:
        Device("wide-cam-1", "jetson-orin", reference_day - timedelta(hours=1)).spans(collector.http_url, inferences)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    try:
        report = JobRunner(store, [DriftJob(DriftJobConfig(cohorts=["site"]))]).run_due("drift_hour", _now())
        assert report.error is None
    finally:
        store.close()
    return db


@pytest.mark.parametrize("window", ["1d", "1h"])
def test_a_50_feature_report_stays_under_the_ceiling(wide_db, tmp_path, window):
    html = tmp_path / "wide.html"
    done = subprocess.run([sys.executable, "-m", "fleetwatch", "report", "drift", "--db", str(wide_db),
                           "--model", MODEL, "--window", window, "--out", str(html)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    payload = json.loads(html.with_suffix(".json").read_text())
    features = {f["name"] for f in payload["features"]}
    assert set(NUMERIC) | set(CATEGORICAL) <= features
    assert len(payload["drift_over_time"]["features"]) == len(features)
    if window == "1d":  # the shifted day: the shifted features lead and drift, the others do not
        assert payload["verdict"]["recommendation"] == "retrain"
        assert set(SHIFTED) <= set(payload["verdict"]["drifted"])
    else:  # hourly windows of 10 inferences: every one is insufficient data, still drawn
        assert payload["verdict"]["recommendation"] == "insufficient data"
        assert len(payload["drift_over_time"]["windows"]) >= 20
    assert html.stat().st_size < CEILING and html.with_suffix(".json").stat().st_size < CEILING
    text = html.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
