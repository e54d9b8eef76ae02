"""The scheduled drift job on the shipped sample: references, the input-drift incident, days, alerts, late data.

The sample has about 16 sampled inferences per device-hour: a site x version
cohort has 30-300 values an hour, so hourly windows are often
insufficient_data and daily windows carry most verdicts (docs/drift.md).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import pytest

from analytics.drift.alerts import DriftAlerts
from analytics.drift.jobs import DriftJob
from analytics.drift.profiles import Summary, merge_all
from analytics.jobs.framework import JobRunner
from analytics.schema import ANALYTICS
from collector.store.database import Store
from collector.store.marks import next_seq, record_marks
from collector.store.versions import COLLECTOR
from tests.analytics_data import named, read
from tests.drift_data import INCIDENT, MODEL, ONSET, SHIFTED, SITE, UNCHANGED

END = datetime(2026, 11, 5)
DAY2 = datetime(2026, 11, 3)


@pytest.fixture(scope="module")
def sample(tmp_path_factory, sample_db):
    """The sample with the drift job run over all of it (the late-data test, last, adds rows)."""
    db = tmp_path_factory.mktemp("drift-jobs") / "sample.duckdb"
    shutil.copyfile(sample_db, db)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    runner = JobRunner(store, [DriftJob()])
    report = runner.run_due("drift_hour", END)
    assert report.error is None
    yield store, runner
    store.close()


def dataset_rows(store, length: str, **where) -> list[dict]:
    conditions = "".join(f" AND {k} = ${k}" for k in where)
    return read(store, f"SELECT * FROM drift_results WHERE feature = '*' AND window_length = $length{conditions} "
                       "ORDER BY window_start, model_version, cohort", {"length": length, **where}).to_pylist()


def site_of(row: dict) -> str | None:
    return json.loads(row["cohort"]).get("site")


def test_references_are_pinned_to_the_first_day_of_each_version(sample):
    store, _ = sample
    seen = {(r["model_name"], r["model_version"]): (r["first"], r["last"]) for r in read(store, """
        SELECT model_name, model_version, date_trunc('hour', min(corrected_start_time))::TIMESTAMP AS first,
               max(corrected_start_time)::TIMESTAMP AS last
        FROM spans WHERE name = 'inference' AND inference_mode = 'edge' GROUP BY ALL""").to_pylist()}
    first = {v: f for v, (f, _) in seen.items()}
    refs = read(store, "SELECT model_name, model_version, feature, kind, reference_kind, reference_start, "
                       "reference_end FROM drift_references ORDER BY ALL").to_pylist()
    versions = {(r["model_name"], r["model_version"]) for r in refs}
    # Every version with inferences after a full day from its first has one, pinned to that day (computed
    # at the first hour with data after the day closed).
    assert versions == {v for v, (f, last) in seen.items() if last >= f + timedelta(days=1)}
    for r in refs:
        assert r["reference_kind"] == "pinned"
        assert r["reference_start"] == first[(r["model_name"], r["model_version"])]
        assert r["reference_end"] == r["reference_start"] + timedelta(days=1)
    kinds = {r["feature"]: r["kind"] for r in refs if (r["model_name"], r["model_version"]) == (MODEL, "2.3.1")}
    assert kinds == {"brightness": "numeric", "contrast": "numeric", "blur": "numeric", "lighting": "categorical",
                     "prediction_label": "categorical", "prediction_score": "numeric"}


def test_the_incident_is_flagged_daily_at_its_site_for_its_shifted_features_only(sample):
    store, _ = sample
    features = read(store, "SELECT model_version, feature, status FROM drift_results WHERE window_length = '1d' "
                           "AND window_start = $day AND model_name = $model AND cohort = $cohort",
                    {"day": DAY2, "model": MODEL, "cohort": json.dumps({"site": SITE}, separators=(",", ":"))})
    by_version: dict[str, dict[str, str]] = {}
    for r in features.to_pylist():
        by_version.setdefault(r["model_version"], {})[r["feature"]] = r["status"]
    assert set(by_version) == {"2.3.1", "2.4.0"}
    for statuses in by_version.values():
        assert {f for f in SHIFTED if statuses[f] == "drifted"} == SHIFTED
        assert {statuses[f] for f in UNCHANGED} == {"ok"}
    days = [r for r in dataset_rows(store, "1d", model_name=MODEL, window_start=DAY2) if site_of(r)]
    # 2.3.1's reference day holds five hours of the incident: its site is the only one flagged. 2.4.0's
    # (from 10:00, its canary) would hold fifteen, a sixth of its rows: it leaves the site out (2.3.1 was
    # drifted there in that day), so the other sites are not darker against it and only the incident's is flagged.
    for version in ("2.3.1", "2.4.0"):
        assert {site_of(r) for r in days if r["model_version"] == version and r["status"] == "drifted"} == {SITE}
    assert {r["verdict"] for r in days if site_of(r) == SITE} == {"retrain"}


def _incident_cohorts(store) -> set[str]:
    """The cohorts holding an inference of the incident's devices (their site, region, class, firmware, or all)."""
    rows = read(store, "SELECT DISTINCT site, region, device_class, firmware_version FROM span_rows "
                       "WHERE list_contains($devices, device_id) AND model_name = $model",
                {"devices": INCIDENT["devices"], "model": MODEL}).to_pylist()
    return {"{}"} | {json.dumps({k: v}, separators=(",", ":")) for r in rows for k, v in r.items()}


