"""The per-minute event SLI job against numpy on the raw spans: success, latency, deployment; late data, re-runs."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from analytics.jobs.framework import JobRunner
from analytics.slo.rules import WindowCounts, burn_rate
from analytics.slo.sli_job import SliMinute, good_condition
from analytics.slo.spec import slos_from_dict
from collector.store.database import Store
from collector.store.marks import next_seq, record_marks
from tests.analytics_data import MINUTES, T0, T0_NS, read

THRESHOLD_MS = 8.5  # not a latency bucket bound: the SLI must be exact on duration_ns
SPECS = slos_from_dict({"slos": [
    {"name": "success-by-model-site", "objective": 0.99, "group_by": ["model_name", "site"]},
    {"name": "detector-fast", "objective": 0.9, "sli": {"kind": "latency", "threshold_ms": THRESHOLD_MS},
     "group_by": ["model_version"], "filters": {"model_name": "detector"}},
    {"name": "two-sites", "objective": 0.95, "filters": {"site": ["site-0", "site-2"]}},
    {"name": "fresh", "objective": 0.99, "sli": {"kind": "freshness", "max_staleness_minutes": 15}},
    {"name": "ota-by-site", "objective": 0.9, "sli": {"kind": "deployment"}, "group_by": ["site"]},
    {"name": "ota-site-1", "objective": 0.9, "sli": {"kind": "deployment"}, "filters": {"site": "site-1"}},
]})


def expected(store) -> dict:
    """Good/total per (minute, slo, group) from raw spans, grouped in Python with numpy masks."""
    raw = read(store, "SELECT epoch_ns(start_time) AS t, name, duration_ns, status_code, model_name, model_version, "
                      "site, attributes FROM span_rows WHERE name IN ('inference', 'deployment')")
    minute = raw["t"].to_numpy() // (60 * 10**9) * 60
    ok = raw["status_code"].to_numpy(zero_copy_only=False) != 2
    fast = raw["duration_ns"].to_numpy() <= int(THRESHOLD_MS * 1e6)
    model, version, site, name = (np.asarray(raw[c].to_pylist(), dtype=object)
                                  for c in ("model_name", "model_version", "site", "name"))
    outcome = [json.loads(a or "{}").get("deployment.outcome") for a in raw["attributes"].to_pylist()]
    deployed = np.array([o == "success" if o is not None else bool(k) for o, k in zip(outcome, ok)])
    inference, deployment = name == "inference", name == "deployment"
    cases = [("success-by-model-site", inference, ok, lambda i: {"model_name": model[i], "site": site[i]}),
             ("detector-fast", inference & (model == "detector"), fast, lambda i: {"model_version": version[i]}),
             ("two-sites", inference & np.isin(site, ["site-0", "site-2"]), ok, lambda i: {}),
             ("ota-by-site", deployment, deployed, lambda i: {"site": site[i]}),
             ("ota-site-1", deployment & (site == "site-1"), deployed, lambda i: {})]
    out: dict = defaultdict(lambda: [0, 0])
    for slo, selected, good, group in cases:
        for i in np.flatnonzero(selected):
            if None in group(i).values():
                continue  # no value for a grouping dimension: in no group
            counts = out[(int(minute[i]), slo, json.dumps(group(i), sort_keys=True))]
            counts[0] += bool(good[i])
            counts[1] += 1
    return dict(out)


def stored(store) -> dict:
    rows = read(store, "SELECT epoch(window_start)::BIGINT AS w, slo, group_key, good, total FROM slo_sli_minute")
    return {(r["w"], r["slo"], json.dumps(json.loads(r["group_key"]), sort_keys=True)): [r["good"], r["total"]]
            for r in rows.to_pylist()}


@pytest.fixture()
def runner(store):
    return JobRunner(store, [SliMinute(SPECS)])


def add_spans(store, spans: list[dict]) -> None:
    """Spans with known values, copied from one detector inference and marked as a real write marks them.

    Each dict: ``at`` (start time), and optionally ``name``, ``duration_ns``,
    ``status_code``, ``site``, ``attributes`` (JSON text).
    """
    def write(con):
        with Store.transaction(con):
            con.execute("CREATE TEMP TABLE added AS SELECT * FROM span_rows WHERE false")
            for k, span in enumerate(spans):
                con.execute(
                    "INSERT INTO added SELECT * REPLACE (?::TIMESTAMP_NS AS start_time, span_id + 1000003 * ? AS span_id, "
                    "coalesce(?, name) AS name, coalesce(?::BIGINT, duration_ns) AS duration_ns, "
                    "coalesce(?::UTINYINT, status_code) AS status_code, coalesce(?, site) AS site, "
                    "coalesce(?, attributes) AS attributes) "
                    "FROM (SELECT * FROM span_rows WHERE name = 'inference' AND model_name = 'detector' LIMIT 1)",
                    [span["at"], k + 1, span.get("name"), span.get("duration_ns"), span.get("status_code"),
                     span.get("site"), span.get("attributes")])
            con.execute("INSERT INTO span_rows SELECT * FROM added")
            record_marks(con, next_seq(con), "span_rows", "added")
            con.execute("DROP TABLE added")

    store.submit(write).result()


def deployment(at, site: str, outcome: str | None, status_code: int = 0) -> dict:
    attributes = {"deployment.kind": "firmware", "deployment.rollout.id": "fw-1"}
    if outcome is not None:
        attributes["deployment.outcome"] = outcome
    return {"at": at, "name": "deployment", "site": site, "status_code": status_code,
            "attributes": json.dumps(attributes)}


def test_per_minute_good_and_total_equal_numpy_on_the_raw_spans(store, runner):
    report = runner.run_due("slo_sli_minute", T0 + timedelta(hours=3))
    assert report.error is None
    want = expected(store)
    assert stored(store) == want
    assert {k[1] for k in want} == {"success-by-model-site", "detector-fast", "two-sites"}  # no deployment spans yet
    # Summed minutes are the window counts the rules take: the 90 minutes of the ungrouped SLO, against numpy.
    raw = read(store, "SELECT status_code FROM span_rows WHERE name = 'inference' AND site IN ('site-0', 'site-2')")
    errors = raw["status_code"].to_numpy(zero_copy_only=False) == 2
    rows = read(store, "SELECT sum(good)::BIGINT AS good, sum(total)::BIGINT AS total FROM slo_sli_minute "
                       "WHERE slo = 'two-sites'").to_pylist()[0]
    counts = WindowCounts(rows["good"], rows["total"])
    assert counts.total == errors.size and burn_rate(counts.good, counts.total, 0.95) == pytest.approx(errors.mean() / 0.05)


def test_the_doc_example_sums_minutes_into_a_window(store, runner):
    runner.run_due("slo_sli_minute", T0 + timedelta(hours=3))
    doc = (Path(__file__).resolve().parent.parent / "docs" / "slo.md").read_text()
    (example,) = re.findall(r"```sql\n(.*?)```", doc, flags=re.S)
    rows = read(store, example).to_pylist()
    start = T0_NS // 10**9  # the example's hour is T0's
    hour: dict = defaultdict(lambda: [0, 0])
    for (w, slo, group), (good, total) in expected(store).items():
        if start <= w < start + 3600:
            hour[(slo, group)][0] += good
            hour[(slo, group)][1] += total
    assert {(r["slo"], json.dumps(json.loads(r["group_key"]), sort_keys=True)): [r["good"], r["total"]]
            for r in rows} == dict(hour)


def test_late_rows_recompute_exactly_the_minutes_they_touch(store, runner):
    runner.run_due("slo_sli_minute", T0 + timedelta(hours=3))
    late_minute = T0 + timedelta(minutes=7, seconds=30)
    before = stored(store)
    # A backlog upload: one detector inference exactly at the threshold, one failed one and a failed deployment.
    add_spans(store, [{"at": late_minute, "duration_ns": int(THRESHOLD_MS * 1e6), "status_code": 1},
                      {"at": late_minute, "duration_ns": int(THRESHOLD_MS * 1e6), "status_code": 2},
                      deployment(late_minute, "site-1", "failed", 2)])
    report = runner.run_due("slo_sli_minute", T0 + timedelta(hours=3))
    assert [(s, e, r) for s, e, r in report.spans] == [(T0 + timedelta(minutes=7), T0 + timedelta(minutes=8), "late-data")]
    after = stored(store)
    assert after == expected(store)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed and {k[0] for k in changed} == {T0_NS // 10**9 + 7 * 60}


def test_events_without_a_value_for_a_grouping_dimension_are_in_no_group(store, runner):
    at = T0 + timedelta(minutes=MINUTES + 7)  # a minute of its own: two detector inferences with no site (a cloud shadow's)
    add_spans(store, [{"at": at}, {"at": at, "status_code": 2}])
    store.submit(lambda con: con.execute("UPDATE span_rows SET site = NULL WHERE start_time = ?", [at])).result()
    runner.run_due("slo_sli_minute", T0 + timedelta(hours=3))
    rows = read(store, "SELECT slo, group_key, good, total FROM slo_sli_minute WHERE window_start = $at",
                {"at": at}).to_pylist()
    # Grouped by site: no group; grouped by version only: counted.
    assert [(r["slo"], r["total"]) for r in rows] == [("detector-fast", 2)]
    assert stored(store) == expected(store)


def test_kinds_the_job_does_not_compute_are_refused_by_name():
    with pytest.raises(ValueError, match="slo fresh: the event SLI job computes success, latency, deployment, "
                                         "not freshness"):
        good_condition(SPECS[3])


def test_latency_is_exact_at_the_threshold(store, runner):
    at = T0 + timedelta(minutes=MINUTES + 5)  # a minute of its own, after the fleet's data
    threshold = int(THRESHOLD_MS * 1e6)
    add_spans(store, [{"at": at, "duration_ns": threshold - 1}, {"at": at, "duration_ns": threshold},
                      {"at": at, "duration_ns": threshold + 1}])
    runner.run_due("slo_sli_minute", T0 + timedelta(hours=3))
    rows = read(store, "SELECT good, total FROM slo_sli_minute WHERE slo = 'detector-fast' AND window_start = $at",
                {"at": at}).to_pylist()
    assert rows == [{"good": 2, "total": 3}]
    assert stored(store) == expected(store)


def test_deployments_good_is_a_success_outcome_or_else_no_error_status(store, runner):
    at = T0 + timedelta(minutes=12, seconds=10)
    add_spans(store, [deployment(at, "site-1", "success"), deployment(at, "site-1", "rolled_back", 2),
                      deployment(at, "site-1", "failed", 2), deployment(at, "site-1", None, 0),
                      deployment(at, "site-1", None, 2), deployment(at + timedelta(minutes=1), "site-0", "success"),
                      # An outcome wins over the status: a 'success' span with an ERROR status still succeeded.
                      deployment(at + timedelta(minutes=1), "site-0", "success", 2)])
    runner.run_due("slo_sli_minute", T0 + timedelta(hours=3))
    got = stored(store)
    assert got == expected(store)
    minute = T0_NS // 10**9 + 12 * 60
    assert got[(minute, "ota-by-site", '{"site": "site-1"}')] == [2, 5]
    assert got[(minute, "ota-site-1", "{}")] == [2, 5]
    assert got[(minute + 60, "ota-by-site", '{"site": "site-0"}')] == [2, 2]
    assert (minute + 60, "ota-site-1", "{}") not in got  # no deployment at site-1 that minute: no row, not 0/0
    # Deployments are not inferences: the inference SLOs of those minutes are what the fleet alone gives.
    assert got[(minute, "two-sites", "{}")] == expected(store)[(minute, "two-sites", "{}")]


def test_all_event_slos_come_from_one_scan_of_the_raw_spans(store):
    queries = []

    def recording_read(sql, params):
        queries.append(sql)
        return read(store, sql, params)

    output = SliMinute(SPECS).compute(recording_read, T0, T0 + timedelta(hours=2))
    assert sum("FROM span_rows" in q for q in queries) == 1
    assert {r["slo"] for r in output.tables["slo_sli_minute"].to_pylist()} == {
        "success-by-model-site", "detector-fast", "two-sites"}


def test_re_running_every_window_gives_identical_rows(store, runner):
    add_spans(store, [deployment(T0 + timedelta(minutes=3), "site-2", "success")])
    runner.run_due("slo_sli_minute", T0 + timedelta(hours=3))
    first = read(store, "SELECT * FROM slo_sli_minute ORDER BY ALL").to_pylist()
    store.submit(lambda con: con.execute("DELETE FROM job_state")).result()
    again = JobRunner(store, [SliMinute(SPECS)]).run_due("slo_sli_minute", T0 + timedelta(hours=3))
    assert again.error is None and again.spans
    assert read(store, "SELECT * FROM slo_sli_minute ORDER BY ALL").to_pylist() == first
    assert any(r["slo"] == "ota-by-site" for r in first)
