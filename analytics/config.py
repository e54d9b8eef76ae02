"""The ``analytics`` config section: when present, ``fleetwatch serve`` runs the scheduled jobs.

::

    analytics:
      workers: 2          # jobs that may run at once
      backfill: 30d       # on a new file, start at most this far back (default: from the oldest data)
      query_timeout: 5m   # one window computation's time limit

A gateway leaves the section out: it then never imports APScheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from collector.config import ConfigError, register_section


@dataclass
class AnalyticsConfig:
    DURATIONS: ClassVar[frozenset[str]] = frozenset({"backfill", "query_timeout"})

    workers: int = 2
    backfill: float | None = None  # seconds; None: from the oldest data
    query_timeout: float = 300.0

    def validate(self, key: str = "analytics") -> None:
        if not 1 <= self.workers <= 16:
            raise ConfigError(f"{key}.workers: must be 1..16, got {self.workers}")
        if self.backfill is not None and self.backfill <= 0:
            raise ConfigError(f"{key}.backfill: must be positive")
        if self.query_timeout <= 0:
            raise ConfigError(f"{key}.query_timeout: must be positive")


register_section("analytics", AnalyticsConfig)
