"""The per-minute SLI job against numpy on the raw spans; late data recomputed exactly."""

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
from analytics.slo.sli_job import SLI_MINUTE_DDL, SliMinute, good_condition
from analytics.slo.spec import slos_from_dict
from collector.store.database import Store
from collector.store.marks import next_seq, record_marks
from tests.analytics_data import T0, T0_NS, read

THRESHOLD_MS = 8.5  # not a latency bucket bound: the SLI must be exact on duration_ns
SPECS = slos_from_dict({"slos": [
    {"name": "success-by-model-site", "objective": 0.99, "group_by": ["model_name", "site"]},
    {"name": "detector-fast", "objective": 0.9, "sli": {"kind": "latency", "threshold_ms": THRESHOLD_MS},
     "group_by": ["model_version"], "filters": {"model_name": "detector"}},
    {"name": "two-sites", "objective": 0.95, "filters": {"site": ["site-0", "site-2"]}},
    {"name": "fresh", "objective": 0.99, "sli": {"kind": "freshness", "max_staleness_minutes": 15}},
]})


def expected(store) -> dict:
    """Good/total per (minute, slo, group) from raw inference spans, grouped in Python with numpy masks."""
    raw = read(store, "SELECT epoch_ns(start_time) AS t, duration_ns, status_code, model_name, model_version, site "
                      "FROM span_rows WHERE name = 'inference'")
    minute = raw["t"].to_numpy() // (60 * 10**9) * 60
    ok = raw["status_code"].to_numpy(zero_copy_only=False) != 2
    fast = raw["duration_ns"].to_numpy() <= int(THRESHOLD_MS * 1e6)
    model, version, site = (np.asarray(raw[c].to_pylist(), dtype=object) for c in ("model_name", "model_version", "site"))
    cases = [("success-by-model-site", np.ones(len(ok), bool), ok, lambda i: {"model_name": model[i], "site": site[i]}),
             ("detector-fast", model == "detector", fast, lambda i: {"model_version": version[i]}),
             ("two-sites", np.isin(site, ["site-0", "site-2"]), ok, lambda i: {})]
    out: dict = defaultdict(lambda: [0, 0])
    for slo, selected, good, group in cases:
        for i in np.flatnonzero(selected):
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
    store.submit(lambda con: con.execute(SLI_MINUTE_DDL)).result()
    return JobRunner(store, [SliMinute(SPECS)])


def test_per_minute_good_and_total_equal_numpy_on_the_raw_spans(store, runner):
    report = runner.run_due("slo_sli_minute", T0 + timedelta(hours=3))
    assert report.error is None
    want = expected(store)
    assert stored(store) == want
    assert {k[1] for k in want} == {"success-by-model-site", "detector-fast", "two-sites"}  # freshness: not this job
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

    def write_late(con):
        # A backlog upload: one detector inference exactly at the threshold and one failed one, with their marks.
        with Store.transaction(con):
            con.execute("CREATE TEMP TABLE late AS SELECT * REPLACE (?::TIMESTAMP_NS AS start_time, "
                        "span_id + 1000003 * k AS span_id, ?::BIGINT AS duration_ns, "
                        "CASE WHEN k = 1 THEN 2 ELSE 1 END::UTINYINT AS status_code) "
                        "FROM (SELECT * FROM span_rows WHERE name = 'inference' AND model_name = 'detector' LIMIT 1), "
                        "range(2) AS r(k)", [late_minute, int(THRESHOLD_MS * 1e6)])
            con.execute("INSERT INTO span_rows SELECT * EXCLUDE (k) FROM late")
            record_marks(con, next_seq(con), "span_rows", "late")
            con.execute("DROP TABLE late")

    before = stored(store)
    store.submit(write_late).result()
    report = runner.run_due("slo_sli_minute", T0 + timedelta(hours=3))
    assert [(s, e, r) for s, e, r in report.spans] == [(T0 + timedelta(minutes=7), T0 + timedelta(minutes=8), "late-data")]
    after = stored(store)
    assert after == expected(store)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed and {k[0] for k in changed} == {T0_NS // 10**9 + 7 * 60}


def test_kinds_the_job_does_not_compute_are_refused_by_name():
    with pytest.raises(ValueError, match="slo fresh: the SLI job computes success, latency, not freshness"):
        good_condition(SPECS[3])
