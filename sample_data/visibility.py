"""How much data a run has where an incident would show, so the plan lists only incidents the data shows.

The manifest is the answer key of every detection test, so an incident goes
into it only when the run carries enough telemetry in the incident's cohort
and window for the signal to stand out (the minimums below, checked by
:mod:`sample_data.verify` on the data itself). :func:`sample_data.
incident_plan.plan_incidents` asks a :class:`RunVolume` for the expected
counts and leaves out, with a reason, every kind that falls short::

    volume = RunVolume(fleet, inferences_per_hour=16.0, shadow_ratio=0.15, stage_ratio=0.25,
                       export_interval_s=300, metric_interval_s=600)
    volume.inferences([3, 7, 12], t0_ns, t1_ns)     # edge inferences expected (a low estimate)
    volume.per_device_inferences(3, t0_ns, t1_ns)    # the same for one device

Estimates are deliberately low: each device's mean rate follows its class
and the daily rhythm at its site's local time, times :data:`LOW_ESTIMATE`
for the per-device rate factor (log-normal, sigma 0.2) and for failed
updates and reboots. A run passes a minimum when even that low estimate
clears it, so the check's own minimums (lower) hold for every seed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .fleet import HOUR, MINUTE, Fleet
from .physics import daily_load, rhythm_amplitude

LOW_ESTIMATE = 0.75  # a device's rate factor is log-normal(0, 0.2): 0.75 is about 1.5 sigma low

# Minimum expected counts (low estimates) per kind; the checks in verify.py need well under these.
MIN_BURST_INFERENCES = 100  # at the burst's site during the burst (error rate measured within +-0.15)
MIN_OUTAGE_INFERENCES = 40  # at the offline site during the outage (their lateness is the signal)
MIN_DRIFT_INFERENCES = 400  # the drifted cohort before and after, and one other site's cohort
MIN_SHADOW_PAIRS = 600  # edge/cloud pairs on the new model version and on the old one
MIN_EXECUTE_SPANS = 150  # execute spans of the regressed class on each firmware
MIN_SLOW_ERROR_LATE = 2500  # the region's inferences in the last quarter of the ramp
MIN_SKEW_INFERENCES = 100  # per skewed device over the run
MIN_THERMAL_INFERENCES = 40  # the hot cohort's inferences in the middle half of the hot window

MIN_BURST_RUN = 2 * HOUR  # a page needs the 1-hour window before and around the burst
MIN_OUTAGE = 30 * MINUTE  # and at least three export intervals
MIN_THERMAL_WINDOW = 30 * MINUTE  # and at least four metric intervals


class RunVolume:
    """Expected telemetry volume of a run, per device and time range (low estimates)."""

    def __init__(self, fleet: Fleet, *, inferences_per_hour: float, shadow_ratio: float, stage_ratio: float,
                 export_interval_s: int, metric_interval_s: int) -> None:
        self.fleet = fleet
        self.shadow_ratio = shadow_ratio
        self.stage_ratio = stage_ratio
        self.export_interval_ns = export_interval_s * 1_000_000_000
        self.metric_interval_ns = metric_interval_s * 1_000_000_000
        mean_relative = float(np.mean([d.device_class.relative_rate for d in fleet.devices]))
        self._base = [inferences_per_hour * d.device_class.relative_rate / mean_relative for d in fleet.devices]

    def per_device_inferences(self, index: int, t0: int, t1: int) -> float:
        """Edge inferences device ``index`` is expected to emit in [t0, t1) (low estimate)."""
        if t1 <= t0:
            return 0.0
        device = self.fleet.devices[index]
        grid = np.linspace(t0, t1, 97).astype(np.int64)
        # arrivals are thinned from base * (1 + amp) by the daily load (see inference_draws)
        amp = rhythm_amplitude(device.device_class)
        rate = self._base[index] * (1 + amp) * float(np.mean(daily_load(device, grid)))
        return LOW_ESTIMATE * rate * (t1 - t0) / HOUR

    def inferences(self, devices: Iterable[int], t0: int, t1: int) -> float:
        """Edge inferences the ``devices`` are expected to emit together in [t0, t1)."""
        return sum(self.per_device_inferences(i, t0, t1) for i in devices)

    def split_at_updates(self, devices: Iterable[int], update_ns: dict[int, int]) -> tuple[float, float]:
        """Expected inferences of ``devices`` before and after each one's own update time
        (devices not in ``update_ns`` never update)."""
        start, end = self.fleet.start_ns, self.fleet.end_ns
        before = after = 0.0
        for i in devices:
            t = min(max(update_ns.get(i, end), start), end)
            before += self.per_device_inferences(i, start, t)
            after += self.per_device_inferences(i, t, end)
        return before, after


def shortfall(what: str, expected: float, minimum: float) -> str | None:
    """The reason a kind is left out when ``expected`` is under ``minimum``, else None."""
    if expected >= minimum:
        return None
    return f"about {expected:.0f} {what} expected, at least {minimum:.0f} needed"
