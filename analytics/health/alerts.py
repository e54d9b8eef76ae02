"""Zero-tolerance alerts: any failed model load or integrity check pages, through the SLO alerts' lifecycle.

::

    alerts = ZeroToleranceAlerts()
    result = alerts.evaluate(read, start, end, notify_after=now - timedelta(minutes=15))
    result.changed, result.messages, result.transitions     # as the SLO evaluator's

Per device, model, version and kind (``load_failed``, ``integrity_failed``)
one alert, ``ModelLoadFailure`` or ``ModelIntegrityFailure``, severity
page, with no pending time: it fires at the first instant after a failure
and resolves :data:`HOLD` after the last one. A device that loads a model
whose signature does not verify is running something nobody shipped, or
nothing at all; there is no budget to spend first. The alerts share the
``alerts`` table, the outbox and the notifier with the SLO alerts (their
``slo`` column is ``zero-tolerance``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from analytics.health.failures import failure_events
from analytics.jobs.framework import Read, floor_time
from analytics.slo.evaluator import (
    EvaluationResult,
    finish_provider_result,
    step_provider_alert,
)
from analytics.slo.lifecycle import (
    FIRING,
    ZERO_TOLERANCE_SLO,
    AlertKey,
    AlertState,
    ProviderAlerts,
)
from analytics.slo.payload import AlertMessage, format_duration

HOLD = timedelta(hours=1)  # a failure keeps its alert firing this long
MINUTE = timedelta(minutes=1)
ALERT_NAMES = {"integrity_failed": "ModelIntegrityFailure", "load_failed": "ModelLoadFailure"}
WHAT = {"integrity_failed": "failed its integrity check (signature or checksum)", "load_failed": "failed to load"}


class ZeroToleranceAlerts(ProviderAlerts):
    """Alerts on every failed model load and integrity check; see the module docstring."""

    slo = ZERO_TOLERANCE_SLO

    def __init__(self, repeat_interval: timedelta = timedelta(hours=4)) -> None:
        super().__init__("page", repeat_interval)

    def evaluate(self, read: Read, start: datetime, end: datetime, *,
                 notify_after: datetime | None = None) -> EvaluationResult:
        """Step every alert at the instants ``start + 1m .. end`` (as :class:`SloEvaluator.evaluate`)."""
        result = EvaluationResult()
        failures: dict[AlertKey, list[datetime]] = defaultdict(list)
        details: dict[AlertKey, dict] = {}
        events = failure_events(read, start - HOLD, end)
        # Event times carry nanoseconds, which to_pylist cannot make datetimes of; the alert needs the minute.
        at = events.schema.get_field_index("event_time")
        events = events.set_column(at, "event_time", pc.cast(events["event_time"], pa.timestamp("us"), safe=False))
        for row in events.to_pylist():
            group = {"device_id": row["device_id"] or "", "model_name": row["model_name"] or "",
                     "model_version": row["model_version"] or ""}
            labels = {k: row[k] for k in ("site", "region", "device_class") if row[k]}
            key = AlertKey.of(ZERO_TOLERANCE_SLO, "page", group, labels, ALERT_NAMES[row["kind"]])
            failures[key].append(floor_time(row["event_time"], MINUTE))
            details[key] = row
        instants = []
        t = start + MINUTE
        while t <= end:
            instants.append(t)
            t += MINUTE
        active = {k for k, s in self.alerts.items() if s.state in ("pending", FIRING)}
        timed: list[tuple[datetime, str, AlertMessage]] = []
        for key in sorted(set(failures) | active, key=lambda k: k.fingerprint):
            state = self.alerts.get(key) or AlertState.new(key)
            minutes = sorted(failures.get(key, []))
            for at in instants:
                # A failure in [at - HOLD, at) holds the condition.
                condition = any(at - HOLD <= m < at for m in minutes)
                if not condition and state.state not in ("pending", FIRING):
                    continue
                state = step_provider_alert(self.lifecycle, state, condition, at, notify_after, result, timed,
                                            lambda: _annotations(key, details.get(key)))
            self.alerts[key] = state
        finish_provider_result(result, timed)
        return result


def _annotations(key: AlertKey, row: dict | None) -> dict[str, str]:
    group = dict(key.group)
    kind = next(k for k, name in ALERT_NAMES.items() if name == key.alertname)
    summary = (f"Model {group['model_name']} {group['model_version']} {WHAT[kind]} on device {group['device_id']}")
    description = (f"Zero tolerance: any such failure pages. The alert resolves {format_duration(HOLD)} after "
                   "the last failure.")
    if row is not None:
        description = (f"Last failure at {row['event_time']:%Y-%m-%d %H:%M} UTC; the device is at "
                       f"{row['site'] or 'an unknown site'} "
                       f"({row['device_class'] or 'unknown class'}, firmware {row['firmware_version'] or '?'}). "
                       + description)
    return {"summary": summary, "description": description}
