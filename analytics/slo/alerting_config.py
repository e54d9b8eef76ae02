"""The ``alerting`` config section: where alert notifications go and how hard delivery tries.

::

    alerting:
      receivers:
        - {name: oncall, url: "https://hooks.example.net/fleetwatch", kind: webhook, timeout: 10s,
           bearer_token_file: /etc/fleetwatch/oncall-token, ca_file: /etc/fleetwatch/site-ca.pem}
        - {name: am, url: "http://alertmanager:9093", kind: alertmanager,   # POSTs to URL/api/v2/alerts
           bearer_token_env: AM_TOKEN}
      external_url: http://fleetwatch:4319
      dashboard_url: "http://dash:8501/on-call?slo={slo}&{group_query}"
      repeat_interval: 4h
      pending_for: {page: 2m, ticket: 15m}
      retry: {initial: 5s, max: 5m}
      give_up_after: 3d      # older undelivered notifications are marked expired and counted
      max_alerts: 0          # 0: no limit per webhook body
      alertmanager_resend_interval: 1m   # firing alerts are re-posted to an Alertmanager this often

Without receivers, alerts are still evaluated and stored and nothing is
sent (the notifier is not started). A secret is never written inline: a
receiver names a file or an environment variable that holds its token.
Building blocks of the other layers are derived, not repeated:
:meth:`AlertingConfig.lifecycle` gives the lifecycle's
:class:`~analytics.slo.lifecycle.LifecycleConfig` and
:meth:`AlertingConfig.payload` a receiver's
:class:`~analytics.slo.payload.PayloadConfig`.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from analytics.slo.lifecycle import LifecycleConfig
from analytics.slo.payload import PayloadConfig
from collector.config import ConfigError, register_section

KINDS = ("webhook", "alertmanager")
ALERTMANAGER_PATH = "/api/v2/alerts"


def _require_http_url(value: str, key: str) -> None:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{key}: an http:// or https:// URL is required, got {value!r}")
    try:
        parsed.port
    except ValueError:
        raise ConfigError(f"{key}: the port must be 0..65535, got {value!r}") from None


@dataclass
class ReceiverConfig:
    """One notification target: a webhook URL, or an Alertmanager (``kind: alertmanager``) at ``url``."""

    DURATIONS: ClassVar[frozenset[str]] = frozenset({"timeout"})

    name: str = ""
    url: str = ""
    kind: str = "webhook"
    timeout: float = 10.0
    bearer_token_file: str | None = None
    bearer_token_env: str | None = None
    ca_file: str | None = None           # CA certificates for an https:// receiver (default: the system's)

    @property
    def post_url(self) -> str:
        """Where notifications are POSTed: the URL itself, or the Alertmanager's v2 alerts endpoint."""
        return self.url.rstrip("/") + ALERTMANAGER_PATH if self.kind == "alertmanager" else self.url

    def bearer_token(self) -> str | None:
        """The token, read when needed so a rotated file or variable takes effect without a restart."""
        if self.bearer_token_file:
            return Path(self.bearer_token_file).read_text().strip() or None
        if self.bearer_token_env:
            return os.environ.get(self.bearer_token_env, "").strip() or None
        return None

    def validate(self, key: str) -> None:
        if not self.name:
            raise ConfigError(f"{key}.name: must not be empty")
        _require_http_url(self.url, f"{key}.url")
        if self.kind not in KINDS:
            raise ConfigError(f"{key}.kind: one of {', '.join(KINDS)}; got {self.kind!r}")
        if not 0 < self.timeout <= 300:
            raise ConfigError(f"{key}.timeout: must be more than 0 s and at most 5m, got {self.timeout:g} s")
        if self.bearer_token_file and self.bearer_token_env:
            raise ConfigError(f"{key}: give bearer_token_file or bearer_token_env, not both")
        if self.bearer_token_file and not Path(self.bearer_token_file).is_file():
            raise ConfigError(f"{key}.bearer_token_file: no such file {self.bearer_token_file!r}")
        if self.bearer_token_env and self.bearer_token_env not in os.environ:
            raise ConfigError(f"{key}.bearer_token_env: environment variable {self.bearer_token_env} is not set")
        if self.ca_file and not Path(self.ca_file).is_file():
            raise ConfigError(f"{key}.ca_file: no such file {self.ca_file!r}")
        token = self.bearer_token()
        if token is not None and any(ch.isspace() for ch in token):
            raise ConfigError(f"{key}: the bearer token must be one word without white space")


