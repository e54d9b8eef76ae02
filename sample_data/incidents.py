"""Incidents injected on purpose, each with its ground truth.

``plan_incidents(fleet, kinds, seed)`` picks cohorts and times for the
requested incident kinds and returns :class:`Incident` objects. The
generator asks an :class:`Effects` (built from that list) how each device
behaves at each moment; the manifest gets each incident's ``describe()``::

    incidents = plan_incidents(fleet, KINDS, seed=7)
    effects = Effects(incidents)
    effects.error_add(device, t_ns)          # extra error probability
    effects.latency_factors(device, t_ns, new_fw)   # (preprocess, execute) factors
    [i.describe() for i in incidents]        # manifest entries

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
                          +1.2 points until the end: a ticket-worthy burn.
``site_offline``          one site loses its uplink for up to 6 hours; its
                          devices keep working and upload the backlog on
                          reconnection (``received_at`` hours after the spans).
``clock_skew``            three devices: +7 min ahead, 2 h behind, and a
                          clock drifting +20 s per hour.
``thermal_throttling``    jetson-orin devices at the hottest site: temperature
                          +35 C for a few hours; above 85 C (any device)
                          preprocess and execute slow down x2.3.

Times are fractions of the run (clipped to physical lengths), so the same
plan shape works for a 20-minute live demo and the two-day sample.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np

from .fleet import MODELS, NS, THROTTLE_C, THROTTLE_FACTOR, Device, Fleet, Site

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
HOUR = 3600 * NS
MINUTE = 60 * NS


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
    added_at_end: float = 0.012

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


def _agreement(edge_acc: float, cloud_acc: float, k: int) -> float:
    """P(edge label == cloud label) when wrong labels are uniform over the other k-1."""
    return edge_acc * cloud_acc + (1 - edge_acc) * (1 - cloud_acc) / (k - 1)


def _pick_site(sites: list[Site], fleet: Fleet, used: set[str], want, rng) -> Site | None:
    candidates = [s for s in sites if s.name not in used and want(s)]
    if not candidates:
        candidates = [s for s in sites if want(s)]
    if not candidates:
        return None
    # prefer the site with the most matching devices, break ties with the rng
    counts = np.array([sum(1 for d in fleet.devices if d.site is s and want.device(d)) for s in candidates], float)
    best = [c for c, n in zip(candidates, counts) if n == counts.max()]
    return best[int(rng.integers(len(best)))]


class _Want:
    def __init__(self, device_pred):
        self.device = device_pred
        self._fleet: Fleet | None = None

    def bind(self, fleet: Fleet) -> _Want:
        self._fleet = fleet
        return self

    def __call__(self, site: Site) -> bool:
        assert self._fleet is not None
        return any(d.site is site and self.device(d) for d in self._fleet.devices)


def plan_incidents(fleet: Fleet, kinds: tuple[str, ...] | list[str], seed: int) -> list[Incident]:
    """Choose cohorts and times for ``kinds``; deterministic in (fleet, kinds, seed).

    Kinds whose cohort does not exist in this fleet (e.g. no coral-tpu
    device in a five-device run) are left out; the manifest lists only the
    incidents that really happened.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown incident kind(s): {', '.join(unknown)}; known: {', '.join(KINDS)}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x1C1D])))
    start, dur, end = fleet.start_ns, fleet.duration_ns, fleet.end_ns
    sites = fleet.sites_in_use()
    used: set[str] = set()
    out: list[Incident] = []

    def at(frac: float) -> int:
        return start + int(frac * dur)

    def length(frac: float, cap_ns: int) -> int:
        return min(int(frac * dur), cap_ns)

    # Order matters only for which site each incident gets; kept fixed.
    if "site_offline" in kinds:
        want = _Want(lambda d: True).bind(fleet)
        site = _pick_site(sites, fleet, used, want, rng)
        if site is not None:
            used.add(site.name)
            s = at(0.58)
            e = s + length(0.125, 6 * HOUR)
            devs = [d.index for d in fleet.devices if d.site is site]
            out.append(SiteOffline(
                "site-offline-1", "site_offline", s, e, {"fleet.site": site.name},
                {"offline_hours": round((e - s) / HOUR, 3),
                 "effect": "no requests from the site while offline; its backlog arrives on reconnection, "
                           "received_at - span end_time up to the outage length"},
                {"signal": "telemetry freshness (received_at - end_time) by site; missing data from a site",
                 "expect": "freshness SLO burn and a data gap for the site during the outage, "
                           "late data re-opening the windows it covers"},
                f"Site {site.name} loses its uplink; devices buffer and upload the backlog when it returns.",
                devs,
            ))
    if "error_burst" in kinds:
        want = _Want(lambda d: True).bind(fleet)
        site = _pick_site(sites, fleet, used, want, rng)
        if site is not None:
            used.add(site.name)
            s = at(0.30)
            e = s + length(0.05, 45 * MINUTE)
            devs = [d.index for d in fleet.devices if d.site is site]
            rate = 0.30
            out.append(ErrorBurst(
                "error-burst-1", "error_burst", s, e, {"fleet.site": site.name},
                {"error_rate": rate, "baseline_error_rate": BASE_ERROR_RATE,
                 "burn_rate_vs_99.5pct_slo": round((rate + BASE_ERROR_RATE) / 0.005, 1)},
                {"signal": "inference success rate (span name 'inference', status ERROR) by site",
                 "slo": "success rate 99.5%", "alert": "page",
                 "windows": "burn > 14.4x over 1h and 5m"},
                f"Every inference at {site.name} fails with probability {rate} for "
                f"{round((e - s) / MINUTE)} minutes.",
                devs, error_rate=rate,
            ))
    if "input_drift" in kinds:
        want = _Want(lambda d: d.device_class.model == "defect-detector").bind(fleet)
        site = _pick_site(sites, fleet, used, want, rng)
        if site is not None:
            used.add(site.name)
            m = MODELS["defect-detector"]
            b = next(f for f in m.features if f.name == "brightness")
            lighting = ("daylight", "led", "low")
            new_probs = (0.30, 0.25, 0.45)
            prior = (0.70, 0.14, 0.10, 0.06)
            devs = [d.index for d in fleet.devices if d.site is site and want.device(d)]
            out.append(InputDrift(
                "input-drift-1", "input_drift", at(0.40), end,
                {"fleet.site": site.name, "ml.model.name": m.name},
                {"ml.feature.brightness": {"mean_shift": round(1.5 * b.std, 3), "in_std": 1.5,
                                           "reference_mean": b.mean, "std": b.std},
                 "ml.feature.lighting": {"before": dict(zip(lighting, (0.5, 0.4, 0.1))),
                                         "after": dict(zip(lighting, new_probs))},
                 "ml.prediction.label": {"before": dict(zip(m.labels, m.label_prior)),
                                         "after_true_class": dict(zip(m.labels, prior))},
                 "unchanged": ["ml.feature.contrast", "ml.feature.blur"]},
                {"signal": "feature and prediction distributions per model and cohort (site)",
                 "expect": "PSI / KS / Wasserstein on brightness and chi-square on lighting flag this "
                           "site only, from the start time; contrast and blur stay clean"},
                f"New lighting at {site.name}: camera inputs get brighter-but-noisier frames.",
                devs,
                feature_shift={"brightness": 1.5 * b.std},
                category_probs={"lighting": new_probs},
                label_prior=prior,
            ))
    if "thermal_throttling" in kinds:
        want = _Want(lambda d: d.device_class.name == "jetson-orin").bind(fleet)
        cands = [s for s in sites if want(s)]
        if cands:
            free = [s for s in cands if s.name not in used] or cands
            site = max(free, key=lambda s: (s.ambient_c, s.name))
            used.add(site.name)
            s = at(0.75)
            e = s + length(0.12, 4 * HOUR)
            devs = [d.index for d in fleet.devices if d.site is site and want.device(d)]
            out.append(ThermalThrottling(
                "thermal-1", "thermal_throttling", s, e,
                {"fleet.site": site.name, "device.class": "jetson-orin"},
                {"temperature_rise_c": 35.0, "ramp_minutes": 30, "threshold_c": THROTTLE_C,
                 "latency_factor_preprocess_execute": THROTTLE_FACTOR,
                 "throttled": "while the modelled SoC temperature is above the threshold "
                              "(most of the window; other devices never reach it)"},
                {"signal": "device.temperature gauge and inference latency by device",
                 "expect": "temperature above 85 C together with ~2.3x latency on these devices only"},
                f"Cooling failure at {site.name}: jetson-orin modules heat up and throttle.",
                devs,
            ))
    if "slow_error_increase" in kinds:
        regions = sorted({s.region for s in sites})
        busy = {s.region for s in sites if s.name in used}
        free = [r for r in regions if r not in busy] or regions
        region = free[int(rng.integers(len(free)))]
        devs = [d.index for d in fleet.devices if d.site.region == region]
        s = at(0.10)
        add = 0.012
        out.append(SlowErrorIncrease(
            "slow-errors-1", "slow_error_increase", s, end, {"fleet.region": region},
            {"error_rate_start": BASE_ERROR_RATE, "error_rate_end": BASE_ERROR_RATE + add,
             "shape": "linear ramp", "burn_rate_vs_99.5pct_slo_at_end": round((BASE_ERROR_RATE + add) / 0.005, 2)},
            {"signal": "inference success rate by region",
             "slo": "success rate 99.5%", "alert": "ticket (not page)",
             "windows": "burn > 1x over 3d and 6h (over 6h only, in a two-day set)"},
            f"A memory-fragmentation bug makes inferences in {region} fail slowly more often.",
            devs, added_at_end=add,
        ))
    if "latency_regression" in kinds:
        devs = [d.index for d in fleet.devices if d.device_class.name == "coral-tpu"]
        ro = next((r for r in fleet.rollouts if r.kind == "firmware" and r.target == "coral-tpu"), None)
        if devs and ro is not None:
            out.append(LatencyRegression(
                "latency-regression-1", "latency_regression", ro.stages[0].start_ns, end,
                {"device.class": "coral-tpu", "device.firmware.version": ro.to_version},
                {"execute_latency_factor": 1.8, "from_firmware": ro.from_version,
                 "to_firmware": ro.to_version, "rollout_id": ro.rollout_id,
                 "per_device_start": "each device's own firmware update (its deployment span)"},
                {"signal": "inference latency (span duration, execute child span) by device class "
                           "and firmware version",
                 "expect": "p50/p95 of coral-tpu on 2.15.0 ~1.6-1.8x the same devices on 2.14.1; "
                           "other classes unchanged after their own firmware update"},
                "Firmware 2.15.0 on the TPU stick runs the delegate at a lower clock.",
                devs,
            ))
    if "shadow_disagreement" in kinds:
        ro = next((r for r in fleet.rollouts if r.kind == "model" and r.target == "defect-detector"), None)
        m = MODELS["defect-detector"]
        devs = [d.index for d in fleet.devices if d.device_class.model == m.name]
        if devs and ro is not None:
            k = len(m.labels)
            acc = 0.80
            out.append(ShadowDisagreement(
                "shadow-disagreement-1", "shadow_disagreement", ro.stages[0].start_ns, end,
                {"ml.model.name": m.name, "ml.model.version": ro.to_version},
                {"edge_accuracy_before": m.edge_accuracy, "edge_accuracy_after": acc,
                 "expected_agreement_before": round(_agreement(m.edge_accuracy, m.cloud_accuracy, k), 3),
                 "expected_agreement_after": round(_agreement(acc, m.cloud_accuracy, k), 3),
                 "rollout_id": ro.rollout_id,
                 "per_device_start": "each device's own model load of the new version"},
                {"signal": "edge vs cloud on the same ml.request.id: agreement, Cohen's kappa, flip matrix",
                 "expect": "agreement drops on the canary devices first, then fleet-wide as the rollout "
                           "proceeds; version 2.3.1 stays at the old agreement"},
                f"Model {m.name} {ro.to_version} (quantised) disagrees with the cloud model more often.",
                devs, model=m.name, version=ro.to_version, edge_accuracy=acc,
            ))
    if "clock_skew" in kinds:
        offline = {i for inc in out if isinstance(inc, SiteOffline) for i in inc.devices}
        pool = [d.index for d in fleet.devices if d.index not in offline]
        n = min(3, len(pool))
        chosen = sorted(int(x) for x in rng.choice(pool, size=n, replace=False)) if n else []
        specs = [(+420 * NS, 0.0, "ahead 7 minutes"), (-2 * HOUR, 0.0, "behind 2 hours"),
                 (0, 20.0 / 3600.0 * 1e6, "drifting +20 s per hour")]
        skewed = []
        for idx, (off, ppm, what) in zip(chosen, specs):
            d = fleet.devices[idx]
            d.clock_offset_ns = off
            d.clock_drift_ppm = ppm
            skewed.append({"device.id": d.device_id, "offset_seconds": off / NS,
                           "drift_ppm": round(ppm, 3), "what": what})
        if chosen:
            out.append(ClockSkew(
                "clock-skew-1", "clock_skew", start, end,
                {"device.id": [s["device.id"] for s in skewed]},
                {"devices": skewed,
                 "model": "device time = true time + offset_seconds + drift_ppm * 1e-6 * (true time - run start)"},
                {"signal": "received_at - end_time per device",
                 "expect": "negative for the device ahead, about +2 h for the one behind, growing for the "
                           "drifting one; other devices within seconds (except the offline site's backlog)"},
                "Three devices with broken real-time clocks.",
                chosen,
            ))
    return out
