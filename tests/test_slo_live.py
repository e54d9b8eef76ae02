"""SLO alerts live through `fleetwatch serve`, on simulated fleets sent over real OTLP.

The scenario (tests/slo_scenarios.py) is a fleet of the last three hours:
one site's total outage, one site's quiet hour with a single failure, one
site's backlog of failures uploaded after everything else. The expected
times come from the Workbook's window arithmetic on the scenario's own
plan (``expected_page_delay``), never from the evaluator; the live alerts
are compared with ``fleetwatch slo backtest`` of the same file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import yaml

from analytics.api.client import ReadApiClient
from bench.harness import CollectorProcess, wait_until
from tests.alerting_data import FAST
from tests.analytics_data import ADMIN, analytics_config
from tests.slo_scenarios import PAGE_QUICK, Scenario, expected_page_delay, send
from tests.webhook_receiver import WebhookReceiver

OBJECTIVE = 0.999
BASELINE = 0.0002
SLOS = {"slos": [{"name": "success-by-site", "objective": OBJECTIVE, "group_by": ["site"],
                  "annotations": {"runbook_url": "https://runbooks.example/success"},
                  "alerting": {"min_events": 100}}]}


def scenario_now() -> Scenario:
    end = datetime.now(timezone.utc).replace(tzinfo=None, second=0, microsecond=0) - timedelta(minutes=1)
    return (Scenario(sites={"s1": 3, "s2": 3, "s3": 3}, duration="3h", end=end, rate_per_minute=10,
                     error_rate=BASELINE, seed=5)
            .outage({"fleet.site": "s2"}, start="-100m", end="-70m")
            # s2 is mid-rollout when it fails: the page names the rollout.
            .deployment({"fleet.site": "s2"}, at="-110m", rollout_id="r-7", stage="fleet")
            # A quiet hour at s3 (36 events: far under min_events) with one failure in it.
            .traffic({"fleet.site": "s3"}, per_minute=0.2, start="-60m")
            .single_failure({"device.id": "s3-cam-00"}, at="-30m")
            # s1's failing stretch arrives last, as an offline site's backlog.
            .errors({"fleet.site": "s1"}, error_rate=0.05, start="-60m", end="-40m")
            .backlog({"fleet.site": "s1"}, start="-60m", end="-40m"))


def evaluated_up_to(client: ReadApiClient, t: datetime) -> bool:
    rows = client.sql("SELECT watermark FROM job_state WHERE job = 'slo_evaluate'").rows
    return bool(rows) and datetime.fromisoformat(rows[0][0].replace("Z", "")).replace(tzinfo=None) >= t


def alerts(client: ReadApiClient) -> list[dict]:
    return client.sql("SELECT slo, severity, group_labels, state, opened_at, starts_at, ends_at, labels "
                      "FROM alerts ORDER BY opened_at").records()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=None)


def served_config(tmp_path, receiver: WebhookReceiver | None = None) -> tuple[dict, object]:
    slos = tmp_path / "slos.yaml"
    slos.write_text(yaml.safe_dump(SLOS))
    config = analytics_config()
    # The scenario lies in the last three hours: announce what the evaluation finds there.
    config["analytics"].update({"slos": str(slos), "notify_window": "4h"})
    if receiver is not None:
        config["alerting"] = {"receivers": [{"name": "oncall", "url": receiver.url("/hook")}],
                              "external_url": "http://fleetwatch.example:4319",
                              "dashboard_url": "http://dash.example/on-call?slo={slo}&{group_query}", **FAST}
    return config, slos


def test_outage_pages_quiet_failure_and_late_backlog_do_not_and_backtest_agrees(tmp_path):
    scenario = scenario_now()
    receiver = WebhookReceiver().start()
    receiver.stop()  # down when the alerts are raised: they wait in the outbox
    config, slos = served_config(tmp_path, receiver)
    db = tmp_path / "central.duckdb"
    with CollectorProcess(db, config=config) as central:
        client = ReadApiClient(central.api_url, token=ADMIN)
        send(scenario, central.http_url, part="live")
        wait_until(lambda: evaluated_up_to(client, scenario.end), timeout=300, what="SLO evaluation of the live part")
        live = alerts(client)
        pending = client.sql("SELECT count(*) AS n FROM alert_outbox WHERE delivered_at IS NULL").records()[0]["n"]
        assert pending >= 2  # the page's firing and resolved notifications, at least
        receiver.start()  # back on the same port: everything queued arrives
        wait_until(lambda: client.sql("SELECT count(*) AS n FROM alert_outbox WHERE delivered_at IS NULL")
                   .records()[0]["n"] == 0, timeout=120, what="the outbox delivered")
        send(scenario, central.http_url, part="backlog")
        # The backlog re-opens its minutes; the next evaluations see them in their windows.
        sent_at = datetime.now(timezone.utc).replace(tzinfo=None)
        wait_until(lambda: evaluated_up_to(client, sent_at + timedelta(minutes=1)), timeout=300,
                   what="SLO evaluation after the backlog")
        after = alerts(client)
        status = {json.loads(r["group_key"])["site"]: r
                  for r in client.query("slo_status", slo="success-by-site").records()}
        env = {**os.environ, "FLEETWATCH_API_TOKEN": ADMIN}
        table = subprocess.run([sys.executable, "-m", "fleetwatch", "slo", "status", "--url", central.api_url],
                               capture_output=True, text=True, timeout=60, env=env)
        lines = subprocess.run([sys.executable, "-m", "fleetwatch", "slo", "status", "--url", central.api_url,
                                "--slo", "success-by-site", "--format", "json"],
                               capture_output=True, text=True, timeout=60, env=env).stdout.splitlines()
        refused = subprocess.run([sys.executable, "-m", "fleetwatch", "slo", "status", "--url", central.api_url],
                                 capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and table.stdout.split()[:3] == ["slo", "group_key", "evaluated_at"]
    assert "(3 rows)" in table.stdout
    assert {json.loads(json.loads(line)["group_key"])["site"]: json.loads(line)["budget_remaining"]
            for line in lines} == {site: row["budget_remaining"] for site, row in status.items()}
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "401" in refused.stderr

    receiver.stop()
    notified = [(r.json["status"], r.json["alerts"][0]) for r in receiver.accepted()
                if r.json["alerts"][0]["labels"]["severity"] == "page"]
    assert [(status, a["labels"]["site"]) for status, a in notified] == [("firing", "s2"), ("resolved", "s2")]
    body = receiver.accepted()[0].json
    assert body["version"] == "4" and body["receiver"] == "oncall" and body["groupKey"].startswith("{}:{")
    fired = notified[0][1]
    assert fired["labels"] == {"alertname": "SLOBurnRate", "slo": "success-by-site", "severity": "page", "site": "s2"}
    assert fired["annotations"]["runbook_url"] == "https://runbooks.example/success"
    assert fired["annotations"]["rollout"] == "r-7" and "during rollout r-7" in fired["annotations"]["summary"]
    assert fired["annotations"]["dashboard_url"] == "http://dash.example/on-call?slo=success-by-site&site=s2"
    assert "1h window burns at" in fired["annotations"]["description"] and "Budget left" in fired["annotations"][
        "description"]
    assert fired["endsAt"] == "0001-01-01T00:00:00Z" and notified[1][1]["endsAt"] != fired["endsAt"]
    assert notified[0][1]["fingerprint"] == notified[1][1]["fingerprint"]

    pages = [a for a in after if a["severity"] == "page" and a["state"] in ("firing", "resolved")]
    assert [json.loads(a["group_labels"]) for a in pages] == [{"site": "s2"}], pages  # s1 and s3 never page
    page = pages[0]
    outage_start, outage_end = scenario.end - timedelta(minutes=100), scenario.end - timedelta(minutes=70)
    # Detection: the Workbook arithmetic on the plan (s2 is its own group: the outage is its whole traffic).
    delay = expected_page_delay(BASELINE, 1.0, OBJECTIVE, PAGE_QUICK)
    started, ended = _time(page["starts_at"]), _time(page["ends_at"])
    assert started <= outage_start + delay + timedelta(minutes=2)  # + the 2-minute pending time
    assert outage_start < started and outage_end < ended <= outage_end + timedelta(minutes=35)
    assert page["state"] == "resolved"
    assert [a for a in live if a["severity"] == "page"] == [a for a in after if a["severity"] == "page"]
    # The backlog's failures count: s1's period counts include them (the scenario's own totals).
    counts = scenario.counts(group_by=("site",))
    for site in ("s1", "s2", "s3"):
        good = sum(g for (_, group), (g, _) in counts.items() if group == (site,))
        total = sum(t for (_, group), (_, t) in counts.items() if group == (site,))
        assert (status[site]["good_period"], status[site]["total_period"]) == (good, total), site

    # The backtest of the same file: the same page at the same minutes; s1's backlog, which the live
    # evaluation saw only after its time had passed, pages in the backtest (it sees it in time).
    run = subprocess.run([sys.executable, "-m", "fleetwatch", "slo", "backtest", "--db", str(db), "--slos", str(slos),
                          "--from", f"{scenario.start:%Y-%m-%dT%H:%M:%SZ}",
                          "--to", f"{scenario.end + timedelta(minutes=40):%Y-%m-%dT%H:%M:%SZ}"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    transitions = [json.loads(line) for line in run.stdout.splitlines()]
    s2 = [(t["state"], _time(t["at"])) for t in transitions if t["severity"] == "page" and t["group"] == {"site": "s2"}]
    assert s2 == [("firing", started), ("resolved", ended)]
    assert {t["group"]["site"] for t in transitions if t["severity"] == "page"} == {"s1", "s2"}
    assert not [t for t in transitions if t["group"] == {"site": "s3"} and t["severity"] == "page"]


def chain(client: ReadApiClient) -> list[tuple[str, str]]:
    return [tuple(r) for r in client.sql("SELECT window_start, window_end FROM job_runs WHERE job = 'slo_evaluate' "
                                         "AND outcome = 'ok' ORDER BY window_start").rows]


def test_kill_9_during_evaluation_leaves_no_duplicate_and_no_gap(tmp_path):
    # Two days at one inference a minute per device: the evaluation catches up a day per transaction.
    end = datetime.now(timezone.utc).replace(tzinfo=None, second=0, microsecond=0) - timedelta(minutes=1)
    scenario = (Scenario(sites={"s1": 2, "s2": 2}, duration="2d", end=end, rate_per_minute=1,
                         error_rate=BASELINE, seed=9)
                .outage({"fleet.site": "s2"}, start="-30h", end="-29h"))
    config, slos = served_config(tmp_path)
    db = tmp_path / "central.duckdb"
    central = CollectorProcess(db, config=config).start()
    try:
        client = ReadApiClient(central.api_url, token=ADMIN)
        send(scenario, central.http_url, part="live")
        # Kill as soon as the first day is evaluated, while the next is under way.
        wait_until(lambda: chain(client), timeout=300, what="the first evaluated chunk")
        central.kill()
    finally:
        central.stop()
    with CollectorProcess(db, config=config) as central:
        client = ReadApiClient(central.api_url, token=ADMIN)
        wait_until(lambda: evaluated_up_to(client, scenario.end), timeout=300, what="the evaluation after restart")
        runs = chain(client)
        stored = [a for a in alerts(client) if json.loads(a["labels"])["alertname"] == "SLOBurnRate"]
    assert all(a[1] == b[0] for a, b in zip(runs, runs[1:])), runs  # each chunk starts where the last ended
    assert len({r[0] for r in runs}) == len(runs)
    run = subprocess.run([sys.executable, "-m", "fleetwatch", "slo", "backtest", "--db", str(db), "--slos", str(slos),
                          "--from", f"{_time(runs[0][0]):%Y-%m-%dT%H:%M:%SZ}", "--to", f"{scenario.end:%Y-%m-%dT%H:%M:%SZ}"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    backtest = sorted((t["severity"], t["group"]["site"], t["state"], _time(t["at"]))
                      for t in map(json.loads, run.stdout.splitlines()) if t["alertname"] == "SLOBurnRate")
    live = sorted([(a["severity"], json.loads(a["group_labels"])["site"], "firing", _time(a["starts_at"]))
                   for a in stored if a["starts_at"]] +
                  [(a["severity"], json.loads(a["group_labels"])["site"], "resolved", _time(a["ends_at"]))
                   for a in stored if a["ends_at"]])
    assert ("page", "s2", "firing") in {t[:3] for t in live}
    assert live == backtest


def test_a_slow_burn_opens_a_ticket_and_never_pages(tmp_path):
    # 2x the budget's pace on one site for eight hours: the 3d/6h ticket rule (1x) fires once six hours of
    # history cover its short window; no page rule (14.4x, 6x) ever does.
    end = datetime.now(timezone.utc).replace(tzinfo=None, second=0, microsecond=0) - timedelta(minutes=1)
    scenario = (Scenario(sites={"s1": 3, "s2": 3}, duration="8h", end=end, rate_per_minute=10,
                         error_rate=BASELINE, seed=13)
                .slow_burn({"fleet.site": "s1"}, error_rate=2 * (1 - OBJECTIVE)))
    config, _ = served_config(tmp_path)
    with CollectorProcess(tmp_path / "central.duckdb", config=config) as central:
        client = ReadApiClient(central.api_url, token=ADMIN)
        send(scenario, central.http_url, part="live")
        wait_until(lambda: evaluated_up_to(client, scenario.end), timeout=300, what="SLO evaluation")
        stored = alerts(client)
    burning = [(a["severity"], json.loads(a["group_labels"])["site"], a["state"]) for a in stored
               if a["state"] in ("firing", "resolved")]
    assert ("ticket", "s1", "firing") in burning
    assert not [b for b in burning if b[0] == "page" or b[1] == "s2"], burning
    ticket = next(a for a in stored if a["severity"] == "ticket" and a["state"] == "firing")
    assert _time(ticket["starts_at"]) >= scenario.start + timedelta(hours=6)  # the warm-up of the 6h window