@dataclass
class PendingForConfig:
    """How long a condition must hold before the alert fires, per severity."""

    DURATIONS: ClassVar[frozenset[str]] = frozenset({"page", "ticket"})

    page: float = 120.0
    ticket: float = 900.0


@dataclass
class DeliveryRetryConfig:
    """Capped exponential backoff between attempts: ``initial``, doubled per failure, at most ``max``."""

    DURATIONS: ClassVar[frozenset[str]] = frozenset({"initial", "max"})

    initial: float = 5.0
    max: float = 300.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1, 2, ...)."""
        return min(self.max, self.initial * 2 ** min(max(attempts - 1, 0), 62))

    def validate(self, key: str) -> None:
        if not 0 < self.initial <= self.max:
            raise ConfigError(f"{key}: need 0 < initial <= max, got initial {self.initial:g} s, max {self.max:g} s")


@dataclass
class AlertingConfig:
    """Receivers and delivery policy; see the module docstring for the YAML."""

    DURATIONS: ClassVar[frozenset[str]] = frozenset({"repeat_interval", "give_up_after", "retention",
                                                     "poll_interval", "alertmanager_resend_interval"})

    receivers: list[ReceiverConfig] = field(default_factory=list)
    external_url: str = "http://127.0.0.1:4319"
    dashboard_url: str = ""
    repeat_interval: float = 4 * 3600.0
    pending_for: PendingForConfig = field(default_factory=PendingForConfig)
    retry: DeliveryRetryConfig = field(default_factory=DeliveryRetryConfig)
    give_up_after: float = 3 * 86400.0
    max_alerts: int = 0
    retention: float = 7 * 86400.0       # delivered (and expired, failed) rows are kept this long
    poll_interval: float = 1.0           # how often the notifier looks for due rows
    # An Alertmanager resolves a firing alert it has not heard of for resolve_timeout (5m by
    # default); re-post firing alerts to it this often (Prometheus' own resend delay is 1m).
    alertmanager_resend_interval: float = 60.0

    def receiver(self, name: str) -> ReceiverConfig | None:
        return next((r for r in self.receivers if r.name == name), None)

    def lifecycle(self) -> LifecycleConfig:
        return LifecycleConfig(pending_for={"page": timedelta(seconds=self.pending_for.page),
                                            "ticket": timedelta(seconds=self.pending_for.ticket)},
                               repeat_interval=timedelta(seconds=self.repeat_interval))

    def payload(self, receiver: ReceiverConfig) -> PayloadConfig:
        return PayloadConfig(receiver=receiver.name, external_url=self.external_url,
                             dashboard_url_template=self.dashboard_url, max_alerts=self.max_alerts)

    def validate(self, key: str = "alerting") -> None:
        names: set[str] = set()
        for index, receiver in enumerate(self.receivers):
            receiver.validate(f"{key}.receivers[{index}]")
            if receiver.name in names:
                raise ConfigError(f"{key}.receivers[{index}].name: {receiver.name!r} is used twice")
            names.add(receiver.name)
        _require_http_url(self.external_url, f"{key}.external_url")
        try:
            self.lifecycle().validate(key)
            PayloadConfig(dashboard_url_template=self.dashboard_url, max_alerts=self.max_alerts).validate(key)
        except ValueError as exc:
            # PayloadConfig names its own field; the YAML calls it dashboard_url.
            raise ConfigError(str(exc).replace(f"{key}.dashboard_url_template", f"{key}.dashboard_url")) from None
        self.retry.validate(f"{key}.retry")
        for name in ("give_up_after", "retention", "poll_interval", "alertmanager_resend_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{key}.{name}: must be positive")
        if self.give_up_after < self.retry.initial:
            raise ConfigError(f"{key}.give_up_after: shorter than retry.initial; nothing would ever be retried")


register_section("alerting", AlertingConfig)
