"""The notifier inside `fleetwatch serve`: kill -9 mid-POST, restart, and no receiver means no connection."""

from __future__ import annotations

from bench.harness import CollectorProcess, metric_value, wait_until
from tests.alerting_data import FAST, alerting_config, enqueue_messages, firing, open_store, outbox_rows
from tests.webhook_receiver import WebhookReceiver


def serve_config(alerting: dict) -> dict:
    return {"analytics": {"workers": 1}, "alerting": {**FAST, **alerting}}


def test_kill_9_mid_post_then_restart_delivers_the_pending_one_again_and_the_delivered_one_never(tmp_path):
    db = tmp_path / "fw.duckdb"
    with WebhookReceiver() as receiver:
        receivers = [{"name": "oncall", "url": receiver.url("/hook")}]
        first, second = firing(), firing("camera-freshness", {"site": "oslo"})
        store = open_store(db)
        enqueue_messages(store, [first, second], alerting_config(receivers))
        store.close()
        receiver.answer_next(1, 200)
        receiver.hold_next(1)  # the second POST gets no answer: the server dies while it waits
        central = CollectorProcess(db, config=serve_config({"receivers": receivers})).start()
        try:
            receiver.wait_for(2)
        finally:
            central.kill()
        receiver.release()

        with CollectorProcess(db, config=serve_config({"receivers": receivers})) as central:
            wait_until(lambda: len(receiver.received()) >= 3, 60, "the resent notification")
            wait_until(lambda: metric_value(central.metrics_text(), "fleetwatch_alert_notifications_total",
                                            outcome="delivered") == 1, 30, "the delivery counted")
            wait_until(lambda: metric_value(central.metrics_text(), "fleetwatch_alert_outbox_pending") == 0, 30,
                       "the pending gauge to drop")  # it is read at the start of each pass
        fingerprints = [r.json["alerts"][0]["fingerprint"] for r in receiver.received()]
        assert fingerprints == [first.state.key.fingerprint] + [second.state.key.fingerprint] * 2
        store = open_store(db)
        try:
            assert all(row["delivered_at"] is not None for row in outbox_rows(store))
        finally:
            store.close()


def test_without_receivers_serve_starts_no_notifier_and_sends_nothing(tmp_path):
    db = tmp_path / "fw.duckdb"
    with WebhookReceiver() as receiver:
        # A row left by an earlier config that had this receiver: with none configured now, it stays put.
        store = open_store(db)
        enqueue_messages(store, [firing()], alerting_config([{"name": "oncall", "url": receiver.url("/hook")}]))
        store.close()
        with CollectorProcess(db, config=serve_config({"external_url": "http://127.0.0.1:4319"})) as central:
            text = central.metrics_text()
            assert "fleetwatch_alert_notifications_total" not in text
            assert "fleetwatch_alert_outbox_pending" not in text
        assert receiver.received() == []
