"""The ``shadow`` config section: how shadows and labels are joined to edge inferences (docs/configuration.md).

::

    shadow:
      max_lag: 12h            # a cloud shadow matches an edge inference at most this far apart (event time)
      label_horizon: 7d       # a label counts if it comes at most this long after the inference

Leaving the section out gives these defaults. A shadow further than
``max_lag`` from its edge inference is counted twice, as an edge request
without a shadow and as a shadow without an edge answer; a label later than
``label_horizon`` is not joined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from collector.config import ConfigError, register_section


@dataclass
class ShadowConfig:
    """Join windows for :mod:`analytics.shadow.jobs`; ``validate()`` names the bad key."""

    DURATIONS: ClassVar[frozenset[str]] = frozenset({"max_lag", "label_horizon"})

    max_lag: float = 12 * 3600.0  # seconds
    label_horizon: float = 7 * 86400.0  # seconds

    def validate(self, key: str = "shadow") -> None:
        if not 60 <= self.max_lag <= 2 * 86400:
            raise ConfigError(f"{key}.max_lag: must be 1m..2d, got {self.max_lag} s")
        if not 3600 <= self.label_horizon <= 90 * 86400:
            raise ConfigError(f"{key}.label_horizon: must be 1h..90d, got {self.label_horizon} s")


register_section("shadow", ShadowConfig)
