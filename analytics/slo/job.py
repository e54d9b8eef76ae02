"""The live SLO evaluation: every minute, in the process that owns the file, through the store.

::

    job = SloJob(store, specs, sli_jobs=["slo_sli_minute", "slo_freshness_minute"],
                 enqueue=outbox_enqueue)          # enqueue(con, messages) inside the write transaction
    job.run_due()                                 # what APScheduler calls every 20 s

Each call evaluates every minute the SLI jobs have finished since the last
one (:class:`~analytics.slo.evaluator.SloEvaluator`), oldest first, a day
at most per write, and commits per chunk in ONE transaction: the changed
``alerts`` rows, the chunk's ``slo_evaluations`` rows, the notifications
(through ``enqueue``), the evaluation watermark and a ``job_runs`` row. So
``kill -9`` at any moment leaves every chunk evaluated once or not at all,
and a restart carries on from the watermark with the alert states of the
file: no alert twice, no minute skipped.

What is announced: firing only for instants within ``notify_window`` of the
wall clock (catching up on a day of history pages nobody for what ended
hours ago; an alert that still fires is announced at the first recent
instant); a resolution always, if its firing was announced.

Late data: SLI minutes behind the evaluation watermark that the SLI jobs
recompute (``job_runs`` rows with reason ``late-data``) change the window
sums from then on; instants already evaluated are not re-evaluated (an
alert is a decision taken at its time; ``fleetwatch slo backtest`` shows
what the completed data says).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Protocol

import duckdb

from analytics.slo.evaluator import EvaluationResult, SloEvaluator
from analytics.slo.lifecycle import (
    FIRING,
    PENDING,
    RESOLVED,
    AlertState,
    LifecycleConfig,
)
from analytics.slo.payload import AlertMessage
from analytics.slo.sli_job import sli_table
from analytics.slo.spec import SloSpec
from analytics.times import utc_naive
from collector.store.database import Store

log = logging.getLogger("fleetwatch.slo")

Enqueue = Callable[[duckdb.DuckDBPyConnection, list[AlertMessage]], int]


class AlertProvider(Protocol):
    """Alerts outside the SLOs stepped at the same instants, their ``alerts`` rows tagged with ``slo``
    (analytics.health.alerts.ZeroToleranceAlerts, analytics.drift.alerts.DriftAlerts)."""

    slo: str

    def load_states(self, rows: list[dict]) -> None: ...
    def reset(self) -> None: ...
    def evaluate(self, read, start: datetime, end: datetime, *, notify_after: datetime | None) -> EvaluationResult: ...

JOB_NAME = "slo_evaluate"
ALERT_COLUMNS = ("fingerprint", "opened_at", "slo", "severity", "group_labels", "labels", "state", "starts_at",
                 "ends_at", "last_evaluated_at", "last_notified_at", "notified_firing", "inhibited")


class SloJob:
    """Evaluates SLOs (and the alert providers: zero-tolerance, drift) minute by minute behind the SLI jobs; see the module docstring."""

    name = JOB_NAME
    window = timedelta(minutes=1)

    def __init__(self, store: Store, specs: Sequence[SloSpec], *, sli_jobs: Sequence[str],
                 lifecycle: LifecycleConfig | None = None, enqueue: Enqueue | None = None,
                 alert_providers: Sequence[AlertProvider] = (),
                 notify_window: timedelta = timedelta(minutes=15), detail: timedelta = timedelta(days=2),
                 query_timeout: float = 300.0, max_backoff: float = 600.0) -> None:
        self.store = store
        self.specs = list(specs)
        self.sli_jobs = list(sli_jobs)
        self.evaluator = SloEvaluator(self.specs, lifecycle)
        self.providers = list(alert_providers)
        self.enqueue = enqueue
        self.notify_window = notify_window
        self.detail = detail
        self.query_timeout = query_timeout
        self.max_backoff = max_backoff
        self.on_run: Callable[[str, str, float], None] | None = None
        self._loaded = False
        self._watermark: datetime | None = None
        self._late_seen: datetime | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._pruned_at: datetime | None = None

    @property
    def after(self) -> list[str]:
        """The jobs it evaluates behind: the scheduler runs it as soon as one of them has run."""
        return self.sli_jobs

    @property
    def watermark(self) -> datetime | None:
        """The newest instant evaluated (None: never ran)."""
        return self._watermark

    def _read(self, sql: str, params: dict | None = None):
        assert self.store.reads is not None
        return self.store.reads.run(sql, params or None, max_rows=50_000_000, timeout=self.query_timeout,
                                    max_bytes=2**40).table

    def _load(self) -> None:
        row = self._read("SELECT watermark FROM job_state WHERE job = $job", {"job": JOB_NAME})
        self._watermark = row["watermark"][0].as_py() if row.num_rows else None
        self.evaluator.reset()
        alerts = self._read(f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts").to_pylist()
        self.evaluator.load_states(alerts)
        for provider in self.providers:
            provider.reset()
            provider.load_states(alerts)
        self._late_seen = self._read(
            "SELECT max(finished_at) AS f FROM job_runs WHERE job IN (SELECT unnest($jobs))",
            {"jobs": self.sli_jobs})["f"][0].as_py()
        self._resolve_orphans(alerts)
        self._loaded = True

    def _resolve_orphans(self, rows: list[dict]) -> None:
        """Resolve the open alerts of SLOs no longer in the file: nothing would ever resolve them."""
        known = {spec.name for spec in self.specs} | {provider.slo for provider in self.providers}
        orphans = [AlertState.from_row(r) for r in rows
                   if r["slo"] not in known and r["state"] in (PENDING, FIRING)]
        if not orphans:
            return
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        result = EvaluationResult()
        for alert in orphans:
            if alert.state == PENDING:
                result.dropped.add((alert.key.fingerprint, alert.opened_at))
                continue
            resolved = dataclasses.replace(alert, state=RESOLVED, ends_at=now, last_evaluated_at=now)
            result.changed[(alert.key.fingerprint, alert.opened_at)] = resolved
            if alert.notified_firing:
                result.messages.append(AlertMessage(resolved, {
                    "summary": f"SLO {alert.key.slo} is no longer in the SLO file: its alert is resolved",
                    "description": "The SLO was removed or renamed; nothing evaluates it any more."}))
        log.info("resolved %d alert(s) of SLOs no longer in the SLO file", len(result.changed))

        def write(con: duckdb.DuckDBPyConnection) -> None:
            with Store.transaction(con):
                _write_alerts(con, result)
                if self.enqueue is not None and result.messages:
                    self.enqueue(con, result.messages)

        self.store.submit(write).result()

    def _sli_done(self) -> datetime | None:
        """The instant up to which every SLI job has computed its minutes (None: one has not run)."""
        rows = self._read("SELECT job, watermark FROM job_state WHERE job IN (SELECT unnest($jobs))",
                          {"jobs": self.sli_jobs})
        marks = dict(zip(rows["job"].to_pylist(), rows["watermark"].to_pylist()))
        if any(marks.get(job) is None for job in self.sli_jobs):
            return None
        return min(marks.values())

    def _first_instant(self) -> datetime | None:
        if not self.specs:  # zero-tolerance alerts only: from the first span
            return self._read("SELECT min(minute) AS m FROM ingest_marks WHERE table_name = 'span_rows'")["m"][0].as_py()
        tables = sorted({sli_table(s) for s in self.specs})
        union = " UNION ALL ".join(f"SELECT min(window_start) AS m FROM {t} WHERE slo IN (SELECT unnest($names))"
                                   for t in tables)
        return self._read(f"SELECT min(m) AS m FROM ({union})", {"names": [s.name for s in self.specs]})["m"][0].as_py()

    def _check_late_data(self) -> None:
        late = self._read(
            "SELECT max(finished_at) AS f, min(window_start) AS w FROM job_runs WHERE job IN (SELECT unnest($jobs)) "
            "AND reason = 'late-data' AND outcome = 'ok' AND finished_at > coalesce($seen, TIMESTAMP '1970-01-01')",
            {"jobs": self.sli_jobs, "seen": self._late_seen})
        finished, first = late["f"][0].as_py(), late["w"][0].as_py()
        if finished is None:
            return
        self._late_seen = finished
        if self._watermark is not None and first < self._watermark:
            log.info("late SLI data from %s: window sums rebuilt", first.isoformat())
            self.evaluator.reset_sums()

    def run_due(self, now: datetime | None = None) -> list[tuple[datetime, datetime]]:
        """Evaluate every instant the SLI jobs have completed; returns the chunks evaluated."""
        if time.monotonic() < self._retry_at:
            return []
        now = utc_naive(now or datetime.now(timezone.utc))
        done: list[tuple[datetime, datetime]] = []
        try:
            if not self._loaded:
                self._load()
            self._check_late_data()
            until = self._sli_done()
            start = self._watermark
            if start is None and until is not None:
                start = self._first_instant()
            if until is None or start is None or start >= until:
                return done
            total = until - start
            if total > self.evaluator.max_chunk:
                log.info("slo evaluation catching up on %s from %s", total, start.isoformat())
            while start < until:
                end = min(start + self.evaluator.max_chunk, until)
                self._evaluate_chunk(start, end, now)
                done.append((start, end))
                start = end
        except Exception as exc:
            self._failures += 1
            backoff = min(self.max_backoff, 2.0 ** min(self._failures, 20))
            self._retry_at = time.monotonic() + backoff
            self._loaded = False  # the file is the truth: reload states and sums
            log.error("slo evaluation failed (attempt %d, next try in %.0f s): %.300s", self._failures, backoff, exc)
            self._count("failed", 0.0)
            return done
        self._failures = 0
        return done

    def _evaluate_chunk(self, start: datetime, end: datetime, now: datetime) -> None:
        started = datetime.now(timezone.utc).replace(tzinfo=None)
        clock = time.perf_counter()
        detail_since = now - self.detail
        result = self.evaluator.evaluate(self._read, start, end, notify_after=now - self.notify_window,
                                         keep_evaluations=lambda t: t >= detail_since or t.minute == 0)
        for provider in self.providers:
            result.merge(provider.evaluate(self._read, start, end, notify_after=now - self.notify_window))
        evaluations = result.evaluation_table()
        prune = self._pruned_at is None or now - self._pruned_at >= timedelta(hours=1)

        def write(con: duckdb.DuckDBPyConnection) -> None:
            with Store.transaction(con):
                _write_alerts(con, result)
                if evaluations is not None and evaluations.num_rows:
                    con.register("evaluations", evaluations)
                    try:
                        con.execute("INSERT INTO slo_evaluations BY NAME SELECT * FROM evaluations")
                    finally:
                        con.unregister("evaluations")
                if prune:  # hourly: minutes older than the detail kept become their hours only
                    con.execute("DELETE FROM slo_evaluations WHERE evaluated_at < ? AND minute(evaluated_at) <> 0",
                                [detail_since])
                if self.enqueue is not None and result.messages:
                    self.enqueue(con, result.messages)
                con.execute("INSERT INTO job_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ok', NULL)",
                            [JOB_NAME, start, end, "scheduled", started,
                             datetime.now(timezone.utc).replace(tzinfo=None), len(result.changed),
                             0 if evaluations is None else evaluations.num_rows])
                con.execute("INSERT OR REPLACE INTO job_state VALUES (?, ?, 0, current_timestamp)", [JOB_NAME, end])

        self.store.submit(write).result()
        if prune:
            self._pruned_at = now
        self._watermark = end
        for message in result.messages:
            log.info("alert %s %s %s", message.state.state, message.state.key.labels, message.annotations.get("summary"))
        self._count("ok", time.perf_counter() - clock)

    def _count(self, outcome: str, seconds: float) -> None:
        if self.on_run is not None:
            self.on_run(JOB_NAME, outcome, seconds)


def _write_alerts(con: duckdb.DuckDBPyConnection, result: EvaluationResult) -> None:
    """Upsert the changed alert episodes and delete pending ones that never fired."""
    keys = [*result.dropped, *result.changed]
    for fingerprint, opened in keys:
        con.execute("DELETE FROM alerts WHERE fingerprint = ? AND opened_at = ?", [fingerprint, opened])
    rows = [state.to_row() for state in result.changed.values()]
    if rows:
        placeholders = ", ".join("?" for _ in ALERT_COLUMNS)
        con.executemany(f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES ({placeholders})",
                        [[row[c] for c in ALERT_COLUMNS] for row in rows])