@pytest.mark.parametrize("length", ["1h", "1d"])
def test_nothing_outside_the_incident_is_flagged(sample, length):
    """Only the incident's model, in cohorts holding its devices, from its onset, on its shifted inputs (and
    the predictions it moves); no other site, model or feature, at hourly or daily windows."""
    store, _ = sample
    rows = read(store, "SELECT * FROM drift_results WHERE window_length = $length AND status = 'drifted'",
                {"length": length}).to_pylist()
    features = [r for r in rows if r["feature"] != "*"]
    assert rows and {r["model_name"] for r in rows} == {MODEL}
    assert {r["cohort"] for r in rows} <= _incident_cohorts(store)
    assert min(r["window_end"] for r in rows) > ONSET
    assert {r["feature"] for r in features} <= SHIFTED | {"prediction_label"}
    assert not {r["feature"] for r in features} & UNCHANGED
    # The flags come with their family's correction: every feature x cohort x version of the window.
    tests = read(store, "SELECT window_start, count(DISTINCT alpha_corrected) AS alphas FROM drift_results "
                        "WHERE window_length = $length AND feature <> '*' "
                        "AND status <> 'insufficient_data' GROUP BY window_start", {"length": length}).to_pylist()
    assert {t["alphas"] for t in tests} == {1}


def test_the_first_hour_with_a_reference_after_onset_is_flagged_and_small_hours_are_insufficient(sample):
    store, _ = sample
    cohort = json.dumps({"site": SITE}, separators=(",", ":"))
    for version in ("2.3.1", "2.4.0"):
        hours = dataset_rows(store, "1h", model_name=MODEL, model_version=version, cohort=cohort)
        first = hours[0]
        assert first["window_start"] >= ONSET and first["status"] == "drifted"
        assert set(first["drifted_features"]) >= SHIFTED and not set(first["drifted_features"]) & UNCHANGED
    rows = read(store, "SELECT status, current_count, reference_count FROM drift_results "
                       "WHERE window_length = '1h' AND feature <> '*'").to_pylist()
    small = [r for r in rows if r["current_count"] < DriftJob().drift_config.min_count]
    assert small and {r["status"] for r in small} == {"insufficient_data"}


