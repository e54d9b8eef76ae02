"""Alerts, configs and outbox reads for the notifier's tests (real Store, real sockets)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from analytics.schema import ANALYTICS
from analytics.slo.alerting_config import AlertingConfig
from analytics.slo.lifecycle import FIRING, RESOLVED, AlertKey, AlertState
from analytics.slo.outbox import deliveries_for, enqueue, utc_now
from analytics.slo.payload import AlertMessage
from collector.config import config_from_dict
from collector.store.database import Store
from collector.store.versions import COLLECTOR

# Small retry settings and a fast poll: tests wait on conditions, never on durations.
FAST = {"retry": {"initial": "50ms", "max": "200ms"}, "poll_interval": "50ms"}


def alerting_config(receivers: list[dict], **overrides) -> AlertingConfig:
    """The ``alerting`` section as a YAML file would give it, with :data:`FAST` delivery settings."""
    return config_from_dict({"alerting": {"receivers": receivers, **FAST, **overrides}}).section("alerting")


def open_store(path) -> Store:
    store = Store(str(path), migrations=[COLLECTOR, ANALYTICS])
    store.open()
    return store


def firing(slo: str = "detector-success", group: dict[str, str] | None = None, severity: str = "page",
           at: datetime | None = None) -> AlertMessage:
    at = at or utc_now()
    key = AlertKey.of(slo, severity, group or {"model": "detector", "site": "lyon"})
    state = AlertState(key, FIRING, opened_at=at - timedelta(minutes=2), starts_at=at, last_evaluated_at=at,
                       last_notified_at=at, notified_firing=True)
    return AlertMessage(state, {"summary": f"{slo} is burning its error budget"})


def resolved(message: AlertMessage, at: datetime | None = None) -> AlertMessage:
    at = at or utc_now()
    return AlertMessage(dataclasses.replace(message.state, state=RESOLVED, ends_at=at, last_evaluated_at=at),
                        message.annotations)


def enqueue_messages(store: Store, messages: list[AlertMessage], config: AlertingConfig,
                     now: datetime | None = None) -> int:
    """Enqueue as the evaluator does: on the write thread, in one transaction."""
    def write(con):
        with Store.transaction(con):
            return enqueue(con, deliveries_for(messages, config), now=now)
    return store.submit(write).result()


def outbox_rows(store: Store) -> list[dict]:
    return store.reads.run("SELECT * FROM alert_outbox ORDER BY id", max_rows=10_000, timeout=30).table.to_pylist()
