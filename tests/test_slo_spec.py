"""SLO spec parsing and validation: every bad field gets a message that names it; OpenSLO v1 import."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
import yaml

from analytics.slo.spec import SloSpecError, load_slo_file, parse_period, slos_from_dict

VALID = {
    "name": "detector-latency",
    "description": "Detector inferences answer within 250 ms",
    "sli": {"kind": "latency", "threshold_ms": 250},
    "objective": 0.99,
    "period": "28d",
    "group_by": ["model_name", "site"],
    "filters": {"model_name": "detector", "region": ["eu", "us"]},
    "labels": {"team": "vision"},
    "annotations": {"runbook_url": "https://runbooks.example/detector"},
    "alerting": {"page": True, "ticket": False, "min_events": 50},
}


def _file(*slos):
    return {"slos": [copy.deepcopy(s) for s in slos]}


def test_a_full_spec_parses_with_its_defaults_filled_in():
    minimal = {"name": "success", "objective": 0.995}
    latency, success = slos_from_dict(_file(VALID, minimal))
    assert latency.sli.threshold_ns == 250_000_000
    assert latency.filters == {"model_name": ["detector"], "region": ["eu", "us"]}
    assert latency.period_duration == timedelta(days=28) and not latency.alerting.ticket
    assert success.sli.kind == "success" and success.period_duration == timedelta(days=30)
    assert success.group_by == [] and success.alerting.page and success.alerting.min_events == 0
    assert success.error_budget == pytest.approx(0.005)


@pytest.mark.parametrize("period, expected", [("30d", timedelta(days=30)), ("7d", timedelta(days=7)),
                                              ("12h", timedelta(hours=12)), ("4w", timedelta(weeks=4))])
def test_periods(period, expected):
    assert parse_period(period, "p") == expected


def _with(path: str, value):
    entry = copy.deepcopy(VALID)
    target = entry
    *parents, last = path.split(".")
    for part in parents:
        target = target[part]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return entry


_DELETE = object()
BAD_FIELDS = [
    ("name", "Detector Latency", "slos[1].name: expected lowercase letters"),
    ("name", _DELETE, "slos[1].name: expected lowercase"),
    ("description", 12, "slos[1].description: expected a string, got 12"),
    ("sli.kind", "throughput", "slos[1].sli.kind: must be one of success, latency, freshness, deployment, got 'throughput'"),
    ("sli.threshold_ms", _DELETE, "slos[1].sli.threshold_ms: expected a latency in milliseconds"),
    ("sli.threshold_ms", -5, "slos[1].sli.threshold_ms: expected a latency in milliseconds such as 250 (more than 0), got -5"),
    ("sli.max_staleness_minutes", 15, "slos[1].sli.max_staleness_minutes: only for sli kind freshness, not latency"),
    ("sli.colour", "red", "slos[1].sli.colour: unknown key"),
    ("objective", 1.2, "slos[1].objective: must be between 0 and 1 (exclusive), got 1.2"),
    ("objective", 1, "slos[1].objective: must be between 0 and 1 (exclusive), got 1"),
    ("objective", "99.9%", "slos[1].objective: must be between 0 and 1 (exclusive), got '99.9%'"),
    ("period", "30 days", "slos[1].period: expected a period such as 30d"),
    ("period", "2000d", "slos[1].period: must be between 1h and 400d"),
    ("group_by", ["model_name", "firmware"], "slos[1].group_by[1]: must be one of model_name"),
    ("group_by", "site", "slos[1].group_by: expected a list of dimensions"),
    ("group_by", ["site", "site"], "slos[1].group_by: lists a dimension twice"),
    ("filters", {"device_id": "dev-1"}, "slos[1].filters.device_id: not a dimension"),
    ("filters", {"site": []}, "slos[1].filters.site: give a value or a non-empty list"),
    ("filters", {"site": {"a": 1}}, "slos[1].filters.site: expected a string or a list of strings"),
    ("filters", ["site"], "slos[1].filters: expected a mapping"),
    ("labels", {"team-name": "x"}, "slos[1].labels.team-name: not a valid label name"),
    ("labels", {"severity": "low"}, "slos[1].labels.severity: set by fleetwatch on every alert"),
    ("labels", {"team": ["a"]}, "slos[1].labels.team: expected a string"),
    ("annotations", {"runbook_url": "runbooks/detector"}, "slos[1].annotations.runbook_url: expected an http(s) URL"),
    ("alerting.page", "yes", "slos[1].alerting.page: expected true or false, got 'yes'"),
    ("alerting.min_events", -1, "slos[1].alerting.min_events: expected a whole number >= 0, got -1"),
    ("alerting.min_events", 2.5, "slos[1].alerting.min_events: expected a whole number >= 0, got 2.5"),
    ("alerting.for", "5m", "slos[1].alerting.for: unknown key"),
    ("owner", "me", "slos[1].owner: unknown key"),
]


# Ids must not show the sentinel's address: pytest-xdist workers must collect the same names.
@pytest.mark.parametrize("path, value, message", BAD_FIELDS,
                         ids=[f"{p}=<deleted>" if v is _DELETE else f"{p}={v!r}" for p, v, _ in BAD_FIELDS])
def test_each_bad_field_is_named(path, value, message):
    with pytest.raises(SloSpecError) as caught:
        slos_from_dict(_file({"name": "ok", "objective": 0.9}, _with(path, value)))
    assert str(caught.value).startswith(message), str(caught.value)


def test_kind_specific_fields():
    freshness = {"name": "fresh", "objective": 0.99, "sli": {"kind": "freshness", "max_staleness_minutes": 15}}
    assert slos_from_dict(_file(freshness))[0].sli.max_staleness_minutes == 15
    with pytest.raises(SloSpecError, match=r"^slos\[0\]\.sli\.max_staleness_minutes: expected minutes"):
        slos_from_dict(_file({**freshness, "sli": {"kind": "freshness"}}))
    with pytest.raises(SloSpecError, match=r"^slos\[0\]\.sli\.threshold_ms: only for sli kind latency, not success"):
        slos_from_dict(_file({"name": "s", "objective": 0.9, "sli": {"threshold_ms": 100}}))


def test_file_level_errors():
    with pytest.raises(SloSpecError, match=r"^slos: expected a non-empty list"):
        slos_from_dict({"slos": []})
    with pytest.raises(SloSpecError, match=r"^slos\[1\]\.name: 'a' is already the name of another SLO"):
        slos_from_dict(_file({"name": "a", "objective": 0.9}, {"name": "a", "objective": 0.8}))
    with pytest.raises(SloSpecError, match=r"^slo file\.slo: unknown key"):
        slos_from_dict({"slo": []})


def test_load_slo_file_reports_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(SloSpecError, match="cannot read SLO file"):
        load_slo_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("slos: [\n")
    with pytest.raises(SloSpecError, match="not valid YAML"):
        load_slo_file(bad)
    good = tmp_path / "slos.yaml"
    good.write_text(yaml.safe_dump(_file(VALID)))
    assert load_slo_file(good)[0].name == "detector-latency"


OPENSLO = """
apiVersion: openslo/v1
kind: Service
metadata: {name: vision}
spec: {description: On-device vision}
---
apiVersion: openslo/v1
kind: SLI
metadata: {name: detector-fast}
spec:
  ratioMetric:
    counter: true
    good: {metricSource: {type: fleetwatch, spec: {kind: latency, threshold_ms: 120, filters: {model_name: detector}, group_by: [site]}}}
    total: {metricSource: {type: fleetwatch, spec: {kind: latency, threshold_ms: 120, filters: {model_name: detector}, group_by: [site]}}}
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: detector-latency
  displayName: Detector latency
  labels: {team: [vision, edge]}
  annotations: {runbook_url: "https://runbooks.example/latency"}
