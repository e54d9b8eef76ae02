"""Alertmanager webhook (version "4") and /api/v2/alerts payloads: shape, words and links."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from analytics.slo.lifecycle import AlertKey, AlertState, Lifecycle, LifecycleConfig
from analytics.slo.payload import (AlertContext, AlertMessage, PayloadConfig, api_v2_alerts, describe,
                                   label_set_string, webhook_payload)
from analytics.slo.rules import (WindowCounts, alert_windows, budget_remaining, burn_rate, evaluate_severity,
                                 time_to_exhaustion)

T = datetime(2026, 11, 30, 12, 0)
DAY, HOUR, MIN = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
CONFIG = PayloadConfig(receiver="oncall", external_url="http://fleetwatch.example:4319",
                       dashboard_url_template="http://dash.example:8501/oncall?slo={slo}&{group_query}")
# Alertmanager's notify/webhook Message and template Data / Alert fields.
MESSAGE_KEYS = {"version", "groupKey", "truncatedAlerts", "receiver", "status", "alerts", "groupLabels",
                "commonLabels", "commonAnnotations", "externalURL"}
ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


def _context(bad_hour: int = 300, bad_5m: int = 60):
    windows = alert_windows(30 * DAY)
    counts = {w: WindowCounts(10_000 - (bad_hour if w <= HOUR else 400), 10_000) for w in windows.windows}
    counts[5 * MIN] = WindowCounts(1_000 - bad_5m, 1_000)
    evaluation = evaluate_severity(windows, "page", 0.999, counts)
    remaining = budget_remaining(9_000_000 - 2_000, 9_000_000, 0.999)
    fastest = max(e.long_burn for e in evaluation.evaluations)
    return AlertContext("Detector inferences succeed", 0.999, 30 * DAY, evaluation, remaining,
                        time_to_exhaustion(remaining, fastest, 30 * DAY),
                        runbook_url="https://runbooks.example/det", rollout="fw-1.3 canary",
                        extra={"team_channel": "#vision"})


def _firing(severity="page", site="site-1"):
    lifecycle = Lifecycle(LifecycleConfig(pending_for={"page": timedelta(0), "ticket": timedelta(0)}))
    key = AlertKey.of("det-success", severity, {"model_name": "detector", "site": site}, {"team": "vision"})
    return lifecycle.step(AlertState.new(key), True, T)[0]


def test_annotations_say_which_windows_burn_how_fast_and_what_budget_is_left():
    context = _context()
    annotations = describe(context)
    # 300 bad of 10,000 over 1h at 99.9 % = 30x; 60 of 1,000 over 5m = 60x; the 6h rule reads 400 of 10,000 = 40x.
    assert burn_rate(9_700, 10_000, 0.999) == pytest.approx(30.0)
    text = annotations["description"]
    assert "1h window burns at 30.0x and 5m at 60.0x the sustainable rate (threshold 14.4x: 0.02 of the 30d budget in 1h)" in text
    assert "6h window burns at 40.0x and 30m at 30.0x" in text
    # 2,000 bad of a 9,000-event budget: 77.8 % left; at the fastest long-window burn (40x) it lasts 30d x 0.778 / 40.
    assert "Budget left: 77.8% of the 30d budget, gone in about 14h" in text
    assert annotations["runbook_url"] == "https://runbooks.example/det"
    assert annotations["rollout"] == "fw-1.3 canary" and "during rollout fw-1.3 canary" in annotations["summary"]
    assert annotations["team_channel"] == "#vision"


def test_webhook_payload_has_alertmanagers_fields_and_values():
    alerts = [AlertMessage(_firing(site=s), describe(_context())) for s in ("site-1", "site-2")]
    body = webhook_payload(alerts, CONFIG, group_labels={"slo": "det-success", "severity": "page"})
    assert set(body) == MESSAGE_KEYS and body["version"] == "4" and body["status"] == "firing"
    assert body["groupKey"] == '{}:{severity="page", slo="det-success"}'
    assert body["receiver"] == "oncall" and body["externalURL"] == "http://fleetwatch.example:4319"
    assert body["truncatedAlerts"] == 0
    for alert in body["alerts"]:
        assert set(alert) == ALERT_KEYS and alert["status"] == "firing"
        assert alert["startsAt"] == "2026-11-30T12:00:00.000Z" and alert["endsAt"] == "0001-01-01T00:00:00Z"
        assert alert["labels"]["alertname"] == "SLOBurnRate" and alert["labels"]["severity"] == "page"
        assert alert["generatorURL"].startswith("http://fleetwatch.example:4319/api/v1/query/slo_status?slo=det-success&")
        assert alert["annotations"]["dashboard_url"] == (
            f"http://dash.example:8501/oncall?slo=det-success&model_name=detector&site={alert['labels']['site']}")
    # Common labels: what both alerts share, computed here by set intersection.
    shared = set(body["alerts"][0]["labels"].items()) & set(body["alerts"][1]["labels"].items())
    assert body["commonLabels"] == dict(shared) and "site" not in body["commonLabels"]
    assert "dashboard_url" not in body["commonAnnotations"] and "runbook_url" in body["commonAnnotations"]
    json.dumps(body)  # serialisable as is


def test_resolved_alerts_carry_their_end_and_a_resolved_status():
    lifecycle = Lifecycle(LifecycleConfig(pending_for={"page": timedelta(0)}))
    resolved = lifecycle.step(_firing(), False, T + 42 * MIN)[0]
    body = webhook_payload([AlertMessage(resolved, {"summary": "over"})], CONFIG, {"slo": "det-success"})
    assert body["status"] == "resolved" and body["alerts"][0]["endsAt"] == "2026-11-30T12:42:00.000Z"
    mixed = webhook_payload([AlertMessage(resolved, {}), AlertMessage(_firing(site="site-9"), {})], CONFIG, {})
    assert mixed["status"] == "firing" and [a["status"] for a in mixed["alerts"]] == ["resolved", "firing"]


def test_max_alerts_truncates_and_counts():
    alerts = [AlertMessage(_firing(site=f"site-{i}"), {"summary": "burn" if i < 2 else "other"}) for i in range(5)]
    body = webhook_payload(alerts, PayloadConfig(max_alerts=2), {"slo": "det-success"})
    assert len(body["alerts"]) == 2 and body["truncatedAlerts"] == 3
    # Alertmanager builds the template data from the alerts it keeps (notify/webhook truncateAlerts first).
    assert body["commonAnnotations"] == {"summary": "burn"}


def test_api_v2_list_form():
    lifecycle = Lifecycle(LifecycleConfig(pending_for={"page": timedelta(0)}))
    resolved = lifecycle.step(_firing(site="site-2"), False, T + MIN)[0]
    posted = api_v2_alerts([AlertMessage(_firing(), {"summary": "s"}), AlertMessage(resolved, {"summary": "s"})], CONFIG)
    assert set(posted[0]) == {"labels", "annotations", "startsAt", "generatorURL"}
    assert set(posted[1]) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert posted[1]["endsAt"] == "2026-11-30T12:01:00.000Z"


def test_pending_alerts_are_not_sent_and_templates_are_checked():
    pending = AlertState.new(AlertKey.of("det-success", "page"))
    pending = Lifecycle().step(pending, True, T)[0]
    with pytest.raises(ValueError, match="only firing or resolved alerts are sent, not pending"):
        webhook_payload([AlertMessage(pending, {})], CONFIG, {})
    with pytest.raises(ValueError, match=r"^alerting\.payload\.dashboard_url_template: unknown placeholder 'device'"):
        PayloadConfig(dashboard_url_template="http://d/{device}").validate()
    with pytest.raises(ValueError, match="at least one alert"):
        webhook_payload([], CONFIG, {})


def test_label_set_string_is_prometheus_format():
    assert label_set_string({"b": 'say "hi"', "a": "1"}) == '{a="1", b="say \\"hi\\""}'
