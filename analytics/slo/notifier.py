"""The notifier: delivers the alert outbox to the configured receivers, at least once, across restarts.

::

    notifier = Notifier(store, alerting_config, registry)   # collector.selfmetrics.Registry
    notifier.start()      # a background thread; resumes whatever a previous process left pending
    ...
    notifier.stop()       # finishes (or abandons) the POST in flight within the receiver's timeout

Every ``poll_interval`` it reads the due rows (:data:`analytics.slo.outbox.DUE_SQL`)
through ``store.reads`` and POSTs them one after another (JSON, ``User-Agent:
fleetwatch/<version>``, the receiver's bearer token, its timeout). Outcomes,
each written through ``store.submit`` and counted in
``fleetwatch_alert_notifications_total{receiver,outcome}``:

- a 2xx: ``delivered`` (only then: a crash before it means one more POST, never none);
- 408, 429, 5xx, a refused or timed-out connection: ``retry``, next attempt after
  ``retry.initial`` doubled per failure up to ``retry.max`` (or the receiver's
  ``Retry-After``, up to ``retry.max``);
- any other status (400, 401, 404, a redirect): ``failed``, with the status and the
  start of the answer in ``last_error``; repeating the same request would not help;
- still pending ``give_up_after`` after it was enqueued: ``expired``;
- an Alertmanager's delivered firing alert, still its alert's newest notification, is
  posted again every ``alertmanager_resend_interval``: ``resent`` (or ``resend_failed``,
  tried again after ``retry.initial``), so Alertmanager never resolves it by timeout.

Gauges: ``fleetwatch_alert_outbox_pending`` and ``fleetwatch_alert_outbox_oldest_pending_seconds``.
Finished rows are deleted ``retention`` after they finished. One thread sends
sequentially; a receiver that gives no answer (refused, timed out) is not
tried again in the same pass, so it delays the others by at most one
timeout per pass.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
import urllib.parse
from datetime import datetime, timedelta

from analytics.slo import outbox
from analytics.slo.alerting_config import AlertingConfig, ReceiverConfig
from collector.selfmetrics import Registry
from collector.store.database import Store

log = logging.getLogger("fleetwatch.alerting")

USER_AGENT = "fleetwatch/0.1.0"
DUE_BATCH = 100
READ_TIMEOUT = 30.0


class Notifier:
    """Delivers due outbox rows in a background thread; see the module docstring."""

    def __init__(self, store: Store, config: AlertingConfig, registry: Registry) -> None:
        config.validate()
        self.store = store
        self.config = config
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight: http.client.HTTPConnection | None = None
        self._oldest_pending: datetime | None = None
        self.outcomes = registry.counter(
            "fleetwatch_alert_notifications_total",
            "Alert notification attempts by receiver and outcome: delivered, retry (a failed attempt that will be "
            "retried), failed (refused for good, e.g. HTTP 400), expired (undelivered after give_up_after), "
            "resent and resend_failed (firing alerts posted to an Alertmanager again).",
            ["receiver", "outcome"])
        self.pending = registry.gauge("fleetwatch_alert_outbox_pending",
                                      "Alert notifications not yet delivered, failed or expired.")
        registry.gauge_callback("fleetwatch_alert_outbox_oldest_pending_seconds",
                                "Age of the oldest alert notification not yet delivered (0 when none).",
                                self._oldest_pending_seconds)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the notifier is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="alert-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; wait for the POST in flight up to its receiver's timeout, then cut it off."""
        if self._thread is None:
            return
        self._stop.set()
        longest = max((r.timeout for r in self.config.receivers), default=0.0)
        self._thread.join(longest + 1.0)
        if self._thread.is_alive():
            connection = self._in_flight
            if connection is not None:
                connection.close()  # the row stays pending: the next start sends it again
            self._thread.join(5.0)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # a failed read or write: log it, keep the thread, try again next poll
                log.warning("alert notifier pass failed: %.300s", exc)
            self._stop.wait(self.config.poll_interval)

    # -- one pass --------------------------------------------------------
    def run_once(self, now: datetime | None = None) -> int:
        """Expire and prune what is due, then try every due row once; returns how many were delivered."""
        now = now or outbox.utc_now()
        self._housekeeping(now)
        due = self.store.reads.run(outbox.DUE_SQL, {"now": now}, max_rows=DUE_BATCH,
                                   timeout=READ_TIMEOUT).table.to_pylist()
        delivered, unreachable = 0, set()
        for row in due:
            if self._stop.is_set():
                break
            if row["receiver"] in unreachable:
                continue  # one timeout per pass for a receiver that does not answer, not one per row
            status = self._attempt(row)
            delivered += status is not None and 200 <= status < 300
            if status is None:
                unreachable.add(row["receiver"])
        if not any(r.kind == "alertmanager" for r in self.config.receivers):
            return delivered
        resends = self.store.reads.run(outbox.RESEND_SQL, {"now": now}, max_rows=DUE_BATCH,
                                       timeout=READ_TIMEOUT).table.to_pylist()
        for row in resends:
            if self._stop.is_set():
                break
            self._resend(row)
        return delivered

    def _housekeeping(self, now: datetime) -> None:
        stats = self.store.reads.run(outbox.STATS_SQL, max_rows=1, timeout=READ_TIMEOUT).table.to_pylist()[0]
        self._oldest_pending = stats["oldest_pending"]
        give_up = timedelta(seconds=self.config.give_up_after)
        expired: list[str] = []
        if stats["oldest_pending"] is not None and stats["oldest_pending"] <= now - give_up:
            expired = self.store.submit(lambda con: outbox.expire(con, now, give_up)).result()
            for receiver in expired:
                self.outcomes.inc(receiver=receiver, outcome="expired")
                log.warning("alert notification to %s expired: undelivered after %s", receiver, give_up)
        # Set after expiring: an expired row is no longer pending, whenever /metrics is read.
        self.pending.set(stats["pending"] - len(expired))
        retention = timedelta(seconds=self.config.retention)
        if stats["oldest_finished"] is not None and stats["oldest_finished"] < now - retention:
            self.store.submit(lambda con: outbox.prune(con, now, retention)).result()

    def _attempt(self, row: dict) -> int | None:
        """Send one due row and record the outcome; returns the HTTP status (None: no answer)."""
        receiver, status, error, retry_after = self._send(row)
        now, row_id = outbox.utc_now(), row["id"]
        if error is None:
            self._delivered(row_id, now)
            self.outcomes.inc(receiver=receiver.name, outcome="delivered")
            return status
        if status is not None and status < 500 and status not in (408, 429):
            self.store.submit(lambda con: outbox.mark_failed(con, row_id, now, error)).result()
            self.outcomes.inc(receiver=receiver.name, outcome="failed")
            log.error("alert notification to %s refused, not retried: %.300s", receiver.name, error)
            return status
        delay = self.config.retry.delay(row["attempts"] + 1)
        if retry_after is not None:
            delay = min(max(delay, retry_after), self.config.retry.max)
        next_at = now + timedelta(seconds=delay)
        self.store.submit(lambda con: outbox.mark_retry(con, row_id, next_at, error)).result()
        self.outcomes.inc(receiver=receiver.name, outcome="retry")
        log.warning("alert notification to %s failed (attempt %d), retrying in %.0f s: %.300s",
                    receiver.name, row["attempts"] + 1, delay, error)
        return status

    def _resend(self, row: dict) -> None:
        """Post a delivered firing alert to its Alertmanager again; a failure is tried again after ``retry.initial``."""
        receiver, _, error, _ = self._send(row)
        now, row_id = outbox.utc_now(), row["id"]
        if error is None:
            self._delivered(row_id, now)
            self.outcomes.inc(receiver=receiver.name, outcome="resent")
            return
        resend_at = now + timedelta(seconds=self.config.retry.initial)
        self.store.submit(lambda con: outbox.mark_resend_failed(con, row_id, resend_at, error)).result()
        self.outcomes.inc(receiver=receiver.name, outcome="resend_failed")

    def _delivered(self, row_id: int, now: datetime) -> None:
        resend_at = now + timedelta(seconds=self.config.alertmanager_resend_interval)
        self.store.submit(lambda con: outbox.mark_delivered(con, row_id, now, resend_at)).result()

    def _send(self, row: dict) -> tuple[ReceiverConfig, int | None, str | None, float | None]:
        """POST one row; returns its receiver, the status, the error (None after a 2xx) and Retry-After."""
        # A receiver since removed from the config is still tried, at its stored URL with defaults.
        receiver = self.config.receiver(row["receiver"]) or ReceiverConfig(name=row["receiver"], url=row["url"])
        status, answer, retry_after = self._post(receiver, row["url"], row["body"])
        if status is not None and 200 <= status < 300:
            return receiver, status, None, retry_after
        error = answer if status is None else f"HTTP {status}: {' '.join(answer.split())}"
        return receiver, status, error, retry_after

    def _post(self, receiver: ReceiverConfig, url: str, body: str) -> tuple[int | None, str, float | None]:
        """POST ``body``; returns (status or None when no answer came, answer excerpt or error, Retry-After s)."""
        parts = urllib.parse.urlsplit(url)
        # http.client, not urllib: no proxy from the environment, no redirects, only the configured host.
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=receiver.ca_file)
            connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=receiver.timeout,
                                                     context=context)
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=receiver.timeout)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        try:
            token = receiver.bearer_token()
        except OSError as exc:
            return None, f"cannot read {receiver.bearer_token_file}: {exc.strerror}", None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._in_flight = connection
        try:
            connection.request("POST", path, body=body.encode(), headers=headers)
            response = connection.getresponse()
            answer = response.read(outbox.ERROR_EXCERPT).decode("utf-8", "replace")
            return response.status, answer, _retry_after(response.getheader("Retry-After"))
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}", None
        finally:
            self._in_flight = None
            connection.close()

    def _oldest_pending_seconds(self) -> float:
        oldest = self._oldest_pending
        return 0.0 if oldest is None else max(0.0, (outbox.utc_now() - oldest).total_seconds())


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored: backoff applies)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
