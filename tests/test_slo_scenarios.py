"""The SLO scenarios: the plan does what it says, and a sent scenario arrives exactly, backlog included."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from analytics.api.client import ReadApiClient
from analytics.slo.rules import alert_windows
from bench.harness import CollectorProcess, wait_until
from tests.analytics_data import ADMIN, analytics_config
from tests.slo_scenarios import PAGE_QUICK, PAGE_SLOW, PageRule, Scenario, expected_page_delay, send

END = datetime(2026, 11, 30, 12, 0)
SITE = ("site",)


def sites_scenario(**kwargs) -> Scenario:
    return Scenario(sites={"s1": 2, "s2": 2, "s3": 2}, duration="2h", end=END, seed=3, **kwargs)


def by_minute(counts: dict, group: tuple) -> dict:
    return {minute: value for (minute, g), value in counts.items() if g == group}


def test_an_integer_rate_is_exact_and_the_same_seed_gives_the_same_events():
    scenario = sites_scenario(rate_per_minute=5, error_rate=0.01)
    counts = scenario.counts(group_by=SITE)
    assert len(counts) == 3 * 120 and {total for _, total in counts.values()} == {2 * 5}
    assert sites_scenario(rate_per_minute=5, error_rate=0.01).counts(group_by=SITE) == counts
    other = Scenario(sites={"s1": 2, "s2": 2, "s3": 2}, duration="2h", end=END, seed=4, rate_per_minute=5,
                     error_rate=0.01)
    assert other.counts(group_by=SITE) != counts
    starts = scenario.events.start_ns
    assert starts.min() >= (END - timedelta(hours=2) - datetime(1970, 1, 1)) // timedelta(microseconds=1) * 1000
    assert starts.max() < (END - datetime(1970, 1, 1)) // timedelta(microseconds=1) * 1000


def test_segments_change_only_their_cohort_and_range():
    base = sites_scenario(rate_per_minute=4, error_rate=0.05)
    planned = (sites_scenario(rate_per_minute=4, error_rate=0.05)
               .outage({"fleet.site": "s2"}, start="-90m", end="-60m")
               .silent({"fleet.site": "s3"}, start="-20m", end="-10m")
               .traffic({"device.id": "s1-cam-00"}, per_minute=1, start="-30m"))
    before, after = base.counts(group_by=SITE), planned.counts(group_by=SITE)
    outage = [END - timedelta(minutes=m) for m in range(90, 60, -1)]
    for minute in outage:
        assert after[minute, ("s2",)] == (0, 8)
    silent = {END - timedelta(minutes=m) for m in range(20, 10, -1)}
    assert all((m, ("s3",)) not in after for m in silent)
    quiet = [END - timedelta(minutes=m) for m in range(30, 0, -1)]
    assert all(after[m, ("s1",)][1] == 4 + 1 for m in quiet)
    untouched = {k: v for k, v in before.items()
                 if not (k[1] == ("s2",) and k[0] in outage) and not (k[1] == ("s3",) and k[0] in silent)
                 and not (k[1] == ("s1",) and k[0] in quiet)}
    assert untouched and all(after[k] == v for k, v in untouched.items())


def test_a_single_failure_in_a_quiet_fleet_is_the_only_bad_event():
    scenario = sites_scenario(rate_per_minute=0.2).single_failure({"fleet.site": "s2"}, at="-30m")
    counts = scenario.counts(group_by=("device_id",))
    bad = {k: total - good for k, (good, total) in counts.items() if good < total}
    assert bad == {(END - timedelta(minutes=30), ("s2-cam-00",)): 1}


def test_latency_segments_and_the_latency_counts():
    scenario = sites_scenario(rate_per_minute=10, latency_ms=20).latency({"fleet.site": "s1"}, 400, start="-10m")
    counts = scenario.counts(group_by=SITE, latency_ms=100)
    slow = {END - timedelta(minutes=m) for m in range(10, 0, -1)}
    for (minute, group), (good, total) in counts.items():
        assert good == (0 if group == ("s1",) and minute in slow else total)


def test_backlog_events_are_held_and_counted_apart():
    scenario = sites_scenario(rate_per_minute=3).backlog({"fleet.site": "s1"}, start="-40m", end="-20m")
    held = {END - timedelta(minutes=m) for m in range(40, 20, -1)}
    live, everything = scenario.counts(group_by=SITE, include_backlog=False), scenario.counts(group_by=SITE)
    assert set(everything) - set(live) == {(m, ("s1",)) for m in held}
    assert int(scenario.events.held.sum()) == 20 * 2 * 3


def test_a_deployment_switches_the_cohort_to_the_new_version():
    scenario = sites_scenario(rate_per_minute=2).deployment({"fleet.site": "s2"}, at="-60m", rollout_id="r-1",
                                                            to_version="v4")
    counts = scenario.counts(group_by=("site", "model_version"))
    assert {g for (m, g) in counts if m >= END - timedelta(minutes=60)} == {("s1", "v3"), ("s2", "v4"), ("s3", "v3")}
    assert {g for (m, g) in counts if m < END - timedelta(minutes=60)} == {("s1", "v3"), ("s2", "v3"), ("s3", "v3")}
    assert [(d, attrs["deployment.rollout.id"]) for d, _, attrs in scenario.deployments()] == [(2, "r-1"), (3, "r-1")]


@pytest.mark.parametrize("call, message", [
    (lambda s: s.outage({"fleet.site": "nowhere"}, "-1h", "-30m"), "matches no device and model"),
    (lambda s: s.single_failure({"ml.model.name": "segmenter"}, "-1h"), "matches no device and model"),
    (lambda s: s.outage({"site": "s1"}, "-1h", "-30m"), "unknown attribute"),
    (lambda s: s.outage({"fleet.site": "s1"}, "-30m", "-1h"), "must be before end"),
    (lambda s: s.errors({"fleet.site": "s1"}, 1.5), "a probability in [0, 1]"),
    (lambda s: s.silent({"fleet.site": "s1"}, "yesterday", "-1h"), "expected an offset"),
    (lambda s: s.backlog({"fleet.site": "s1"}, "-1h", "-30m", send_at="first"), "only 'last'"),
    (lambda s: s.single_failure({"fleet.site": "s1"}, "-3h"), "outside the scenario"),
    (lambda s: s.counts(group_by=("colour",)), "group_by: unknown"),
    (lambda s: send(s, "http://10.0.0.1:4318"), "127.0.0.1 only"),
])
def test_bad_plans_are_refused_with_one_clear_line(call, message):
    with pytest.raises(ValueError) as refused:
        call(sites_scenario())
    assert message in str(refused.value) and "\n" not in str(refused.value)


def first_firing_minute(baseline: float, outage: float, objective: float, rule, traffic: int = 1000):
    """Brute force over minutes: sum bad and total over both windows, independent of the closed form."""
    long_m, short_m = int(rule.long_window / timedelta(minutes=1)), int(rule.short_window / timedelta(minutes=1))
    history = [baseline * traffic] * long_m  # bad events per minute before the outage
    for t in range(0, 24 * 60):
        windows = [sum(history[-w:]) / (w * traffic) for w in (long_m, short_m)]
        if all(ratio / (1 - objective) > rule.factor for ratio in windows):
            return timedelta(minutes=t)
        history.append(outage * traffic)
    return None


@pytest.mark.parametrize("baseline, outage, objective, rule", [
    (0.001, 1.0, 0.999, PAGE_QUICK), (0.001, 1.0, 0.99, PAGE_QUICK), (0.0, 0.5, 0.999, PAGE_QUICK),
    (0.0, 0.02, 0.999, PAGE_QUICK), (0.002, 0.1, 0.995, PAGE_SLOW), (0.0, 0.01, 0.999, PAGE_QUICK),
    (0.02, 1.0, 0.999, PAGE_QUICK), (0.0, 0.3, 0.999, PageRule(13.44, timedelta(hours=1), timedelta(minutes=5))),
])
def test_expected_page_delay_matches_a_minute_by_minute_count(baseline, outage, objective, rule):
    assert expected_page_delay(baseline, outage, objective, rule) == first_firing_minute(baseline, outage,
                                                                                        objective, rule)


def test_the_page_rules_are_the_workbook_factors_the_rules_module_has_for_30_days():
    quick, slow = alert_windows(timedelta(days=30)).for_severity("page")
    for mine, theirs in ((PAGE_QUICK, quick), (PAGE_SLOW, slow)):
        assert (mine.long_window, mine.short_window) == (theirs.long_window, theirs.short_window)
        assert mine.factor == pytest.approx(theirs.factor)
    # Any rule with a factor and two windows will do, the rules module's own included.
    assert expected_page_delay(0.0, 0.5, 0.999, quick) == expected_page_delay(0.0, 0.5, 0.999, PAGE_QUICK)


def test_expected_page_delay_worked_examples():
    assert expected_page_delay(0.001, 1.0, 0.999) == timedelta(minutes=1)
    assert expected_page_delay(0.001, 1.0, 0.99) == timedelta(minutes=9)
    assert expected_page_delay(0.0, 0.0144, 0.999) is None  # exactly 14.4x never exceeds 14.4x


def sql_counts(client: ReadApiClient, scenario: Scenario) -> dict:
    rows = client.sql(
        "SELECT epoch(date_trunc('minute', corrected_start_time))::BIGINT AS minute, site, "
        "count(*) FILTER (WHERE status_code IS DISTINCT FROM 'ERROR') AS good, count(*) AS total "
        "FROM spans WHERE name = 'inference' GROUP BY ALL ORDER BY ALL").records()
    return {(datetime(1970, 1, 1) + timedelta(seconds=r["minute"]), (r["site"],)): (r["good"], r["total"])
            for r in rows}


def golden_counts(client: ReadApiClient, scenario: Scenario) -> dict:
    rows = client.query("golden_signals", since=scenario.start, until=scenario.end, step="1m",
                        group_by="site").records()
    return {(datetime.fromisoformat(r["time"].rstrip("Z")), (r["group"],)): (r["inferences"] - r["errors"],
                                                                             r["inferences"]) for r in rows}


def minutes_rolled_up(client: ReadApiClient, scenario: Scenario) -> bool:
    """The minute rollup has passed the scenario's end and looked at every ingest mark written so far."""
    state = client.sql("SELECT epoch(watermark)::BIGINT AS w, marks_seen FROM job_state "
                       "WHERE job = 'rollup_minute'").records()
    newest = client.sql("SELECT coalesce(max(seq), 0) AS seq FROM ingest_marks").records()[0]["seq"]
    return bool(state) and state[0]["w"] >= (scenario.end - datetime(1970, 1, 1)).total_seconds() \
        and state[0]["marks_seen"] >= newest


