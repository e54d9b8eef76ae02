"""Alertmanager-compatible payloads: the webhook body (version "4") and the ``POST /api/v2/alerts`` list.

Field names follow Alertmanager's source: notify/webhook/webhook.go
(``Message``: the template data plus ``version``, ``groupKey``,
``truncatedAlerts``; alerts beyond ``max_alerts`` are cut before the
template data is built) and template/template.go (``Data``: ``receiver``,
``status``, ``alerts``, ``groupLabels``, ``commonLabels``,
``commonAnnotations``, ``externalURL``; ``Alert``: ``status``, ``labels``,
``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``,
``fingerprint``)::

    config = PayloadConfig(receiver="oncall", external_url="http://fleetwatch:4319",
                           dashboard_url_template="http://dash:8501/on-call?slo={slo}&{group_query}")
    alert = AlertMessage(state, describe(context))     # state from lifecycle, words from the rules
    body = webhook_payload([alert], config, group_labels={"slo": "detector-success"})
    alerts = api_v2_alerts([alert], config)            # for an Alertmanager's /api/v2/alerts

A firing alert carries Alertmanager's zero time as ``endsAt`` in the webhook
body, as Alertmanager itself sends it; the v2 list leaves ``endsAt`` out of
firing alerts (Alertmanager then applies its resolve timeout, and the
notifier re-posts firing alerts more often than that).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from analytics.slo.lifecycle import FIRING, RESOLVED, AlertState
from analytics.slo.rules import SeverityEvaluation

WEBHOOK_VERSION = "4"
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class PayloadConfig:
    """Receiver name, this instance's URL and the link templates (``{slo}``, ``{severity}``, ``{group_query}``)."""

    receiver: str = "fleetwatch"
    external_url: str = "http://127.0.0.1:4319"
    dashboard_url_template: str = ""
    generator_url_template: str = "{external_url}/api/v1/query/slo_status?slo={slo}&{group_query}"
    max_alerts: int = 0  # 0 = no limit; more alerts than this are cut and counted in truncatedAlerts

    def validate(self, key: str = "alerting.payload") -> None:
        if not self.receiver:
            raise ValueError(f"{key}.receiver: must not be empty")
        for name in ("dashboard_url_template", "generator_url_template"):
            template = getattr(self, name)
            try:
                template.format(slo="s", severity="page", group_query="a=b", external_url="http://x")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"{key}.{name}: unknown placeholder {exc}; use {{slo}}, {{severity}}, "
                                 "{group_query} or {external_url}") from None
        if self.max_alerts < 0:
            raise ValueError(f"{key}.max_alerts: must not be negative, got {self.max_alerts}")

    def link(self, template: str, alert: AlertState) -> str:
        if not template:
            return ""
        group_query = urllib.parse.urlencode(sorted(alert.key.group))
        return template.format(slo=urllib.parse.quote(alert.key.slo), severity=alert.key.severity,
                               group_query=group_query, external_url=self.external_url.rstrip("/"))


@dataclass(frozen=True)
class AlertContext:
    """What the annotations put in words: the SLO, the rules' view of its windows and the budget."""

    slo_description: str
    objective: float
    period: timedelta
    evaluation: SeverityEvaluation
    budget_remaining: float | None
    time_to_exhaustion: timedelta | None
    runbook_url: str = ""
    rollout: str = ""                     # the rollout a group is in the middle of, if any
    extra: dict[str, str] = field(default_factory=dict)  # the SLO's own annotations


