"""Drift alerts: a ticket while a model version's cohort is drifted, through the SLO alerts' lifecycle and notifier.

::

    alerts = DriftAlerts(window="1d")
    result = alerts.evaluate(read, start, end, notify_after=now - timedelta(minutes=15))
    result.changed, result.messages, result.transitions     # as the SLO evaluator's
    SloJob(store, specs, sli_jobs=[...], alert_providers=[ZeroToleranceAlerts(), alerts])

One alert per model, version and cohort, ``ModelDrift``, severity ticket,
no pending time: it fires at the end of a window whose dataset result
(``drift_results``, feature ``*``) is drifted (verdict retrain or
investigate) and resolves at the end of the next one that is not;
``insufficient_data`` changes nothing. Windows are the newest daily (``1d``,
the default) or hourly (``1h``) results the drift job has finished
(its watermark). Labels: ``model_name``, ``model_version`` and the
cohort's dimension (``site``, ...; none for the whole version); the
annotations name the drifted features with their indices and the verdict.
The alerts share the ``alerts`` table, the outbox and the notifier with
the SLO alerts (their ``slo`` column is ``drift``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta

from analytics.drift.jobs import DriftJob
from analytics.jobs.framework import Read
from analytics.slo.evaluator import (
    EvaluationResult,
    finish_provider_result,
    step_provider_alert,
)
from analytics.slo.lifecycle import (
    FIRING,
    PENDING,
    AlertKey,
    AlertState,
    ProviderAlerts,
)
from analytics.slo.payload import AlertMessage

DRIFT_SLO = "drift"
ALERT_NAME = "ModelDrift"
LOOKBACK = timedelta(days=2)  # results this old are still stepped when first seen (a catch-up)
MINUTE = timedelta(minutes=1)

RESULTS_SQL = """
SELECT d.model_name, d.model_version, d.cohort, d.window_start, d.window_end, d.status, d.verdict,
       d.drifted_features, d.reasons,
       list(struct_pack(name := f.feature, psi := f.psi, wasserstein := f.wasserstein, ks := f.ks,
                        jensen_shannon := f.jensen_shannon, chi_square := f.chi_square, linf := f.linf)
            ORDER BY f.severity DESC) FILTER (WHERE f.feature IS NOT NULL) AS features
FROM drift_results d
LEFT JOIN drift_results f ON f.window_start = d.window_start AND f.window_length = d.window_length
     AND f.model_name = d.model_name AND f.model_version = d.model_version AND f.cohort = d.cohort
     AND f.feature <> '*' AND f.status = 'drifted'
WHERE d.feature = '*' AND d.window_length = $length AND d.window_end > $since AND d.window_end <= $until
GROUP BY ALL ORDER BY d.window_end, d.model_name, d.model_version, d.cohort
"""


class DriftAlerts(ProviderAlerts):
    """Tickets on drifted model versions and cohorts; see the module docstring."""

    slo = DRIFT_SLO

    def __init__(self, window: str = "1d", repeat_interval: timedelta = timedelta(hours=24),
                 job: str = DriftJob.name) -> None:
        if window not in ("1h", "1d"):
            raise ValueError(f"drift alert window: 1h or 1d, got {window!r}")
        super().__init__("ticket", repeat_interval)
        self.window = window
        self.job = job

    def evaluate(self, read: Read, start: datetime, end: datetime, *,
                 notify_after: datetime | None = None) -> EvaluationResult:
        """Step every alert with the results finished by ``end`` it has not seen (at their window's end)."""
        result = EvaluationResult()
        done = read("SELECT watermark FROM job_state WHERE job = $job", {"job": self.job})
        until = min(end, done["watermark"][0].as_py()) if done.num_rows else None
        if until is None or until <= start - LOOKBACK:
            return result
        rows = read(RESULTS_SQL, {"length": self.window, "since": start - LOOKBACK, "until": until}).to_pylist()
        by_key: dict[AlertKey, list[dict]] = defaultdict(list)
        for row in rows:
            group = {"model_name": row["model_name"], "model_version": row["model_version"],
                     **{k: str(v) for k, v in json.loads(row["cohort"]).items()}}
            by_key[AlertKey.of(DRIFT_SLO, "ticket", group, {}, ALERT_NAME)].append(row)
        timed: list[tuple[datetime, str, AlertMessage]] = []
        for key in sorted(by_key, key=lambda k: k.fingerprint):
            state = self.alerts.get(key) or AlertState.new(key)
            for row in by_key[key]:
                seen = state.last_evaluated_at
                if seen is not None and row["window_end"] <= seen:
                    continue
                # A result finished after its window's end is judged at the first instant evaluated.
                at = max(row["window_end"], start + MINUTE)
                condition = None if row["status"] == "insufficient_data" else row["status"] == "drifted"
                if not condition and state.state not in (PENDING, FIRING):
                    continue  # nothing open: an ok or insufficient window changes nothing
                state = step_provider_alert(self.lifecycle, state, condition, at, notify_after, result, timed,
                                            lambda: _annotations(key, row))
            self.alerts[key] = state
        finish_provider_result(result, timed)
        return result


def _annotations(key: AlertKey, row: dict) -> dict[str, str]:
    group = dict(key.group)
    cohort = ", ".join(f"{k}={v}" for k, v in group.items() if k not in ("model_name", "model_version")) \
        or "the whole version"
    features = row.get("features") or []
    names = ", ".join(f["name"] for f in features) or "none"
    summary = (f"Model {group['model_name']} {group['model_version']} drifted in {cohort}: {names} "
               f"(verdict {row['verdict'] or 'insufficient data'})")
    indices = "; ".join(f"{f['name']}: " + ", ".join(f"{m} {f[m]:.3g}" for m in ("psi", "wasserstein", "ks",
                                                                                    "jensen_shannon", "linf")
                                                        if f.get(m) is not None)
                        for f in features)
    description = (f"{row['window_end'] - row['window_start']} window {row['window_start']:%Y-%m-%d %H:%M} to "
                   f"{row['window_end']:%Y-%m-%d %H:%M} UTC. {indices}. Reasons: " + " | ".join(row["reasons"] or []))
    return {"summary": summary, "description": description, "features": names,
            "verdict": row["verdict"] or "insufficient_data"}