spec:
  service: vision
  indicatorRef: detector-fast
  budgetingMethod: Occurrences
  timeWindow: [{duration: 28d, isRolling: true}]
  objectives: [{displayName: fast, target: 0.98}]
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: detector-success}
spec:
  description: Detector inferences succeed
  service: vision
  indicator:
    metadata: {name: detector-success}
    spec:
      ratioMetric:
        counter: true
        bad: {metricSource: {type: fleetwatch, spec: {kind: success}}}
        total: {metricSource: {type: fleetwatch, spec: {kind: success}}}
  timeWindow: [{duration: 7d, isRolling: true}]
  objectives: [{targetPercent: 99.5}]
"""


def test_openslo_ratio_slos_import(tmp_path):
    path = tmp_path / "openslo.yaml"
    path.write_text(OPENSLO)
    latency, success = load_slo_file(path)
    assert (latency.name, latency.sli.kind, latency.sli.threshold_ms, latency.objective) == \
        ("detector-latency", "latency", 120, 0.98)
    assert latency.period == "28d" and latency.group_by == ["site"] and latency.filters == {"model_name": ["detector"]}
    assert latency.labels == {"team": "vision,edge", "service": "vision"}
    assert latency.annotations == {"runbook_url": "https://runbooks.example/latency"}
    assert latency.description == "Detector latency"
    assert (success.sli.kind, success.period, success.objective) == ("success", "7d", pytest.approx(0.995))


def _mutated(edit) -> list:
    documents = list(yaml.safe_load_all(OPENSLO))
    edit(documents)
    return documents


REFUSED = [
    (lambda d: d[2]["spec"].update(budgetingMethod="Timeslices"),
     "document[2].spec.budgetingMethod: fleetwatch budgets by Occurrences"),
    (lambda d: d[2]["spec"].update(timeWindow=[{"duration": "1M", "calendar": {"startTime": "2026-01-01"}}]),
     "document[2].spec.timeWindow[0]: fleetwatch budgets over rolling windows only"),
    (lambda d: d[2]["spec"]["objectives"].append({"target": 0.9}),
     "document[2].spec.objectives: fleetwatch takes exactly one objective, got 2"),
    (lambda d: d[2]["spec"].update(alertPolicies=["fast-burn"]), "document[2].spec.alertPolicies: not imported"),
    (lambda d: d[2]["spec"].update(indicatorRef="nope"), "document[2].spec.indicatorRef: no kind: SLI document named 'nope'"),
    (lambda d: d[1]["spec"]["ratioMetric"]["good"]["metricSource"].update(type="Prometheus"),
     "SLI detector-fast.spec.ratioMetric.good.metricSource.type: 'Prometheus' queries cannot be evaluated"),
    (lambda d: d[1]["spec"]["ratioMetric"]["total"]["metricSource"]["spec"].update(threshold_ms=200),
     "SLI detector-fast.spec.ratioMetric: good and total must describe the same fleetwatch events"),
    (lambda d: d[1]["spec"].update(thresholdMetric={}), "SLI detector-fast.spec.thresholdMetric: threshold SLIs"),
    (lambda d: d[3]["spec"]["objectives"][0].update(targetPercent=150),
     "document[3].spec (detector-success).objective: must be between 0 and 1 (exclusive), got 1.5"),
    (lambda d: d.append({"apiVersion": "openslo/v1", "kind": "AlertPolicy", "metadata": {"name": "x"}}),
     "document[4].kind: 'AlertPolicy' has no fleetwatch meaning"),
    (lambda d: d[0].update(apiVersion="openslo/v2alpha"), "document[0].apiVersion: only openslo/v1 can be imported"),
]


@pytest.mark.parametrize("edit, message", REFUSED, ids=[m.split(":")[0] for _, m in REFUSED])
def test_openslo_features_without_a_fleetwatch_meaning_are_refused_by_path(edit, message):
    from analytics.slo.openslo import slos_from_openslo

    with pytest.raises(SloSpecError) as caught:
        slos_from_openslo(_mutated(edit))
    assert str(caught.value).startswith(message), str(caught.value)


FRESH = {"name": "fresh", "objective": 0.99, "sli": {"kind": "freshness", "max_staleness_minutes": 15},
         "group_by": ["site"], "filters": {"region": "eu"}}


def test_freshness_known_for_defaults_to_a_day_and_is_validated():
    spec = slos_from_dict(_file(FRESH))[0]
    assert spec.sli.known_for_duration == timedelta(days=1) and spec.sli.max_staleness_ns == 15 * 60 * 10**9
    assert slos_from_dict(_file({**FRESH, "sli": {**FRESH["sli"], "known_for": "3h"}}))[0].sli.known_for_duration \
        == timedelta(hours=3)
    for bad, message in [("2x", "expected a period such as"), ("15m", "must be longer than max_staleness_minutes"),
                         ("500d", "must be longer than .* and at most 400d")]:
        with pytest.raises(SloSpecError, match=rf"^slos\[0\]\.sli\.known_for: {message}"):
            slos_from_dict(_file({**FRESH, "sli": {**FRESH["sli"], "known_for": bad}}))
    with pytest.raises(SloSpecError, match=r"^slos\[0\]\.sli\.known_for: only for sli kind freshness, not success"):
        slos_from_dict(_file({"name": "s", "objective": 0.9, "sli": {"kind": "success", "known_for": "1d"}}))


@pytest.mark.parametrize("field, value, path", [
    ("group_by", ["site", "model_name"], r"slos\[0\]\.group_by\[1\]"),
    ("filters", {"model_version": "v2"}, r"slos\[0\]\.filters\.model_version"),
])
def test_freshness_refuses_model_dimensions_by_field(field, value, path):
    with pytest.raises(SloSpecError, match=rf"^{path}: freshness counts devices, so .* site, region, device_class, "
                                           rf"not model_"):
        slos_from_dict(_file({**FRESH, field: value}))
