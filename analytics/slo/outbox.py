"""The alert outbox: notifications written with the alerts they announce, delivered later by the notifier.

The evaluator enqueues inside the write transaction that records the
``alerts`` rows, so a crash can never keep an alert without its
notification or the reverse::

    deliveries = deliveries_for(messages, alerting_config)   # one per receiver x alert
    with Store.transaction(con):
        ...write the alerts rows...
        enqueue(con, deliveries, now=now)

The :class:`~analytics.slo.notifier.Notifier` then reads due rows
(:data:`DUE_SQL`), POSTs them and records each outcome with the
``mark_*`` functions, on the store's write thread. A row is pending until
it is delivered (a 2xx), failed (a permanent refusal such as 400) or
expired (still undelivered ``give_up_after`` after it was enqueued); a
pending row waits for every older pending row of the same receiver and
fingerprint, so a resolved notification never overtakes its firing one.
An Alertmanager's firing alert is posted again every
``alertmanager_resend_interval`` while it is its alert's newest row
(:data:`RESEND_SQL`), so Alertmanager does not resolve it by timeout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa

from analytics.slo.alerting_config import AlertingConfig
from analytics.slo.payload import AlertMessage, api_v2_alerts, webhook_payload

OUTBOX_DDL = [
    "CREATE SEQUENCE IF NOT EXISTS alert_outbox_id",
    """
CREATE TABLE IF NOT EXISTS alert_outbox (
    id BIGINT PRIMARY KEY DEFAULT nextval('alert_outbox_id'),   -- enqueue order
    created_at TIMESTAMP NOT NULL,
    receiver VARCHAR NOT NULL,           -- the alerting.receivers name
    url VARCHAR NOT NULL,                -- where it is POSTed
    kind VARCHAR NOT NULL,               -- webhook | alertmanager
    fingerprint VARCHAR NOT NULL,        -- the alert's; delivery is in order per receiver and fingerprint
    status VARCHAR NOT NULL,             -- firing | resolved
    body VARCHAR NOT NULL,               -- the JSON POSTed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    delivered_at TIMESTAMP,              -- set only after a 2xx answer
    failed_at TIMESTAMP,                 -- a permanent refusal (4xx but 408 and 429): not retried
    expired_at TIMESTAMP,                -- given up after alerting.give_up_after
    last_error VARCHAR                   -- the latest failed attempt, one line
)
""",
]



def _pending(alias: str = "") -> str:
    """The condition of a row that is neither delivered, failed nor expired."""
    prefix = f"{alias}." if alias else ""
    return " AND ".join(f"{prefix}{column} IS NULL" for column in ("delivered_at", "failed_at", "expired_at"))


PENDING = _pending()

# Due rows, oldest first, each only once no older row of its receiver and fingerprint is pending.
DUE_SQL = f"""
SELECT o.id, o.created_at, o.receiver, o.url, o.kind, o.fingerprint, o.status, o.body, o.attempts
FROM alert_outbox o
WHERE {_pending('o')} AND o.next_attempt_at <= $now
  AND NOT EXISTS (SELECT 1 FROM alert_outbox p
                  WHERE p.receiver = o.receiver AND p.fingerprint = o.fingerprint AND p.id < o.id
                    AND {_pending('p')})
ORDER BY o.id
"""

# An Alertmanager forgets a firing alert posted without endsAt after its resolve_timeout (5m by
# default): the newest notification of each alert, if it is a delivered firing one, is posted
# again whenever its next_attempt_at (the resend time) comes.
RESEND_SQL = """
SELECT o.id, o.receiver, o.url, o.fingerprint, o.body
FROM alert_outbox o
WHERE o.kind = 'alertmanager' AND o.status = 'firing' AND o.delivered_at IS NOT NULL AND o.next_attempt_at <= $now
  AND NOT EXISTS (SELECT 1 FROM alert_outbox n WHERE n.receiver = o.receiver AND n.fingerprint = o.fingerprint
                  AND n.id > o.id)
ORDER BY o.id
"""

# One row for the gauges and housekeeping: pending rows, the oldest pending, the oldest finished.
STATS_SQL = f"""
SELECT count(*) FILTER (WHERE {PENDING}) AS pending,
       min(created_at) FILTER (WHERE {PENDING}) AS oldest_pending,
       min(coalesce(delivered_at, failed_at, expired_at)) FILTER (WHERE NOT ({PENDING})) AS oldest_finished
