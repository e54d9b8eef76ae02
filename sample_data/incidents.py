"""Incidents injected on purpose, each with its ground truth: the catalogue.

One :class:`Incident` subclass per kind says what the incident does to a
device (hooks over true times); :class:`Effects` adds up all incidents'
hooks for the generator. Which cohort and times each kind gets is the plan
(:func:`sample_data.incident_plan.plan_incidents`). The generator asks an
:class:`Effects` (built from the plan) how each device behaves at each
moment; the manifest gets each incident's ``describe()``::

    from sample_data.incident_plan import plan_incidents
    incidents = plan_incidents(fleet, KINDS, seed=7)
    effects = Effects(incidents)
    effects.error_rate(device, t_ns)         # error probability: baseline plus incidents
    effects.latency_factors(device, t_ns, new_fw)   # (preprocess, execute) factors
    [i.describe(fleet) for i in incidents]   # manifest entries

Kinds (``KINDS``), with the cohort they hit and the signal that shows them:

``input_drift``           defect-detector devices at one site: from ``start``
                          ``ml.feature.brightness`` mean moves by +1.5 sd,
                          ``ml.feature.lighting`` "low" 10 % -> 45 %, the
                          predicted "ok" share drops; other features, sites
                          and models stay put.
``shadow_disagreement``   defect-detector 2.4.0 (canary, then fleet): edge
                          accuracy 0.94 -> 0.80, so edge-cloud agreement on
                          the same ``ml.request.id`` falls from ~0.91 to ~0.78.
``latency_regression``    coral-tpu devices after firmware 2.15.0: execute
                          stage x1.8 (per device, from its own update).
``error_burst``           every inference at one site fails with p=0.30 for
                          45 minutes: a page-worthy burn.
``slow_error_increase``   one region: the error rate climbs linearly by
                          +2 points until the end: a ticket-worthy burn.
``site_offline``          one site loses its uplink for 1/8 of the run, at
                          most 6 hours; its
                          devices keep working and upload the backlog on
                          reconnection (``received_at`` hours after the spans).
``clock_skew``            three devices: +7 min ahead, 2 h behind, and a
                          clock drifting +20 s per hour.
``thermal_throttling``    jetson-orin devices at one site: heat that puts
                          them at 93 C or more for up to 4 hours; above 85 C
                          (any device) preprocess and execute slow down x2.3.

Times are fractions of the run (clipped to physical lengths). A kind that a
run is too small or too short to show in its data is left out of the run
and its manifest (:mod:`sample_data.visibility`); the command line says
which and why.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np

from .fleet import MINUTE, NS, Device, Fleet

KINDS: tuple[str, ...] = (
    "input_drift",
    "shadow_disagreement",
    "latency_regression",
    "error_burst",
    "slow_error_increase",
    "site_offline",
    "clock_skew",
    "thermal_throttling",
)

BASE_ERROR_RATE = 0.003


def iso(ns: int) -> str:
    """UTC ISO-8601 with nanoseconds trimmed to microseconds."""
    t = _dt.datetime.fromtimestamp(ns // NS, tz=_dt.timezone.utc).replace(microsecond=(ns % NS) // 1000)
    return t.isoformat().replace("+00:00", "Z")


@dataclass
class Incident:
    """Base class: one injected incident. Hooks default to "no effect"."""

    incident_id: str
    kind: str
    start_ns: int
    end_ns: int
    cohort: dict
    magnitude: dict
    detect: dict
    description: str
    devices: list[int] = field(default_factory=list)  # device indices in the cohort

    def describe(self, fleet: Fleet) -> dict:
        return {
            "id": self.incident_id,
            "kind": self.kind,
            "description": self.description,
            "cohort": self.cohort,
            "devices": [fleet.devices[i].device_id for i in self.devices],
            "start": iso(self.start_ns),
            "end": iso(self.end_ns),
            "start_unix_nano": self.start_ns,
            "end_unix_nano": self.end_ns,
            "magnitude": self.magnitude,
            "detect": self.detect,
        }

    def hits(self, device: Device) -> bool:
        return device.index in self._device_set

    def __post_init__(self) -> None:
        self._device_set = set(self.devices)

    # hooks (vectorised over true times t, int64 ns)
    def error_add(self, device: Device, t: np.ndarray) -> np.ndarray | None:
        return None

    def latency_factors(self, device: Device, t: np.ndarray, new_fw: np.ndarray):
        return None

    def temperature_add(self, device: Device, t: np.ndarray) -> np.ndarray | None:
        return None

    def offline_window(self, device: Device) -> tuple[int, int] | None:
        return None


@dataclass
class InputDrift(Incident):
    feature_shift: dict = field(default_factory=dict)  # numeric feature -> added amount
    category_probs: dict = field(default_factory=dict)  # categorical feature -> new probabilities
    label_prior: tuple[float, ...] = ()

    def mask(self, device: Device, t: np.ndarray) -> np.ndarray | None:
        if not self.hits(device):
            return None
        return t >= self.start_ns


@dataclass
class ShadowDisagreement(Incident):
    model: str = ""
    version: str = ""
    edge_accuracy: float = 0.8


@dataclass
class LatencyRegression(Incident):
    execute_factor: float = 1.8

    def latency_factors(self, device, t, new_fw):
        if not self.hits(device):
            return None
        return None, np.where(new_fw, self.execute_factor, 1.0)


@dataclass
class ErrorBurst(Incident):
    error_rate: float = 0.3

    def error_add(self, device, t):
        if not self.hits(device):
            return None
        return np.where((t >= self.start_ns) & (t < self.end_ns), self.error_rate, 0.0)


@dataclass
class SlowErrorIncrease(Incident):
    added_at_end: float = 0.02

    def error_add(self, device, t):
        if not self.hits(device):
            return None
        frac = np.clip((t - self.start_ns) / max(1, self.end_ns - self.start_ns), 0.0, 1.0)
        return np.where(t >= self.start_ns, frac * self.added_at_end, 0.0)


@dataclass
class SiteOffline(Incident):
    def offline_window(self, device):
        if not self.hits(device):
            return None
        return (self.start_ns, self.end_ns)


@dataclass
class ClockSkew(Incident):
    pass


@dataclass
class ThermalThrottling(Incident):
    """Extra heat on the cohort; the throttling itself is device physics
    (``fleet.THROTTLE_C``): any device above it slows down."""

    temperature_rise_c: float = 35.0
    ramp_ns: int = 30 * MINUTE

    def heat(self, t: np.ndarray) -> np.ndarray:
        up = np.clip((t - self.start_ns) / self.ramp_ns, 0.0, 1.0)
        down = np.clip((self.end_ns - t) / self.ramp_ns, 0.0, 1.0)
        return self.temperature_rise_c * np.minimum(up, down)

    def temperature_add(self, device, t):
        if not self.hits(device):
            return None
        return self.heat(t)


class Effects:
    """What the incidents do to one device at given true times (all vectorised)."""

    def __init__(self, incidents: list[Incident]):
        self.incidents = incidents
        self.drift = [i for i in incidents if isinstance(i, InputDrift)]
        self.shadow = [i for i in incidents if isinstance(i, ShadowDisagreement)]

    def error_rate(self, device: Device, t: np.ndarray) -> np.ndarray:
        p = np.full(t.shape, BASE_ERROR_RATE)
        for inc in self.incidents:
            add = inc.error_add(device, t)
            if add is not None:
                p = p + add
        return np.clip(p, 0.0, 1.0)

    def latency_factors(self, device: Device, t: np.ndarray, new_fw: np.ndarray):
        pre = np.ones(t.shape)
        exe = np.ones(t.shape)
        for inc in self.incidents:
            f = inc.latency_factors(device, t, new_fw)
            if f is None:
                continue
            if f[0] is not None:
                pre = pre * f[0]
            if f[1] is not None:
                exe = exe * f[1]
        return pre, exe

    def temperature_add(self, device: Device, t: np.ndarray) -> np.ndarray:
        out = np.zeros(t.shape)
        for inc in self.incidents:
            add = inc.temperature_add(device, t)
            if add is not None:
                out = out + add
        return out

    def offline_window(self, device: Device) -> tuple[int, int] | None:
        for inc in self.incidents:
            w = inc.offline_window(device)
            if w is not None:
                return w
        return None

    def edge_accuracy(self, device: Device, model_name: str, versions: np.ndarray, base: float) -> np.ndarray:
        acc = np.full(versions.shape, base)
        for inc in self.shadow:
            if inc.model == model_name:
                acc = np.where(versions == inc.version, inc.edge_accuracy, acc)
        return acc
