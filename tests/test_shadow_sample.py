"""Shadow mode and ground truth on the shipped sample: the defect-detector 2.4.0 rollout (sample_data/manifest.json).

Tolerances are binomial: a rate measured on n pairs (or labels) is within
Z standard errors sqrt(p (1 - p) / n) of the manifest's expected value,
Z = 3.29 (two-sided 99.9 %).
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from analytics.jobs.framework import JobRunner
from analytics.rollups import GoldenSignalsHour
from analytics.schema import ANALYTICS
from analytics.shadow.derived import ground_truth_accuracy, retraining_cadence, shadow_agreement, shadow_flips
from analytics.shadow.jobs import shadow_jobs
from collector.store.database import Store
from collector.store.versions import COLLECTOR
from tests.analytics_data import read
from tests.conftest import SAMPLE_DIR

Z = 3.29
MANIFEST = json.loads((SAMPLE_DIR / "manifest.json").read_text())
INCIDENT = next(i for i in MANIFEST["incidents"] if i["kind"] == "shadow_disagreement")["magnitude"]
ROLLOUT = next(r for r in MANIFEST["rollouts"] if r["rollout_id"] == INCIDENT["rollout_id"])
START = datetime.fromisoformat(MANIFEST["config"]["start"].replace("Z", "+00:00")).replace(tzinfo=None)


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).replace(tzinfo=None)


def _within(measured: float, expected: float, n: int) -> bool:
    return abs(measured - expected) <= Z * math.sqrt(expected * (1 - expected) / n)


@pytest.fixture(scope="module")
def sample(sample_db, tmp_path_factory):
    db = tmp_path_factory.mktemp("shadow-sample") / "sample.duckdb"
    shutil.copyfile(sample_db, db)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    # the retraining cadence reads the hourly golden-signal rollups
    runner = JobRunner(store, [*shadow_jobs(), GoldenSignalsHour()])
    end = START + timedelta(days=3)
    for name in runner.jobs:
        assert runner.run_due(name, end).error is None
    yield (lambda sql, params: read(store, sql, params)), end
    store.close()


def _versions(read_, end, **params) -> dict:
    rows = shadow_agreement(read_, since=START, until=end, model_name="defect-detector", **params)
    return {r["model_version"]: r for r in rows if r["model_version"] is not None}


def test_agreement_per_version_matches_the_manifest(sample):
    read_, end = sample
    versions = _versions(read_, end)
    old, new = versions[ROLLOUT["from_version"]], versions[ROLLOUT["to_version"]]
    assert new["agreement_rate"] < old["agreement_rate"]
    assert _within(old["agreement_rate"], INCIDENT["expected_agreement_before"], old["compared"]), old
    assert _within(new["agreement_rate"], INCIDENT["expected_agreement_after"], new["compared"]), new
    assert new["kappa"] < old["kappa"]
    # the simulator shadows 15 % of successful edge inferences, all within the lag
    for row in (old, new):
        assert 0.10 < row["coverage"] < 0.20
        assert row["edge_unmatched"] == row["edge_requests"] - row["matched"]


def test_the_canary_drop_shows_before_the_fleet_stage(sample):
    read_, _ = sample
    canary, fleet = ROLLOUT["stages"]
    assert (canary["stage"], fleet["stage"]) == ("canary", "fleet")
    before_fleet = _versions(read_, _time(fleet["start_unix_nano"]).replace(minute=0))
    new = before_fleet[ROLLOUT["to_version"]]
    assert new["compared"] > 50  # the canary devices only: nobody else runs 2.4.0 before the fleet stage
    se = math.sqrt(INCIDENT["expected_agreement_before"] * (1 - INCIDENT["expected_agreement_before"])
                   / new["compared"])
    assert new["agreement_rate"] < INCIDENT["expected_agreement_before"] - Z * se
    assert _within(new["agreement_rate"], INCIDENT["expected_agreement_after"], new["compared"]), new
    first_hour = min(r["step_start"] for r in shadow_agreement(
        read_, since=START, until=_time(fleet["start_unix_nano"]), model_name="defect-detector",
        model_version=ROLLOUT["to_version"], step="hour"))
    assert _time(canary["start_unix_nano"]).replace(minute=0, second=0, microsecond=0) <= first_hour
    assert first_hour < _time(canary["end_unix_nano"])


def test_accuracy_from_ground_truth_matches_the_manifest_and_the_bound_holds(sample):
    read_, end = sample
    rows = {r["model_version"]: r for r in ground_truth_accuracy(read_, since=START, until=end,
                                                                  model_name="defect-detector")}
    for version, expected in ((ROLLOUT["from_version"], INCIDENT["edge_accuracy_before"]),
                              (ROLLOUT["to_version"], INCIDENT["edge_accuracy_after"])):
        row = rows[version]
        assert row["class_labelled"] > 200
        assert _within(row["accuracy"], expected, row["class_labelled"]), row
        assert 0 < row["label_coverage"] < 0.1  # the simulator labels 5 % of inferences
    shadow = _versions(read_, end)
    for version, row in shadow.items():
        se = math.sqrt(row["measured_edge_error"] * (1 - row["measured_edge_error"]) / row["labelled"])
        assert row["cloud_error_source"] == "ground_truth"
        assert row["edge_error_lower"] - Z * se <= row["measured_edge_error"] <= row["edge_error_upper"] + Z * se


def test_retraining_cadence_lists_versions_in_rollout_order(sample):
    read_, end = sample
    rows = retraining_cadence(read_, since=START, until=end, model_name="defect-detector", period="day")
    assert [r["model_version"] for r in rows] == [ROLLOUT["from_version"], ROLLOUT["to_version"]]
    old, new = rows
    # 2.4.0 is first run by the canary devices, in the canary stage's first hour
    assert new["first_seen"] == _time(ROLLOUT["stages"][0]["start_unix_nano"]).replace(minute=0, second=0,
                                                                                        microsecond=0)
    assert new["previous_version"] == old["model_version"] and new["days_since_previous"] > 0


def test_kappa_comes_from_the_summed_flip_matrix_not_hourly_kappas(sample):
    read_, end = sample
    version = ROLLOUT["to_version"]
    params = dict(since=START, until=end, model_name="defect-detector", model_version=version)
    flips = shadow_flips(read_, **params)
    labels = sorted({r["edge_label"] for r in flips} | {r["cloud_label"] for r in flips})
    matrix = np.zeros((len(labels), len(labels)))
    for r in flips:
        matrix[labels.index(r["edge_label"]), labels.index(r["cloud_label"])] += r["pairs"]
    n = matrix.sum()
    p_o, p_e = np.trace(matrix) / n, float((matrix.sum(axis=1) / n) @ (matrix.sum(axis=0) / n))
    (row,) = shadow_agreement(read_, **params)
    assert row["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e), rel=1e-9)
    hourly = [r["kappa"] for r in shadow_agreement(read_, step="hour", **params) if r["kappa"] is not None]
    assert abs(np.mean(hourly) - row["kappa"]) > 1e-6  # an average of hourly kappas is another number


def test_every_shadow_in_the_sample_is_matched_even_a_backlog_hours_late(sample):
    read_, end = sample
    # computed straight from the raw spans: edge inferences whose request id has a cloud inference
    raw = read_("""
        SELECT e.model_name, count(*) AS n,
               count(*) FILTER (WHERE epoch(c.start_time) - epoch(e.start_time) > 3600) AS over_an_hour
        FROM span_rows e JOIN span_rows c USING (request_id)
        WHERE e.name = 'inference' AND e.inference_mode = 'edge' AND c.name = 'inference'
          AND c.inference_mode = 'cloud'
        GROUP BY ALL""", {}).to_pylist()
    matched = {}
    for r in shadow_agreement(read_, since=START, until=end):
        matched[r["model_name"]] = matched.get(r["model_name"], 0) + r["matched"]
        assert r["shadow_orphans"] == 0
    assert {r["model_name"]: r["n"] for r in raw} == {m: n for m, n in matched.items() if n}
    assert sum(r["over_an_hour"] for r in raw) > 0  # the offline site's shadows came hours after their edge