def test_a_sent_scenario_arrives_exactly_and_its_backlog_once_sent(tmp_path):
    end = datetime.now(timezone.utc).replace(tzinfo=None, second=0, microsecond=0) - timedelta(minutes=1)
    scenario = (Scenario(sites={"s1": 3, "s2": 3, "s3": 2}, duration="3h", end=end, rate_per_minute=12,
                         error_rate=0.002, seed=11, models=(("detector", "v3"), ("classifier", "v7")))
                .outage({"fleet.site": "s2"}, start="-2h", end="-90m")
                .silent({"fleet.site": "s3"}, start="-50m", end="-40m")
                .backlog({"fleet.site": "s1"}, start="-40m", end="-20m")
                .single_failure({"device.id": "s3-cam-01"}, at="-5m")
                .deployment({"fleet.site": "s2"}, at="-1h", rollout_id="r-9", to_version="v4"))
    with CollectorProcess(tmp_path / "central.duckdb", config=analytics_config()) as central:
        client = ReadApiClient(central.api_url, token=ADMIN)
        live = send(scenario, central.http_url, part="live")
        assert live.spans == int((~scenario.events.held).sum()) + len(scenario.deployments())
        expected_live = scenario.counts(group_by=SITE, include_backlog=False)
        assert sql_counts(client, scenario) == expected_live
        wait_until(lambda: minutes_rolled_up(client, scenario), timeout=180, what="minute rollups of the live part")
        assert golden_counts(client, scenario) == expected_live
        backlog = send(scenario, central.http_url, part="backlog")
        assert backlog.spans == int(scenario.events.held.sum()) > 0
        expected = scenario.counts(group_by=SITE)
        assert expected != expected_live and sql_counts(client, scenario) == expected
        wait_until(lambda: minutes_rolled_up(client, scenario), timeout=180, what="the backlog's minutes recomputed")
        assert golden_counts(client, scenario) == expected
        stored = client.sql(
            "SELECT epoch_ns(min(start_time)) AS lo, epoch_ns(max(start_time)) AS hi, "
            "count(DISTINCT (device_id, site, region, device_class, firmware_version, service_name)) AS devices, "
            "count(*) FILTER (WHERE inference_mode = 'edge') AS edge, count(*) AS n FROM spans "
            "WHERE name = 'inference'").records()[0]
        epoch = datetime(1970, 1, 1)
        assert (scenario.start - epoch) / timedelta(microseconds=1) * 1000 <= stored["lo"]
        assert stored["hi"] < (scenario.end - epoch) / timedelta(microseconds=1) * 1000
        assert stored["devices"] == 8 and stored["edge"] == stored["n"] == scenario.events.device.size
        versions = client.sql("SELECT DISTINCT site, model_name, model_version FROM spans WHERE name = 'inference' "
                              "ORDER BY ALL").rows
        assert versions == [[s, m, v] for s in ("s1", "s2", "s3") for m, v in
                            sorted({("classifier", "v7"), ("detector", "v3"), ("classifier", "v4"),
                                    ("detector", "v4")} if s == "s2" else {("classifier", "v7"), ("detector", "v3")})]
        deployments = client.sql("SELECT device_id, attributes FROM spans WHERE name = 'deployment' "
                                 "ORDER BY device_id").records()
        assert [d["device_id"] for d in deployments] == ["s2-cam-00", "s2-cam-01", "s2-cam-02"]
        assert all('"deployment.rollout.id":"r-9"' in d["attributes"] for d in deployments)
