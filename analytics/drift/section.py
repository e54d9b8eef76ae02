"""The ``drift`` config section: what the scheduled drift jobs compare, and how (docs/drift.md, "Drift jobs").

::

    drift:
      reference: pinned           # pinned (the first day after a version is first seen) or trailing
      reference_days: 1           # length of the pinned window / of the trailing window (whole days)
      min_events: 100             # fewer values than this on either side: insufficient_data
      correction: bonferroni      # or benjamini-hochberg (every feature x cohort x version of a window is one family)
      alpha: 0.01                 # family-wise error per window (24 hourly windows a day: a false ticket in ~4 days)
      thresholds: {wasserstein: 0.1, jensen_shannon: 0.1}   # effect-size thresholds (DriftConfig)
      alert_window: 1d            # DriftAlerts fire on the newest daily (1d) or hourly (1h) result
      cohorts: [site, region, device_class, firmware_version]

The jobs run whenever the ``analytics`` section is present (a drift job
with no edge inference carrying ``ml.feature.*`` attributes writes
nothing); this section only changes their defaults. An imported training
reference (``fleetwatch drift reference import``) always wins over the
pinned or trailing one of its model version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from collector.config import ConfigError, register_section

# Nothing of the statistics (numpy, scipy) at module level: a gateway's `serve` registers the
# section without loading them; they load when a drift section is validated or the job starts.

REFERENCE_KINDS = ("pinned", "trailing")
ALERT_WINDOWS = ("1h", "1d")
COHORT_DIMENSIONS = ("site", "region", "device_class", "firmware_version")


@dataclass
class DriftJobConfig:
    """Settings of :class:`analytics.drift.jobs.DriftJob` and :class:`analytics.drift.alerts.DriftAlerts`."""

    DURATIONS: ClassVar[frozenset[str]] = frozenset()

    reference: str = "pinned"
    reference_days: int = 1
    min_events: int = 100
    correction: str = "bonferroni"
    alpha: float = 0.01
    thresholds: dict = field(default_factory=dict)
    alert_window: str = "1d"
    cohorts: list = field(default_factory=lambda: list(COHORT_DIMENSIONS))

    def validate(self, key: str = "drift") -> "DriftJobConfig":
        if self.reference not in REFERENCE_KINDS:
            raise ConfigError(f"{key}.reference: one of {', '.join(REFERENCE_KINDS)}, got {self.reference!r}")
        if not isinstance(self.reference_days, int) or not 1 <= self.reference_days <= 90:
            raise ConfigError(f"{key}.reference_days: whole days 1..90, got {self.reference_days!r}")
        if self.alert_window not in ALERT_WINDOWS:
            raise ConfigError(f"{key}.alert_window: one of {', '.join(ALERT_WINDOWS)}, got {self.alert_window!r}")
        unknown = [c for c in self.cohorts if c not in COHORT_DIMENSIONS]
        if unknown:
            raise ConfigError(f"{key}.cohorts: {unknown[0]!r} is not one of {', '.join(COHORT_DIMENSIONS)}")
        try:
            self.drift_config()
        except (TypeError, ValueError) as exc:
            # DriftConfig names its field as drift.<field>; say which key of this section it came from.
            message = str(exc).replace("drift.min_count", f"{key}.min_events").replace("drift.", f"{key}.")
            raise ConfigError(message) from None
        return self

    def drift_config(self):
        """The statistics' :class:`~analytics.drift.config.DriftConfig` (validated): thresholds, correction, minimum."""
        from analytics.drift.config import DriftConfig

        thresholds = {k: _number(v) for k, v in self.thresholds.items()}
        return DriftConfig(min_count=self.min_events, correction=self.correction, alpha=self.alpha,
                           thresholds={**DriftConfig().thresholds, **thresholds}).validate()


def _number(value):
    """A YAML mapping's value as a float when it is a number (they may arrive as text); else as it is."""
    if isinstance(value, bool):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


register_section("drift", DriftJobConfig)
