"""The ``health`` config section: thresholds of the fleet-health signals (docs/configuration.md).

::

    health:
      cpu_utilization: 0.9          # system.cpu.utilization (0..1) above it counts as saturated
      temperature_c: 85             # device.temperature (Cel) above it counts as hot
      memory_mib:                   # system.memory.usage above it, per device class (others: not judged)
        jetson-orin: 14336
        coral-tpu: 3584
      sample_gap_cap: 15m           # a gauge sample stands for at most this long
      telemetry_mib_per_device_day: 64   # telemetry.bytes_sent budget of one device per day

Leaving the section out gives these defaults (no memory thresholds). The
thresholds are applied when an hour is computed and stored beside the
results, so a change applies to hours computed after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from collector.config import ConfigError, register_section


@dataclass
class HealthConfig:
    """Thresholds for :class:`analytics.health.job.DeviceHealthHour`; ``validate()`` names the bad key."""

    DURATIONS: ClassVar[frozenset[str]] = frozenset({"sample_gap_cap"})

    cpu_utilization: float = 0.9
    temperature_c: float = 85.0
    memory_mib: dict = field(default_factory=dict)  # device class -> MiB (YAML numbers arrive as text)
    sample_gap_cap: float = 900.0  # seconds
    telemetry_mib_per_device_day: float = 64.0

    def validate(self, key: str = "health") -> None:
        if not 0 < self.cpu_utilization <= 1:
            raise ConfigError(f"{key}.cpu_utilization: must be in (0, 1], got {self.cpu_utilization}")
        if not -50 <= self.temperature_c <= 200:
            raise ConfigError(f"{key}.temperature_c: must be -50..200 (degrees C), got {self.temperature_c}")
        for device_class, mib in self.memory_mib.items():
            try:
                value = float(mib)
            except (TypeError, ValueError):
                raise ConfigError(f"{key}.memory_mib.{device_class}: expected a number of MiB, got {mib!r}") from None
            if value <= 0:
                raise ConfigError(f"{key}.memory_mib.{device_class}: must be positive, got {mib}")
        if not 0 < self.sample_gap_cap <= 3600:
            raise ConfigError(f"{key}.sample_gap_cap: must be more than 0 and at most 1h")
        if self.telemetry_mib_per_device_day <= 0:
            raise ConfigError(f"{key}.telemetry_mib_per_device_day: must be positive")

    def memory_thresholds(self) -> tuple[list[str], list[float]]:
        """Device classes and their memory thresholds in bytes, as two lists (bound as DuckDB parameters)."""
        classes = sorted(self.memory_mib)
        return classes, [float(self.memory_mib[c]) * 2**20 for c in classes]


register_section("health", HealthConfig)
