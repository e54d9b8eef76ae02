"""The ``analytics`` config section: when present, ``fleetwatch serve`` runs the scheduled jobs.

::

    analytics:
      workers: 2          # jobs that may run at once
      backfill: 30d       # on a new file, start at most this far back (default: from the oldest data)
      query_timeout: 5m   # one window computation's time limit
      slos: slos.yaml     # the SLO file (docs/slo.md); relative to the working directory
      notify_window: 15m  # firing is announced only for instants this recent (not for history caught up on)

A gateway leaves the section out: it then never imports APScheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from collector.config import ConfigError, register_section


@dataclass
class AnalyticsConfig:
    DURATIONS: ClassVar[frozenset[str]] = frozenset({"backfill", "query_timeout", "notify_window"})

    workers: int = 2
    backfill: float | None = None  # seconds; None: from the oldest data
    query_timeout: float = 300.0
    slos: str | None = None
    notify_window: float = 900.0

    def validate(self, key: str = "analytics") -> None:
        if not 1 <= self.workers <= 16:
            raise ConfigError(f"{key}.workers: must be 1..16, got {self.workers}")
        if self.backfill is not None and self.backfill <= 0:
            raise ConfigError(f"{key}.backfill: must be positive")
        if self.query_timeout <= 0:
            raise ConfigError(f"{key}.query_timeout: must be positive")
        if self.notify_window <= 0:
            raise ConfigError(f"{key}.notify_window: must be positive")
        if self.slos is not None:
            self.slo_specs(key)  # a bad SLO file stops the start, naming the file and the field

    def slo_specs(self, key: str = "analytics") -> list:
        """The SLOs of the ``slos`` file ([] without one); a bad file is a :class:`ConfigError`."""
        if self.slos is None:
            return []
        from analytics.slo.spec import load_slo_file

        try:
            return load_slo_file(self.slos)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{key}.slos: {exc}") from None


register_section("analytics", AnalyticsConfig)