def test_a_day_is_the_merge_of_its_hours(sample):
    store, _ = sample
    cohort = json.dumps({"site": SITE}, separators=(",", ":"))
    hours = read(store, "SELECT summary FROM drift_summaries WHERE model_name = $model AND model_version = '2.4.0' "
                        "AND cohort = $cohort AND feature = 'brightness' AND window_start >= $day "
                        "AND window_start < $day + INTERVAL 1 DAY", {"model": MODEL, "cohort": cohort, "day": DAY2})
    merged = merge_all([Summary.from_json_text(t) for t in hours["summary"].to_pylist()])
    day = read(store, "SELECT hours, current_count, detail FROM drift_results WHERE window_length = '1d' "
                      "AND window_start = $day AND model_name = $model AND model_version = '2.4.0' "
                      "AND cohort = $cohort AND feature = 'brightness'",
               {"model": MODEL, "cohort": cohort, "day": DAY2}).to_pylist()[0]
    assert day["hours"] == hours.num_rows == 14  # 2.4.0's reference closed at 10:00
    assert day["current_count"] == merged.count


def test_drift_alerts_fire_a_ticket_for_the_incident_cohort(sample):
    store, runner = sample
    alerts = DriftAlerts("1d")
    result = alerts.evaluate(runner._read, datetime(2026, 11, 2), END, notify_after=datetime(2026, 11, 2))
    fired = [m for m in result.messages if m.state.state == "firing"]
    labels = [m.state.key.labels for m in fired]
    assert all(lab["alertname"] == "ModelDrift" and lab["severity"] == "ticket" and lab["slo"] == "drift"
               for lab in labels)
    sites = {(lab["model_version"], lab["site"]) for lab in labels if lab["model_name"] == MODEL and "site" in lab}
    assert {s for v, s in sites if v == "2.3.1"} == {SITE}
    incident = next(m for m in fired if m.state.key.labels.get("site") == SITE
                    and m.state.key.labels["model_version"] == "2.3.1")
    assert incident.state.key.labels["model_name"] == MODEL
    assert "brightness" in incident.annotations["summary"] and "lighting" in incident.annotations["summary"]
    assert "contrast" not in incident.annotations["features"] and incident.annotations["verdict"] == "retrain"
    assert "wasserstein" in incident.annotations["description"]
    # No other model's site cohort is ticketed for 2.3.1's clean sites, and a second evaluation repeats nothing.
    again = alerts.evaluate(runner._read, END, END + timedelta(minutes=5), notify_after=END)
    assert again.messages == [] and again.transitions == []


def test_hourly_tickets_fire_and_resolve_at_the_end_of_their_windows(sample):
    store, runner = sample
    result = DriftAlerts("1h").evaluate(runner._read, datetime(2026, 11, 2), END, notify_after=END)
    statuses = {(r["model_name"], r["model_version"], r["cohort"], r["window_end"]): r["status"]
                for r in dataset_rows(store, "1h")}
    seen = set()
    for t in result.transitions:
        group = dict(t.group)
        model, version = group.pop("model_name"), group.pop("model_version")
        cohort = json.dumps(group, separators=(",", ":"))
        assert statuses[(model, version, cohort, t.at)] == ("drifted" if t.state == "firing" else "ok")
        seen.add(t.state)
    assert seen == {"firing", "resolved"}
    # History caught up on (every instant before notify_after) announces nothing.
    assert result.messages == []


def test_the_slo_evaluation_steps_drift_alerts_beside_the_zero_tolerance_ones(sample):
    from analytics.health.alerts import ZeroToleranceAlerts
    from analytics.slo.job import SloJob

    store, _ = sample
    job = SloJob(store, [], sli_jobs=["drift_hour"], alert_providers=[ZeroToleranceAlerts(), DriftAlerts()])
    assert job.run_due(END) != []
    rows = read(store, "SELECT slo, state, labels FROM alerts ORDER BY ALL").to_pylist()
    drift = [json.loads(r["labels"]) for r in rows if r["slo"] == "drift" and r["state"] == "firing"]
    assert {(lab["model_version"], lab.get("site")) for lab in drift if lab["model_name"] == MODEL} >= \
        {("2.3.1", SITE), ("2.4.0", SITE)}
    assert {r["slo"] for r in rows} <= {"drift", "zero-tolerance"}


