"""The alert lifecycle per SLO x group x severity, as pure state transitions, and its ``alerts`` table.

Each evaluation tick feeds every alert the condition its rules computed
(``True`` burning, ``False`` not, ``None`` no data)::

    lifecycle = Lifecycle(LifecycleConfig())
    page, ticket = AlertState.new(key_page), AlertState.new(key_ticket)
    step = lifecycle.step_group(page, ticket, page_condition=True, ticket_condition=True, now=now)
    step.page, step.ticket          # the new states (persist them as `alerts` rows)
    step.notifications              # what to send now: firing, repeat or resolved

States and transitions::

    inactive --condition--> pending --held for `pending_for`--> firing --condition gone--> resolved
       ^                       |                                                               |
       +---condition gone------+                 resolved --condition again--> pending (a new alert)

- ``pending_for`` (default page 2m, ticket 15m): the condition must hold on
  consecutive evaluations this long before anyone is told. The short window
  already resets the rules quickly; the pending time covers the other edge
  risk, a minute whose data is half in (a gateway's batch still queued),
  at the cost of that much detection delay. ``0`` fires on the first tick.
- No data (``None``) changes nothing: a pending alert stays pending (it
  fires only on a tick whose condition holds), a firing one keeps firing
  (silence is not recovery; the SLI's own no-data signal reports it).
- A firing alert is re-sent every ``repeat_interval`` (Alertmanager's
  default, 4h); a resolved one is sent once, with ``endsAt``.
- Inhibition: while the page of an SLO and group fires, its ticket's
  notifications are held back (the ticket still changes state, so it is
  sent if it still burns once the page resolves). A ticket that was already
  announced is still sent when it resolves, so no receiver keeps a stale one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
STATES = (INACTIVE, PENDING, FIRING, RESOLVED)
ALERT_NAME = "SLOBurnRate"
NO_DATA_ALERT_NAME = "SLONoData"  # a group that reported in the period and has been silent for an hour
ZERO_TOLERANCE_SLO = "zero-tolerance"  # the slo column of the health alerts (analytics.health.alerts)

# One row per alert episode (inactive -> ... -> resolved); a new episode of the
# same SLO x group x severity gets a new row with the same fingerprint.
ALERTS_DDL = """
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint VARCHAR NOT NULL,        -- Alertmanager's label-set fingerprint, 16 hex digits
    opened_at TIMESTAMP NOT NULL,        -- when the condition first held (pending began)
    slo VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,           -- page | ticket
    group_labels VARCHAR NOT NULL,       -- JSON object of the group's dimensions
    labels VARCHAR NOT NULL,             -- JSON object of every label of the alert
    state VARCHAR NOT NULL,              -- pending | firing | resolved
    starts_at TIMESTAMP,                 -- when it started firing
    ends_at TIMESTAMP,                   -- when it resolved
    last_evaluated_at TIMESTAMP NOT NULL,
    last_notified_at TIMESTAMP,          -- the newest firing notification (repeat interval runs from it)
    notified_firing BOOLEAN NOT NULL DEFAULT false,
    inhibited BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (fingerprint, opened_at)
)
"""


def group_key(group: dict[str, str]) -> str:
    """A group as the compact JSON object with sorted keys that DuckDB's ``to_json`` writes (``{}`` for none)."""
    return json.dumps(group, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's alert fingerprint: ``model.LabelSet.Fingerprint()`` of prometheus/common.

    FNV-1a 64 over the label names in sorted order, each name and value
    followed by the separator byte 0xff, printed as 16 hex digits
    (model/signature.go labelSetToFingerprint, model/fingerprinting.go).
    """
    h = 0xcbf29ce484222325
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + b"\xff":
                h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


@dataclass(frozen=True)
class AlertKey:
    """SLO x group x severity; ``labels`` are the alert's labels (SLO labels, group, names)."""

    slo: str
    severity: str
    group: tuple[tuple[str, str], ...] = ()
    extra_labels: tuple[tuple[str, str], ...] = ()
    alertname: str = ALERT_NAME

    @classmethod
    def of(cls, slo: str, severity: str, group: dict[str, str] | None = None,
           labels: dict[str, str] | None = None, alertname: str = ALERT_NAME) -> AlertKey:
        return cls(slo, severity, tuple(sorted((group or {}).items())), tuple(sorted((labels or {}).items())),
                   alertname)

    @property
    def labels(self) -> dict[str, str]:
        # A group value can be null (spans without the dimension, e.g. cloud shadows without fleet.site);
        # as in Prometheus, an empty label is no label (and a label value must be text to fingerprint).
        group = {name: value for name, value in self.group if value is not None}
        return {**dict(self.extra_labels), **group, "alertname": self.alertname, "slo": self.slo,
                "severity": self.severity}

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


@dataclass(frozen=True)
class AlertState:
    """Where one alert is in its lifecycle; a value, replaced by each step."""

    key: AlertKey
    state: str = INACTIVE
    opened_at: datetime | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    last_evaluated_at: datetime | None = None
    last_notified_at: datetime | None = None
    notified_firing: bool = False
    inhibited: bool = False

    @classmethod
    def new(cls, key: AlertKey) -> AlertState:
        return cls(key)

    def to_row(self) -> dict:
        """The ``alerts`` row of this state (only pending, firing or resolved states are stored)."""
        return {"fingerprint": self.key.fingerprint, "opened_at": self.opened_at, "slo": self.key.slo,
                "severity": self.key.severity, "group_labels": group_key(dict(self.key.group)),
                "labels": json.dumps(self.key.labels, sort_keys=True), "state": self.state,
                "starts_at": self.starts_at, "ends_at": self.ends_at, "last_evaluated_at": self.last_evaluated_at,
                "last_notified_at": self.last_notified_at, "notified_firing": self.notified_firing,
                "inhibited": self.inhibited}

    @classmethod
    def from_row(cls, row: dict) -> AlertState:
        labels = json.loads(row["labels"])
        group = json.loads(row["group_labels"])
        extra = {k: v for k, v in labels.items() if k not in group and k not in ("alertname", "slo", "severity")}
        key = AlertKey.of(row["slo"], row["severity"], group, extra, labels["alertname"])
        return cls(key, row["state"], row["opened_at"], row["starts_at"], row["ends_at"], row["last_evaluated_at"],
                   row["last_notified_at"], bool(row["notified_firing"]), bool(row["inhibited"]))


@dataclass(frozen=True)
class Notification:
    """One alert to deliver now: ``kind`` is ``firing``, ``repeat`` or ``resolved``."""

    kind: str
    alert: AlertState


@dataclass
class LifecycleConfig:
    """Pending durations per severity and the repeat interval; ``validate()`` names a bad field."""

    pending_for: dict[str, timedelta] = field(default_factory=lambda: {"page": timedelta(minutes=2),
                                                                       "ticket": timedelta(minutes=15)})
    repeat_interval: timedelta = timedelta(hours=4)

    def validate(self, key: str = "alerting") -> None:
        for severity, duration in self.pending_for.items():
            if severity not in ("page", "ticket"):
                raise ValueError(f"{key}.pending_for.{severity}: not a severity; use page or ticket")
            if duration < timedelta(0):
                raise ValueError(f"{key}.pending_for.{severity}: must not be negative, got {duration}")
        if self.repeat_interval <= timedelta(0):
            raise ValueError(f"{key}.repeat_interval: must be positive, got {self.repeat_interval}")


@dataclass(frozen=True)
class GroupStep:
    """The outcome of one tick for the page and ticket of one SLO and group."""

    page: AlertState
    ticket: AlertState
    notifications: tuple[Notification, ...]


class Lifecycle:
    """Applies one evaluation tick to alert states; holds no state of its own."""

    def __init__(self, config: LifecycleConfig | None = None) -> None:
        self.config = config or LifecycleConfig()
        self.config.validate()

    def step(self, alert: AlertState, condition: bool | None, now: datetime,
             inhibited: bool = False, notify: bool = True) -> tuple[AlertState, Notification | None]:
        """One tick for one alert; returns its new state and what to send (``None``: nothing).

        ``notify=False`` (an instant evaluated long after the fact, when
        catching up) changes states but announces no firing: the first
        instant that may notify announces an alert that still fires. An
        announced alert's resolution is always announced.
        """
        alert = dataclasses.replace(alert, last_evaluated_at=now)
        if condition is None:  # no data: hold where we are
            return alert, None
        if alert.state in (INACTIVE, RESOLVED):
            if not condition:
                return alert, None
            alert = AlertState(alert.key, PENDING, opened_at=now, last_evaluated_at=now)
        if alert.state == PENDING:
            if not condition:
                return dataclasses.replace(alert, state=INACTIVE), None
            if now - alert.opened_at < self.config.pending_for.get(alert.key.severity, timedelta(0)):
                return alert, None
            alert = dataclasses.replace(alert, state=FIRING, starts_at=now)
        if alert.state == FIRING and not condition:
            resolved = dataclasses.replace(alert, state=RESOLVED, ends_at=now, inhibited=inhibited)
            # Announce the end only of what was announced (an inhibited ticket may never have been).
            return resolved, Notification("resolved", resolved) if alert.notified_firing else None
        if inhibited:
            return dataclasses.replace(alert, inhibited=True), None
        if not notify:
            return alert, None
        due = alert.last_notified_at is None or now - alert.last_notified_at >= self.config.repeat_interval
        if not due:
            return dataclasses.replace(alert, inhibited=False), None
        kind = "repeat" if alert.notified_firing else "firing"
        alert = dataclasses.replace(alert, last_notified_at=now, notified_firing=True, inhibited=False)
        return alert, Notification(kind, alert)

    def step_group(self, page: AlertState, ticket: AlertState, page_condition: bool | None,
                   ticket_condition: bool | None, now: datetime, notify: bool = True) -> GroupStep:
        """One tick for an SLO and group: the page first, then the ticket, inhibited while the page fires."""
        if page.key.slo != ticket.key.slo or page.key.group != ticket.key.group:
            raise ValueError("step_group: page and ticket must belong to the same SLO and group")
        page, page_note = self.step(page, page_condition, now, notify=notify)
        ticket, ticket_note = self.step(ticket, ticket_condition, now, inhibited=page.state == FIRING, notify=notify)
        return GroupStep(page, ticket, tuple(n for n in (page_note, ticket_note) if n is not None))


class ProviderAlerts:
    """Base of the alerts outside the SLOs (zero-tolerance, drift): one severity, no pending time, states
    kept in ``alerts`` rows whose ``slo`` column is the class's ``slo``. Subclasses add ``evaluate``."""

    slo = ""

    def __init__(self, severity: str, repeat_interval: timedelta) -> None:
        self.lifecycle = Lifecycle(LifecycleConfig(pending_for={severity: timedelta(0)},
                                                   repeat_interval=repeat_interval))
        self.alerts: dict[AlertKey, AlertState] = {}

    def load_states(self, rows: list[dict]) -> None:
        for row in sorted(rows, key=lambda r: r["opened_at"]):
            if row["slo"] == self.slo:
                state = AlertState.from_row(row)
                self.alerts[state.key] = state

    def reset(self) -> None:
        self.alerts.clear()
