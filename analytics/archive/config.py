"""The ``archive`` config section: with it, ``fleetwatch serve`` exports closed hours and prunes old ones.

::

    archive:
      path: /srv/fleetwatch/archive   # the archive's root directory (required)
      hot_period: 7d                  # the DuckDB file keeps this much; archived rows older are deleted
      schedule: 5m                    # how often the exporter looks for closed hours
      delay: 1h                       # an hour is exported once it ended this long ago

``hot_period: 0`` keeps every row in the file (export only, no retention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from collector.config import ConfigError, register_section


@dataclass
class ArchiveConfig:
    DURATIONS: ClassVar[frozenset[str]] = frozenset({"hot_period", "schedule", "delay"})

    path: str = ""
    hot_period: float = 7 * 86400.0
    schedule: float = 300.0
    delay: float = 3600.0

    def validate(self, key: str = "archive") -> None:
        if not self.path:
            raise ConfigError(f"{key}.path: the archive directory is required")
        if self.schedule <= 0:
            raise ConfigError(f"{key}.schedule: must be positive")
        if self.delay < 0:
            raise ConfigError(f"{key}.delay: must not be negative")
        if self.hot_period and self.hot_period < self.delay + 3600:
            # A row is pruned only once archived, and an hour is archived only once closed.
            raise ConfigError(f"{key}.hot_period: must be at least delay + 1h "
                              f"({(self.delay + 3600) / 3600:g}h), or 0 to keep every row")
        if self.hot_period < 0:
            raise ConfigError(f"{key}.hot_period: must not be negative")


register_section("archive", ArchiveConfig)
