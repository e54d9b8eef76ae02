"""Alert delivery for real: the outbox in a DuckDB file, the notifier thread, a webhook receiver on 127.0.0.1.

Nothing is timed: retries are fast (tests/alerting_data.py FAST) and every
wait is on a condition with a deadline.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from analytics.slo.notifier import Notifier
from analytics.slo.outbox import deliveries_for, enqueue, utc_now
from bench.harness import metric_value, wait_until
from collector.selfmetrics import Registry
from collector.store.database import Store
from tests.alerting_data import alerting_config, enqueue_messages, firing, open_store, outbox_rows, resolved
from tests.certificates import self_signed_certificate
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture()
def outbox_store(tmp_path):
    store = open_store(tmp_path / "alerts.duckdb")
    yield store
    store.close()


@pytest.fixture()
def receiver():
    with WebhookReceiver() as receiver:
        yield receiver


def run_notifier(store, config, registry=None) -> Notifier:
    notifier = Notifier(store, config, registry or Registry())
    notifier.start()
    return notifier


def finished(store) -> bool:
    return all(r["delivered_at"] or r["failed_at"] or r["expired_at"] for r in outbox_rows(store))


def test_firing_then_resolved_arrive_in_order_even_when_the_firing_one_is_retried(outbox_store, receiver):
    config = alerting_config([{"name": "oncall", "url": receiver.url("/hook")}])
    detector, camera = firing(), firing("camera-freshness", {"site": "oslo"})
    receiver.fail_next(1)  # the first firing fails once: its resolved must still wait for it
    enqueue_messages(outbox_store, [detector, camera, resolved(detector), resolved(camera)], config)
    registry = Registry()
    notifier = run_notifier(outbox_store, config, registry)
    try:
        wait_until(lambda: len(receiver.accepted()) == 4, 30, "four deliveries")
    finally:
        notifier.stop()
    for alert in (detector, camera):
        statuses = [r.json["alerts"][0]["status"] for r in receiver.accepted()
                    if r.json["alerts"][0]["fingerprint"] == alert.state.key.fingerprint]
        assert statuses == ["firing", "resolved"]
    first = receiver.accepted()[0]
    assert first.path == "/hook" and first.headers["User-Agent"].startswith("fleetwatch/")
    assert first.headers["Content-Type"] == "application/json" and "Authorization" not in first.headers
    body = first.json
    assert body["version"] == "4" and body["receiver"] == "oncall" and len(body["alerts"]) == 1
    assert body["groupLabels"]["slo"] == body["alerts"][0]["labels"]["slo"]
    assert body["groupKey"].startswith("{}:{") and "severity=" in body["groupKey"]
    assert metric_value(registry.render(), "fleetwatch_alert_notifications_total", outcome="delivered") == 4
    assert metric_value(registry.render(), "fleetwatch_alert_notifications_total", outcome="retry") == 1


def test_a_receiver_answering_503_gets_it_once_back_and_every_attempt_is_counted(outbox_store, receiver):
    config = alerting_config([{"name": "oncall", "url": receiver.url("/hook")}])
    receiver.fail_next(2, status=503)
    enqueue_messages(outbox_store, [firing()], config)
    registry = Registry()
    notifier = run_notifier(outbox_store, config, registry)
    try:
        wait_until(lambda: finished(outbox_store), 30, "the delivery")
    finally:
        notifier.stop()
    assert [r.status for r in receiver.received()] == [503, 503, 200]
    [row] = outbox_rows(outbox_store)
    assert row["attempts"] == 3 and row["delivered_at"] is not None and "HTTP 503" in row["last_error"]
    text = registry.render()
    assert metric_value(text, "fleetwatch_alert_notifications_total", receiver="oncall", outcome="retry") == 2
    assert metric_value(text, "fleetwatch_alert_notifications_total", receiver="oncall", outcome="delivered") == 1


def test_a_receiver_that_is_down_gets_it_when_it_is_back_on_the_same_port(outbox_store, receiver):
    config = alerting_config([{"name": "oncall", "url": receiver.url("/hook")}])
    receiver.stop()  # the port is closed: connections are refused
    enqueue_messages(outbox_store, [firing()], config)
    registry = Registry()
    notifier = run_notifier(outbox_store, config, registry)
    try:
        wait_until(lambda: outbox_rows(outbox_store)[0]["attempts"] >= 2, 30, "two refused attempts")
        text = registry.render()
        assert metric_value(text, "fleetwatch_alert_outbox_pending") == 1
        assert metric_value(text, "fleetwatch_alert_outbox_oldest_pending_seconds") > 0
        assert "Connection" in outbox_rows(outbox_store)[0]["last_error"]
        receiver.start()
        wait_until(lambda: finished(outbox_store), 30, "the delivery once the receiver is back")
        wait_until(lambda: metric_value(registry.render(), "fleetwatch_alert_outbox_pending") == 0, 30,
                   "the pending gauge to drop")
    finally:
        notifier.stop()
    assert len(receiver.received()) == 1 and receiver.received()[0].json["status"] == "firing"
    assert metric_value(registry.render(), "fleetwatch_alert_outbox_oldest_pending_seconds") == 0


def test_a_restart_on_the_same_file_delivers_what_was_pending_and_nothing_twice(tmp_path, receiver):
    db = tmp_path / "alerts.duckdb"
    config = alerting_config([{"name": "oncall", "url": receiver.url("/hook")}])
    first, second = firing(), firing("camera-freshness", {"site": "oslo"})
    store = open_store(db)
    enqueue_messages(store, [first, second], config)
    notifier = run_notifier(store, config)
    wait_until(lambda: finished(store), 30, "the firing notifications")
    receiver.stop()
    enqueue_messages(store, [resolved(first), resolved(second)], config)
    wait_until(lambda: all(r["attempts"] for r in outbox_rows(store)), 30, "attempts on the resolved ones")
    notifier.stop()
    store.close()

    receiver.start()
    store = open_store(db)
    notifier = run_notifier(store, config)
    try:
        wait_until(lambda: finished(store), 30, "the resolved notifications after the restart")
    finally:
        notifier.stop()
        store.close()
    sent = [(r.json["alerts"][0]["fingerprint"], r.json["status"]) for r in receiver.received()]
    assert sorted(sent) == sorted((m.state.key.fingerprint, s) for m in (first, second)
                                  for s in ("firing", "resolved"))


def test_400_is_a_permanent_error_not_retried_and_counted(outbox_store, receiver):
    config = alerting_config([{"name": "oncall", "url": receiver.url("/hook")}])
    receiver.answer_next(1, 400)
    enqueue_messages(outbox_store, [firing()], config)
    registry = Registry()
    notifier = Notifier(outbox_store, config, registry)
    notifier.run_once()
    [row] = outbox_rows(outbox_store)
    assert row["failed_at"] is not None and row["delivered_at"] is None
    assert row["last_error"].startswith("HTTP 400: status 400 as told")
    notifier.run_once(now=utc_now() + timedelta(hours=1))  # long past any retry it could have had
    assert len(receiver.received()) == 1
    assert metric_value(registry.render(), "fleetwatch_alert_notifications_total", outcome="failed") == 1
    assert metric_value(registry.render(), "fleetwatch_alert_outbox_pending") == 0


@pytest.mark.parametrize("status", [408, 429, 500])
def test_408_429_and_5xx_are_retried(outbox_store, receiver, status):
    config = alerting_config([{"name": "oncall", "url": receiver.url("/hook")}])
    receiver.answer_next(1, status)
    enqueue_messages(outbox_store, [firing()], config)
    notifier = Notifier(outbox_store, config, Registry())
    notifier.run_once()
    [row] = outbox_rows(outbox_store)
    assert row["failed_at"] is None and row["delivered_at"] is None and row["next_attempt_at"] > row["created_at"]
    notifier.run_once(now=utc_now() + timedelta(minutes=10))
    assert outbox_rows(outbox_store)[0]["delivered_at"] is not None


def test_a_notification_older_than_give_up_after_expires_counted_and_kept(outbox_store, receiver):
    config = alerting_config([{"name": "oncall", "url": receiver.url("/hook")}], give_up_after="1d")
    receiver.stop()
    enqueue_messages(outbox_store, [firing()], config, now=utc_now() - timedelta(days=1, minutes=1))
    enqueue_messages(outbox_store, [firing("camera-freshness")], config)
    registry = Registry()
    Notifier(outbox_store, config, registry).run_once()  # one pass: /metrics must be right right after it
    old, fresh = outbox_rows(outbox_store)
    assert fresh["attempts"] == 1
    assert old["expired_at"] is not None and old["attempts"] == 0  # expired before any hopeless POST
    assert fresh["expired_at"] is None and fresh["delivered_at"] is None
    text = registry.render()
    assert metric_value(text, "fleetwatch_alert_notifications_total", receiver="oncall", outcome="expired") == 1
    assert metric_value(text, "fleetwatch_alert_outbox_pending") == 1


def test_finished_rows_are_pruned_after_the_retention(outbox_store, receiver):
    config = alerting_config([{"name": "oncall", "url": receiver.url("/hook")}], retention="7d")
    enqueue_messages(outbox_store, [firing()], config)
    notifier = Notifier(outbox_store, config, Registry())
    notifier.run_once()
    assert finished(outbox_store)
    notifier.run_once(now=utc_now() + timedelta(days=6))
    assert len(outbox_rows(outbox_store)) == 1
    notifier.run_once(now=utc_now() + timedelta(days=8))
    assert outbox_rows(outbox_store) == []


def test_alertmanager_kind_posts_the_v2_list_to_api_v2_alerts(outbox_store, receiver):
    config = alerting_config([{"name": "am", "url": receiver.url() + "/", "kind": "alertmanager"}])
    alert = firing()
    enqueue_messages(outbox_store, [alert, resolved(alert)], config)
    notifier = run_notifier(outbox_store, config)
    try:
        wait_until(lambda: finished(outbox_store), 30, "both posts")
    finally:
        notifier.stop()
    posted_firing, posted_resolved = receiver.received()
    assert posted_firing.path == posted_resolved.path == "/api/v2/alerts"
    assert isinstance(posted_firing.json, list) and len(posted_firing.json) == 1
    assert posted_firing.json[0]["labels"]["alertname"] == "SLOBurnRate" and "endsAt" not in posted_firing.json[0]
    assert posted_resolved.json[0]["endsAt"] != "0001-01-01T00:00:00Z"


def test_bearer_tokens_come_from_a_file_or_an_environment_variable(outbox_store, receiver, tmp_path, monkeypatch):
    token_file = tmp_path / "oncall-token"
    token_file.write_text("s3cret-file-token\n")
    monkeypatch.setenv("FW_TEST_AM_TOKEN", "s3cret-env-token")
    config = alerting_config([
        {"name": "oncall", "url": receiver.url("/hook"), "bearer_token_file": str(token_file)},
        {"name": "am", "url": receiver.url(), "kind": "alertmanager", "bearer_token_env": "FW_TEST_AM_TOKEN"}])
    enqueue_messages(outbox_store, [firing()], config)
    Notifier(outbox_store, config, Registry()).run_once()
    by_path = {r.path: r.headers.get("Authorization") for r in receiver.received()}
    assert by_path == {"/hook": "Bearer s3cret-file-token", "/api/v2/alerts": "Bearer s3cret-env-token"}
    assert "s3cret" not in json.dumps(outbox_rows(outbox_store), default=str)  # never stored with the body


def test_enqueue_belongs_to_the_callers_transaction(outbox_store):
    config = alerting_config([{"name": "oncall", "url": "http://127.0.0.1:9/hook"}])
    deliveries = deliveries_for([firing()], config)

    def write_then_fail(con):
        with Store.transaction(con):
            enqueue(con, deliveries)
            raise RuntimeError("the alerts write failed")

    with pytest.raises(RuntimeError):
        outbox_store.submit(write_then_fail).result()
    assert outbox_rows(outbox_store) == []
    assert enqueue_messages(outbox_store, [firing()], config) == 1


def test_without_receivers_nothing_is_enqueued_and_no_notifier_runs():
    from analytics.service import NotifierExtension, service_extensions
    from collector.config import config_from_dict

    config = config_from_dict({"analytics": {}, "alerting": {"external_url": "https://fleetwatch.example"}})
    assert deliveries_for([firing()], config.section("alerting")) == []
    assert not any(isinstance(e, NotifierExtension) for e in service_extensions(config))
    with_receiver = config_from_dict({"analytics": {}, "alerting": {"receivers": [
        {"name": "oncall", "url": "http://127.0.0.1:9/hook"}]}})
    assert any(isinstance(e, NotifierExtension) for e in service_extensions(with_receiver))


def test_an_alertmanager_hears_a_firing_alert_again_until_it_resolves(outbox_store, receiver):
    config = alerting_config([{"name": "am", "url": receiver.url(), "kind": "alertmanager"},
                              {"name": "oncall", "url": receiver.url("/hook")}],
                             alertmanager_resend_interval="100ms")
    alert = firing()
    enqueue_messages(outbox_store, [alert], config)
    registry = Registry()
    notifier = run_notifier(outbox_store, config, registry)
    try:
        wait_until(lambda: len([r for r in receiver.received() if r.path == "/api/v2/alerts"]) >= 3, 30,
                   "the firing alert posted to the Alertmanager again")
        enqueue_messages(outbox_store, [resolved(alert)], config)
        wait_until(lambda: finished(outbox_store) and any(
            r.path == "/api/v2/alerts" and "endsAt" in r.json[0] for r in receiver.received()), 30, "the resolved")
    finally:
        notifier.stop()
    notifier.run_once(now=utc_now() + timedelta(hours=1))  # the resolved one is the newest: nothing to repeat
    posts = [r for r in receiver.received() if r.path == "/api/v2/alerts"]
    assert "endsAt" in posts[-1].json[0] and all("endsAt" not in r.json[0] for r in posts[:-1])
    assert [r.json["status"] for r in receiver.received() if r.path == "/hook"] == ["firing", "resolved"]
    assert metric_value(registry.render(), "fleetwatch_alert_notifications_total", receiver="am",
                        outcome="resent") == len(posts) - 2


def test_stop_abandons_a_post_that_gets_no_answer_and_the_row_stays_pending(outbox_store, receiver):
    config = alerting_config([{"name": "oncall", "url": receiver.url("/hook"), "timeout": "1s"}])
    receiver.hold_next(1)
    enqueue_messages(outbox_store, [firing()], config)
    notifier = run_notifier(outbox_store, config)
    receiver.wait_for(1)
    notifier.stop()
    receiver.release()
    assert not any(t.name == "alert-notifier" for t in threading.enumerate())
    [row] = outbox_rows(outbox_store)
    assert row["delivered_at"] is None and row["failed_at"] is None  # sent again by the next start


def test_a_receiver_without_answer_is_tried_once_per_pass_and_holds_up_no_other(outbox_store, receiver):
    with WebhookReceiver() as healthy:
        config = alerting_config([{"name": "down", "url": receiver.url("/hook")},
                                  {"name": "up", "url": healthy.url("/hook")}])
        receiver.stop()
        enqueue_messages(outbox_store, [firing(f"slo-{i}") for i in range(3)], config)
        Notifier(outbox_store, config, Registry()).run_once()
        attempts = {(r["receiver"], r["attempts"]) for r in outbox_rows(outbox_store)}
        assert sorted(r["attempts"] for r in outbox_rows(outbox_store) if r["receiver"] == "down") == [0, 0, 1]
        assert ("up", 0) not in attempts and len(healthy.accepted()) == 3


def test_an_https_receiver_is_verified_against_the_configured_ca(outbox_store, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    with WebhookReceiver(tls=(str(cert), str(key))) as secure:
        unverified = alerting_config([{"name": "site", "url": secure.url("/hook")}])
        enqueue_messages(outbox_store, [firing()], unverified)
        Notifier(outbox_store, unverified, Registry()).run_once()
        [row] = outbox_rows(outbox_store)
        assert row["delivered_at"] is None and "CERTIFICATE_VERIFY_FAILED" in row["last_error"]
        trusted = alerting_config([{"name": "site", "url": secure.url("/hook"), "ca_file": str(cert)}])
        Notifier(outbox_store, trusted, Registry()).run_once(now=utc_now() + timedelta(minutes=1))
        assert outbox_rows(outbox_store)[0]["delivered_at"] is not None
        assert [r.json["status"] for r in secure.received()] == ["firing"]