def format_duration(d: timedelta) -> str:
    """``3d 4h``, ``6h``, ``30m``: the two largest units, for people."""
    minutes = int(d.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    return " ".join(parts[:2]) or "0m"


def describe(context: AlertContext) -> dict[str, str]:
    """The annotations: a summary line, the windows that burn and how fast, the budget left, links."""
    burning = [e for e in context.evaluation.evaluations if e.firing]
    shown = burning or list(context.evaluation.evaluations)
    lines = []
    for e in shown:
        rule = e.rule
        long_text = "no data" if e.long_burn is None else f"{e.long_burn:.1f}x"
        short_text = "no data" if e.short_burn is None else f"{e.short_burn:.1f}x"
        lines.append(f"{format_duration(rule.long_window)} window burns at {long_text} and "
                     f"{format_duration(rule.short_window)} at {short_text} the sustainable rate "
                     f"(threshold {rule.factor:.3g}x: {rule.budget_share:.3g} of the "
                     f"{format_duration(context.period)} budget in {format_duration(rule.long_window)})")
    if context.budget_remaining is None:
        budget = "Budget left: unknown (no events in the period)."
    else:
        budget = f"Budget left: {context.budget_remaining:.1%} of the {format_duration(context.period)} budget"
        budget += (f", gone in about {format_duration(context.time_to_exhaustion)} at the fastest burn."
                   if context.time_to_exhaustion is not None else ".")
    severity = context.evaluation.severity
    summary = (f"{context.slo_description or 'SLO'} is burning its error budget "
               f"({severity}: {len(burning)} of {len(context.evaluation.evaluations)} rules)")
    if context.rollout:
        summary += f" during rollout {context.rollout}"
    annotations = {**context.extra, "summary": summary,
                   "description": "; ".join(lines) + f". Objective {context.objective:.4g}. " + budget}
    if context.runbook_url:
        annotations["runbook_url"] = context.runbook_url
    if context.rollout:
        annotations["rollout"] = context.rollout
    return annotations


@dataclass(frozen=True)
class AlertMessage:
    """One alert ready to send: its lifecycle state and its annotations."""

    state: AlertState
    annotations: dict[str, str]


def _time(t: datetime | None) -> str:
    return ZERO_TIME if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _alert(message: AlertMessage, config: PayloadConfig) -> dict:
    state = message.state
    if state.state not in (FIRING, RESOLVED):
        raise ValueError(f"alert {state.key.fingerprint}: only firing or resolved alerts are sent, not {state.state}")
    annotations = dict(message.annotations)
    dashboard = config.link(config.dashboard_url_template, state)
    if dashboard:
        annotations["dashboard_url"] = dashboard
    return {"status": state.state, "labels": state.key.labels, "annotations": annotations,
            "startsAt": _time(state.starts_at), "endsAt": _time(state.ends_at if state.state == RESOLVED else None),
            "generatorURL": config.link(config.generator_url_template, state),
            "fingerprint": state.key.fingerprint}


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    return {k: v for k, v in dicts[0].items() if all(d.get(k) == v for d in dicts[1:])}


def label_set_string(labels: dict[str, str]) -> str:
    """Prometheus' ``LabelSet.String()``: ``{a="1", b="2"}``, names sorted, values quoted."""
    return "{" + ", ".join(f"{k}={json.dumps(labels[k], ensure_ascii=False)}" for k in sorted(labels)) + "}"


def webhook_payload(messages: list[AlertMessage], config: PayloadConfig, group_labels: dict[str, str],
                    route_key: str = "{}") -> dict:
    """The webhook body for one notification of one alert group (version "4").

    ``groupKey`` is built as Alertmanager's dispatcher builds it: the route's
    key, a colon, the group's label set (``{}:{slo="x"}`` for the root route).
    """
    if not messages:
        raise ValueError("webhook_payload: needs at least one alert")
    alerts = [_alert(m, config) for m in messages]
    truncated = 0
    if config.max_alerts and len(alerts) > config.max_alerts:
        truncated, alerts = len(alerts) - config.max_alerts, alerts[:config.max_alerts]
    # As in Alertmanager's webhook notifier, status and common labels describe the alerts sent, after truncation.
    return {
        "version": WEBHOOK_VERSION,
        "groupKey": f"{route_key}:{label_set_string(group_labels)}",
        "truncatedAlerts": truncated,
        "receiver": config.receiver,
        "status": FIRING if any(a["status"] == FIRING for a in alerts) else RESOLVED,
        "alerts": alerts,
        "groupLabels": dict(group_labels),
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": config.external_url,
    }


def api_v2_alerts(messages: list[AlertMessage], config: PayloadConfig) -> list[dict]:
    """The body of ``POST /api/v2/alerts`` (postableAlerts): labels, annotations, startsAt, endsAt, generatorURL."""
    body = []
    for message in messages:
        alert = _alert(message, config)
        posted = {k: alert[k] for k in ("labels", "annotations", "startsAt", "generatorURL")}
        if alert["status"] == RESOLVED:
            posted["endsAt"] = alert["endsAt"]
        body.append(posted)
    return body