FROM alert_outbox
"""

ERROR_EXCERPT = 300


@dataclass(frozen=True)
class Delivery:
    """One notification to one receiver: what to POST where, for which alert."""

    receiver: str
    url: str
    kind: str
    fingerprint: str
    status: str
    body: str


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def deliveries_for(messages: list[AlertMessage], config: AlertingConfig) -> list[Delivery]:
    """Per configured receiver and message, the body it takes; none without receivers.

    A webhook gets one alert per body, grouped by the alert's SLO, severity
    and group dimensions, so its ``groupKey`` is stable per alert; an
    Alertmanager gets the v2 list with that one alert.
    """
    deliveries = []
    for receiver in config.receivers:
        payload = config.payload(receiver)
        for message in messages:
            key = message.state.key
            if receiver.kind == "alertmanager":
                body = api_v2_alerts([message], payload)
            else:
                body = webhook_payload([message], payload,
                                       group_labels={**dict(key.group), "slo": key.slo, "severity": key.severity})
            deliveries.append(Delivery(receiver.name, receiver.post_url, receiver.kind, key.fingerprint,
                                       message.state.state, json.dumps(body, separators=(",", ":"))))
    return deliveries


def enqueue(con: duckdb.DuckDBPyConnection, deliveries: list[Delivery], now: datetime | None = None) -> int:
    """Insert ``deliveries``, due at once, in the caller's transaction (it commits or rolls back); returns the count."""
    if not deliveries:
        return 0
    now = now or utc_now()
    columns = ("receiver", "url", "kind", "fingerprint", "status", "body")
    # One Arrow append, not executemany (about 2k rows/s): an outage can fire many groups at once.
    new_rows = pa.table({**{c: pa.array([getattr(d, c) for d in deliveries], pa.string()) for c in columns},
                         "written_at": pa.array([now] * len(deliveries), pa.timestamp("us"))})
    con.register("new_outbox_rows", new_rows)
    try:
        con.execute(f"INSERT INTO alert_outbox (created_at, next_attempt_at, {', '.join(columns)}) "
                    f"SELECT written_at, written_at, {', '.join(columns)} FROM new_outbox_rows")
    finally:
        con.unregister("new_outbox_rows")
    return len(deliveries)


def mark_delivered(con: duckdb.DuckDBPyConnection, row_id: int, now: datetime, resend_at: datetime) -> None:
    """A 2xx: ``delivered_at`` is the latest one; ``resend_at`` matters only to :data:`RESEND_SQL`."""
    con.execute("UPDATE alert_outbox SET delivered_at = ?, attempts = attempts + 1, next_attempt_at = ? "
                "WHERE id = ?", [now, resend_at, row_id])


def mark_resend_failed(con: duckdb.DuckDBPyConnection, row_id: int, resend_at: datetime, error: str) -> None:
    con.execute("UPDATE alert_outbox SET next_attempt_at = ?, last_error = ? WHERE id = ?",
                [resend_at, error[:ERROR_EXCERPT], row_id])


def mark_failed(con: duckdb.DuckDBPyConnection, row_id: int, now: datetime, error: str) -> None:
    con.execute("UPDATE alert_outbox SET failed_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                [now, error[:ERROR_EXCERPT], row_id])


def mark_retry(con: duckdb.DuckDBPyConnection, row_id: int, next_attempt_at: datetime, error: str) -> None:
    con.execute("UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
                [next_attempt_at, error[:ERROR_EXCERPT], row_id])


def expire(con: duckdb.DuckDBPyConnection, now: datetime, give_up_after: timedelta) -> list[str]:
    """Mark pending rows enqueued ``give_up_after`` or longer ago expired; returns their receivers, one per row."""
    rows = con.execute(f"UPDATE alert_outbox SET expired_at = ? WHERE {PENDING} AND created_at <= ? "
                       "RETURNING receiver", [now, now - give_up_after]).fetchall()
    return [receiver for (receiver,) in rows]


def prune(con: duckdb.DuckDBPyConnection, now: datetime, retention: timedelta) -> int:
    """Delete rows delivered, failed or expired more than ``retention`` ago; returns how many."""
    rows = con.execute(f"DELETE FROM alert_outbox WHERE NOT ({PENDING}) "
                       "AND coalesce(delivered_at, failed_at, expired_at) < ? RETURNING id",
                       [now - retention]).fetchall()
    return len(rows)