def test_drift_named_queries_answer(sample):
    store, _ = sample
    status = named(store, "drift_status", model_name=MODEL, model_version="2.3.1", status="drifted")
    assert {json.loads(r["cohort"]).get("site") for r in status} >= {SITE}
    cohort = json.dumps({"site": SITE}, separators=(",", ":"))
    heat = named(store, "drift_features", window="1h", model_name=MODEL, model_version="2.4.0", cohort=cohort,
                 since="2026-11-01T00:00:00Z", until="2026-11-05T00:00:00Z")
    assert {r["feature"] for r in heat} == {"brightness", "contrast", "blur", "lighting", "prediction_label",
                                            "prediction_score"}
    assert len({r["window_start"] for r in heat}) == 14
    bins = named(store, "drift_distribution", feature="lighting", model_name=MODEL, model_version="2.4.0",
                 cohort=cohort)
    shares = {r["label"]: (r["reference_share"], r["current_share"]) for r in bins}
    after = INCIDENT["magnitude"]["ml.feature.lighting"]["after"]
    assert shares["low"][1] == pytest.approx(after["low"], abs=0.05)
    assert shares["low"][1] > shares["low"][0]


def test_late_rows_reopen_exactly_their_hour_and_rebuild_its_day(sample):
    """Last in the module: it adds rows to the sample copy."""
    store, runner = sample
    late_hour = datetime(2026, 11, 3, 15)
    cohort = json.dumps({"site": SITE}, separators=(",", ":"))
    before = read(store, "SELECT window_start, window_length, feature, current_count FROM drift_results "
                         "WHERE model_name = $model AND model_version = '2.4.0' AND cohort = $cohort "
                         "ORDER BY ALL", {"model": MODEL, "cohort": cohort}).to_pylist()

    def write_late(con):
        # A device that was offline uploads 40 inferences of 15:00 (copies of one of its own, later).
        with Store.transaction(con):
            con.execute("""
                CREATE TEMP TABLE late AS SELECT s.* REPLACE (
                    (?::TIMESTAMP + to_microseconds(i * 1000)::INTERVAL)::TIMESTAMP_NS AS start_time,
                    span_id + i AS span_id, NULL::BIGINT AS clock_offset_ns)
                FROM (SELECT * FROM span_rows WHERE name = 'inference' AND inference_mode = 'edge'
                      AND model_name = ? AND model_version = '2.4.0' AND site = ? LIMIT 1) s, range(1, 41) t(i)""",
                        [late_hour + timedelta(minutes=10), MODEL, SITE])
            con.execute("INSERT INTO span_rows SELECT * FROM late")
            record_marks(con, next_seq(con), "span_rows", "late")
            con.execute("DROP TABLE late")

    store.submit(write_late).result()
    report = runner.run_due("drift_hour", END)
    assert report.error is None
    late = [(s, e) for s, e, reason in report.spans if reason == "late-data"]
    assert late == [(late_hour, late_hour + timedelta(hours=1))]
    after = read(store, "SELECT window_start, window_length, feature, current_count FROM drift_results "
                        "WHERE model_name = $model AND model_version = '2.4.0' AND cohort = $cohort "
                        "ORDER BY ALL", {"model": MODEL, "cohort": cohort}).to_pylist()
    changed = {(r["window_start"], r["window_length"]) for r in after if r not in before}
    assert changed == {(late_hour, "1h"), (DAY2, "1d")}
    day_before = {r["feature"]: r["current_count"] for r in before if r["window_length"] == "1d"}
    day_after = {r["feature"]: r["current_count"] for r in after if r["window_length"] == "1d"}
    assert day_after["brightness"] == day_before["brightness"] + 40
    assert len(after) == len(before)
