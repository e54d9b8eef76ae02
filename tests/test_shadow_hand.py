"""Shadow mode and ground truth on a handful of requests sent by the real OpenTelemetry SDK to a real collector.

Every expected figure is worked out by hand in the comments from the
requests below (hour H, a few hours back):

classifier ``det`` 1 on cam-a, r1..r10 (edge label / cloud label / true label):
    r1 ok/ok/ok  r2 ok/ok/ok  r3 ok/ok/dent  r4 ok/dent/dent  r5 dent/dent/dent
    r6 dent/ok/ok  r7 scratch/scratch/scratch  r8 scratch/dent/dent
    r9 ok/-/ok  r10 ok/-/-          and a cloud answer r99 with no edge inference.
regressor ``fc`` 0.1 on cam-b, q1..q4 (edge / cloud / true value):
    q1 10/9/9.5  q2 12/12.5/12  q3 8/8/7  q4 20/17/-
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from opentelemetry.sdk.resources import Resource

from analytics.jobs.framework import JobRunner
from analytics.schema import ANALYTICS
from analytics.shadow.config import ShadowConfig
from analytics.shadow.derived import (
    edge_error_bound,
    ground_truth_accuracy,
    label_lag,
    shadow_agreement,
    shadow_flips,
)
from analytics.shadow.jobs import GroundTruthHour, ShadowHour
from bench.harness import CollectorProcess
from collector.config import ConfigError
from collector.store.database import Store
from collector.store.versions import COLLECTOR
from tests.analytics_data import read, serve_and_get
from tests.sdk_devices import Device, emit_span

CLASSES = {  # request: (edge label, edge score, cloud label, cloud score, true label)
    "r1": ("ok", 0.9, "ok", 0.85, "ok"), "r2": ("ok", 0.8, "ok", 0.95, "ok"),
    "r3": ("ok", 0.7, "ok", 0.7, "dent"), "r4": ("ok", 0.6, "dent", 0.75, "dent"),
    "r5": ("dent", 0.9, "dent", 0.65, "dent"), "r6": ("dent", 0.5, "ok", 0.75, "ok"),
    "r7": ("scratch", 0.95, "scratch", 0.9, "scratch"), "r8": ("scratch", 0.55, "dent", 0.6, "dent"),
    "r9": ("ok", 0.9, None, None, "ok"), "r10": ("ok", 0.9, None, None, None),
}
LAGS_S = {"r1": 30, "r2": 300, "r3": 7200, "r4": 600, "r5": 600, "r6": 600, "r7": 600, "r8": 600, "r9": 600}
VALUES = {"q1": (10.0, 9.0, 9.5), "q2": (12.0, 12.5, 12.0), "q3": (8.0, 8.0, 7.0), "q4": (20.0, 17.0, None)}


class Service:
    """A service without a device (the cloud shadow, the labeler), exporting spans to the collector."""

    def __init__(self, name: str) -> None:
        self.resource = Resource.create({"service.name": name})

    spans = Device.spans


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _edge(tracer, at, model, version, request, label=None, score=None, value=None):
    attrs = {"ml.model.name": model, "ml.model.version": version, "ml.inference.mode": "edge",
             "ml.request.id": request}
    attrs.update({k: v for k, v in (("ml.prediction.label", label), ("ml.prediction.score", score),
                                    ("ml.prediction.value", value)) if v is not None})
    emit_span(tracer, "inference", at, attrs)


def _cloud(tracer, at, model, request, label=None, score=None, value=None):
    attrs = {"ml.model.name": model, "ml.model.version": "cloud-1", "ml.inference.mode": "cloud",
             "ml.request.id": request}
    attrs.update({k: v for k, v in (("ml.prediction.label", label), ("ml.prediction.score", score),
                                    ("ml.prediction.value", value)) if v is not None})
    emit_span(tracer, "inference", at, attrs)


def _label(tracer, at, model, request, label=None, value=None):
    attrs = {"ml.model.name": model, "ml.request.id": request}
    attrs.update({"ml.label": label} if label is not None else {"ml.label.value": value})
    emit_span(tracer, "ground_truth", at, attrs)


def _open(db) -> Store:
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    assert read(store, "SELECT count(*) AS n FROM span_rows WHERE clock_offset_ns IS NOT NULL")["n"][0].as_py() == 0
    return store


def _run(runner: JobRunner, now: datetime) -> dict:
    reports = {name: runner.run_due(name, now) for name in runner.jobs}
    assert all(r.error is None for r in reports.values()), reports
    return reports


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    db = tmp_path_factory.mktemp("shadow") / "shadow.duckdb"
    hour = (_now() - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    times = {r: hour + timedelta(minutes=5 + i) for i, r in enumerate(CLASSES)}
    times.update({q: hour + timedelta(minutes=20 + i) for i, q in enumerate(VALUES)})

    def cam_a(tracer):
        for r, (label, score, *_) in CLASSES.items():
            _edge(tracer, times[r], "det", "1", r, label=label, score=score)

    def cam_b(tracer):
        for q, (edge, _, _) in VALUES.items():
            _edge(tracer, times[q], "fc", "0.1", q, value=edge)

    def cloud(tracer):
        for r, (_, _, label, score, _) in CLASSES.items():
            if label is not None:
                _cloud(tracer, times[r] + timedelta(seconds=2), "det", r, label=label, score=score)
        _cloud(tracer, hour + timedelta(minutes=30), "det", "r99", label="ok", score=0.9)
        for q, (_, value, _) in VALUES.items():
            _cloud(tracer, times[q] + timedelta(seconds=2), "fc", q, value=value)

    def labeler(tracer):
        for r, (*_, truth) in CLASSES.items():
            if truth is not None:
                _label(tracer, times[r] + timedelta(seconds=LAGS_S[r]), "det", r, label=truth)
        for q, (_, _, truth) in VALUES.items():
            if truth is not None:
                _label(tracer, times[q] + timedelta(seconds=60), "fc", q, value=truth)

    with CollectorProcess(db) as collector:
        Device("cam-a", "jetson-orin", hour - timedelta(hours=1)).spans(collector.http_url, cam_a)
        Device("cam-b", "coral-tpu", hour - timedelta(hours=1)).spans(collector.http_url, cam_b)
        Service("shadow-inference").spans(collector.http_url, cloud)
        Service("labeling").spans(collector.http_url, labeler)
    store = _open(db)
    runner = JobRunner(store, [ShadowHour(), GroundTruthHour()])
    _run(runner, _now())
    yield store, hour
    store.close()


def _reader(store):
    return lambda sql, params: read(store, sql, params)


def _one(rows, **match) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


def test_classifier_agreement_kappa_coverage_by_hand(hand):
    store, hour = hand
    rows = shadow_agreement(_reader(store), since=hour, until=hour + timedelta(hours=2))
    det = _one(rows, model_name="det", model_version="1")
    assert (det["edge_requests"], det["matched"], det["edge_unmatched"]) == (10, 8, 2)
    assert det["coverage"] == pytest.approx(0.8)
    assert (det["compared"], det["agreements"]) == (8, 5)
    assert det["agreement_rate"] == pytest.approx(0.625)
    # p_o = 5/8; edge rows ok 4, dent 2, scratch 2; cloud columns ok 4, dent 3, scratch 1:
    # p_e = (4*4 + 2*3 + 2*1) / 64 = 0.375; kappa = (0.625 - 0.375) / (1 - 0.375) = 0.4
    assert det["kappa"] == pytest.approx(0.4)
    # score deltas 0.05, -0.15, 0, -0.15, 0.25, -0.25, 0.05, -0.05: sum -0.25, squares 0.1775
    assert det["score_delta_mean"] == pytest.approx(-0.25 / 8)
    assert det["score_delta_std"] == pytest.approx(math.sqrt(0.1775 / 8 - (0.25 / 8) ** 2))
    # bins of 0.1 from -1: -0.25 in bin 7, -0.15 (twice) in 8, -0.05 in 9, 0 and 0.05 (twice) in 10, 0.25 in 12
    assert det["score_delta_hist"] == [0] * 7 + [1, 2, 1, 3, 0, 1] + [0] * 7
    assert det["cloud_answers"] == 8  # r99 is in the orphan row
    # the orphan shadow r99 is counted in its own row (no edge version, no cohort)
    orphan = _one(rows, model_name="det", model_version=None)
    assert (orphan["shadow_orphans"], orphan["edge_requests"]) == (1, 0)


def test_flip_matrix_by_hand(hand):
    store, hour = hand
    rows = shadow_flips(_reader(store), since=hour, until=hour + timedelta(hours=2), model_name="det")
    assert {(r["edge_label"], r["cloud_label"]): r["pairs"] for r in rows} == {
        ("ok", "ok"): 3, ("ok", "dent"): 1, ("dent", "dent"): 1, ("dent", "ok"): 1,
        ("scratch", "scratch"): 1, ("scratch", "dent"): 1}


def test_regressor_bias_mae_rmse_by_hand(hand):
    store, hour = hand
    fc = _one(shadow_agreement(_reader(store), since=hour, until=hour + timedelta(hours=2)), model_name="fc")
    # edge - cloud: 1, -0.5, 0, 3
    assert fc["value_pairs"] == 4 and fc["agreement_rate"] is None
    assert fc["bias"] == pytest.approx(0.875)
    assert fc["mae"] == pytest.approx(1.125)
    assert fc["rmse"] == pytest.approx(math.sqrt((1 + 0.25 + 0 + 9) / 4))
    # bin i is [edge i-1, edge i) of -10 -5 -2 -1 -0.5 -0.2 0 0.2 0.5 1 2 5 10: -0.5 in bin 5, 0 in 7, 1 in 10, 3 in 11
    assert fc["value_error_hist"] == [0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0]
    gt = _one(ground_truth_accuracy(_reader(store), since=hour, until=hour + timedelta(hours=2)), model_name="fc")
    # edge - truth: 0.5, 0, 1 (q4 unlabelled); cloud - truth: -0.5, 0.5, 1
    assert (gt["inferences"], gt["value_labelled"]) == (4, 3)
    assert gt["bias"] == pytest.approx(0.5)
    assert gt["mae"] == pytest.approx(0.5)
    assert gt["rmse"] == pytest.approx(math.sqrt(1.25 / 3))
    assert gt["cloud_mae"] == pytest.approx(2 / 3)


def test_accuracy_and_the_label_free_bound_by_hand(hand):
    store, hour = hand
    gt = _one(ground_truth_accuracy(_reader(store), since=hour, until=hour + timedelta(hours=2)), model_name="det")
    # labelled r1..r9; edge right on r1 r2 r5 r7 r9; cloud (r1..r8) wrong only on r3
    assert (gt["inferences"], gt["labelled"], gt["class_labelled"]) == (10, 9, 9)
    assert gt["label_coverage"] == pytest.approx(0.9)
    assert gt["accuracy"] == pytest.approx(5 / 9)
    assert gt["cloud_accuracy"] == pytest.approx(7 / 8)
    det = _one(shadow_agreement(_reader(store), since=hour, until=hour + timedelta(hours=2)),
               model_name="det", model_version="1")
    # d = 0.375, e_c = 0.125: |d - e_c| = 0.25 <= e_e <= d + e_c = 0.5; measured e_e = 4/9
    assert det["cloud_error_source"] == "ground_truth"
    assert det["cloud_error_rate"] == pytest.approx(0.125)
    assert (det["edge_error_lower"], det["edge_error_upper"]) == (pytest.approx(0.25), pytest.approx(0.5))
    assert det["measured_edge_error"] == pytest.approx(4 / 9)
    assert det["edge_error_lower"] <= det["measured_edge_error"] <= det["edge_error_upper"]
    assert edge_error_bound(0.625, 0.125) == (pytest.approx(0.25), pytest.approx(0.5))


def test_assumed_cloud_error_where_no_labels(hand):
    store, hour = hand
    rows = shadow_agreement(_reader(store), since=hour, until=hour + timedelta(hours=2), assumed_cloud_error=0.05)
    fc = _one(rows, model_name="fc")
    assert fc["cloud_error_source"] == "assumed"  # regressors have no class labels: the assumption stands
    assert fc["edge_error_lower"] is None and fc["edge_error_upper"] is None  # no agreement rate: no bound
    det = _one(rows, model_name="det", model_version="1")
    assert det["cloud_error_source"] == "ground_truth" and det["cloud_error_rate"] == pytest.approx(0.125)
    with pytest.raises(ValueError, match="rates must be in"):
        edge_error_bound(1.5, 0.1)


def test_label_lag_by_hand(hand):
    store, hour = hand
    det = _one(label_lag(_reader(store), since=hour, until=hour + timedelta(hours=2)), model_name="det")
    # lags 30, 300, 7200 and six of 600 s
    assert det["labelled"] == 9
    assert det["lag_mean_s"] == pytest.approx((30 + 300 + 7200 + 6 * 600) / 9, abs=0.01)
    assert det["lag_max_s"] == pytest.approx(7200, abs=0.01)
    assert (det["lag_lt_1m"], det["lag_lt_10m"], det["lag_lt_1h"], det["lag_lt_6h"]) == (1, 1, 6, 1)


def test_config_is_validated():
    with pytest.raises(ConfigError, match="shadow.max_lag"):
        ShadowConfig(max_lag=10).validate()
    with pytest.raises(ConfigError, match="shadow.label_horizon"):
        ShadowConfig(label_horizon=100 * 86400).validate()


def test_late_shadow_and_late_label_reopen_exactly_their_hours(tmp_path):
    """An edge inference three days back; its shadow lands an hour and a half later, its label now."""
    db = tmp_path / "late.duckdb"
    now = _now()
    edge_hour = (now - timedelta(days=3, hours=1)).replace(minute=0, second=0, microsecond=0)  # lag: 3 d 10 min+
    edge_at = edge_hour + timedelta(minutes=50)
    shadow_at = edge_at + timedelta(minutes=40)  # the next hour
    with CollectorProcess(db) as collector:
        Device("cam-l", "jetson-orin", edge_hour).spans(
            collector.http_url, lambda t: [_edge(t, edge_at, "det", "1", "l1", label="ok", score=0.9),
                                           _edge(t, edge_at + timedelta(hours=5), "det", "1", "l2", label="ok")])
    store = _open(db)
    try:
        _run(JobRunner(store, [ShadowHour(), GroundTruthHour()]), now)
        store.close()
        with CollectorProcess(db) as collector:
            Service("shadow-inference").spans(collector.http_url,
                                              lambda t: _cloud(t, shadow_at, "det", "l1", label="dent", score=0.8))
        store = _open(db)
        runner = JobRunner(store, [ShadowHour(), GroundTruthHour()])
        reports = _run(runner, now + timedelta(minutes=1))
        late = {name: sorted(s for s, _, reason in r.spans if reason == "late-data") for name, r in reports.items()}
        # the edge's hour (now matched) and the shadow's own (where it is no orphan)
        assert late["shadow_hour"] == [edge_hour, edge_hour + timedelta(hours=1)]
        det = _one(shadow_agreement(_reader(store), since=edge_hour, until=now), model_name="det")
        assert (det["matched"], det["edge_unmatched"], det["shadow_orphans"], det["agreements"]) == (1, 1, 0, 0)

        label_at = _now()
        store.close()
        with CollectorProcess(db) as collector:
            Service("labeling").spans(collector.http_url, lambda t: _label(t, label_at, "det", "l1", label="dent"))
        store = _open(db)
        runner = JobRunner(store, [ShadowHour(), GroundTruthHour()])
        reports = _run(runner, label_at + timedelta(minutes=1))
        # three days later, in an hour not computed yet: only the inference's hour is re-opened
        assert [s for s, _, reason in reports["ground_truth_hour"].spans if reason == "late-data"] == [edge_hour]
        gt = _one(ground_truth_accuracy(_reader(store), since=edge_hour, until=label_at), model_name="det")
        assert (gt["labelled"], gt["accuracy"]) == (1, 0.0)
        assert gt["cloud_accuracy"] == 1.0
        lag = _one(label_lag(_reader(store), since=edge_hour, until=label_at), model_name="det")
        assert lag["lag_lt_7d"] == 1 and lag["lag_max_s"] == pytest.approx((label_at - edge_at).total_seconds(),
                                                                           abs=1)
    finally:
        store.close()


def test_the_read_api_serves_the_same_figures(hand):
    store, hour = hand
    since, until = (hour.isoformat() + "Z"), (hour + timedelta(hours=2)).isoformat() + "Z"
    (answer,) = serve_and_get(store, [f"/api/v1/query/shadow_agreement?since={since}&until={until}&model_name=det"])
    names = [c["name"] for c in answer["columns"]]
    det = next(dict(zip(names, row)) for row in answer["rows"] if row[names.index("model_version")] == "1")
    assert (det["matched"], det["edge_unmatched"]) == (8, 2)
    assert det["kappa"] == pytest.approx(0.4)


def test_a_late_edge_inference_unorphans_its_shadow(tmp_path):
    """The shadow comes first (an orphan in its hour); the edge inference, from an offline device, after."""
    db = tmp_path / "late-edge.duckdb"
    now = _now()
    shadow_hour = (now - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    shadow_at, edge_at = shadow_hour + timedelta(minutes=5), shadow_hour - timedelta(minutes=5)
    with CollectorProcess(db) as collector:
        Service("shadow-inference").spans(collector.http_url,
                                          lambda t: _cloud(t, shadow_at, "det", "e1", label="ok", score=0.9))
    store = _open(db)
    _run(JobRunner(store, [ShadowHour()]), now)
    assert _one(shadow_agreement(_reader(store), since=shadow_hour, until=now), model_name="det")["shadow_orphans"] == 1
    store.close()
    with CollectorProcess(db) as collector:
        Device("cam-e", "jetson-orin", edge_at - timedelta(hours=1)).spans(
            collector.http_url, lambda t: _edge(t, edge_at, "det", "1", "e1", label="ok", score=0.8))
    store = _open(db)
    try:
        reports = _run(JobRunner(store, [ShadowHour()]), now + timedelta(minutes=1))
        # the edge inference's own hour and its shadow's
        assert [s for s, _, reason in reports["shadow_hour"].spans if reason == "late-data"] == [
            shadow_hour - timedelta(hours=1), shadow_hour]
        rows = shadow_agreement(_reader(store), since=shadow_hour - timedelta(hours=1), until=now)
        assert sum(r["shadow_orphans"] for r in rows) == 0
        det = _one(rows, model_name="det", model_version="1")
        assert (det["matched"], det["agreements"]) == (1, 1)
    finally:
        store.close()
