"""Incident scheduling: which cohort each requested kind hits, and when.

``plan_incidents(fleet, kinds, seed)`` turns the kinds of the catalogue
(:mod:`sample_data.incidents`) into :class:`~sample_data.incidents.Incident`
objects with their cohort, times, magnitude and detection hints::

    from sample_data.incident_plan import plan_incidents
    incidents = plan_incidents(fleet, KINDS, seed=7)
    [i.describe(fleet) for i in incidents]   # manifest entries

Site-wide incidents get different sites where the fleet has enough of them
(the site with the most matching devices, ties broken by the plan's own RNG
stream), so their signals do not mask each other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .fleet import HOUR, MINUTE, MODELS, NS, THROTTLE_C, THROTTLE_FACTOR, Device, Fleet, Site
from .incidents import (
    BASE_ERROR_RATE,
    KINDS,
    ClockSkew,
    ErrorBurst,
    Incident,
    InputDrift,
    LatencyRegression,
    ShadowDisagreement,
    SiteOffline,
    SlowErrorIncrease,
    ThermalThrottling,
)


def _agreement(edge_acc: float, cloud_acc: float, k: int) -> float:
    """P(edge label == cloud label) when wrong labels are uniform over the other k-1."""
    return edge_acc * cloud_acc + (1 - edge_acc) * (1 - cloud_acc) / (k - 1)


class _Want:
    """Which devices an incident's cohort takes (``want.device(d)``); called
    with a site, whether the site has any of them."""

    def __init__(self, fleet: Fleet, device_pred: Callable[[Device], bool]):
        self.device = device_pred
        self._fleet = fleet

    def __call__(self, site: Site) -> bool:
        return any(d.site is site and self.device(d) for d in self._fleet.devices)

    def at(self, site: Site) -> list[int]:
        """Indices of the wanted devices at ``site``."""
        return [d.index for d in self._fleet.devices if d.site is site and self.device(d)]


def _pick_site(sites: list[Site], used: set[str], want: _Want, rng: np.random.Generator) -> Site | None:
    candidates = [s for s in sites if s.name not in used and want(s)]
    if not candidates:
        candidates = [s for s in sites if want(s)]
    if not candidates:
        return None
    # prefer the site with the most matching devices, break ties with the rng
    counts = np.array([len(want.at(s)) for s in candidates], float)
    best = [c for c, n in zip(candidates, counts) if n == counts.max()]
    return best[int(rng.integers(len(best)))]


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

    def window(at_frac: float, length_frac: float, cap_ns: int) -> tuple[int, int]:
        """From ``at_frac`` of the run, for ``length_frac`` of it but at most ``cap_ns``."""
        s = at(at_frac)
        return s, s + min(int(length_frac * dur), cap_ns)

    def claim_site(want: _Want) -> tuple[Site, list[int]] | None:
        """A site for a site-wide incident (not used yet if possible), marked used, with
        its wanted devices."""
        site = _pick_site(sites, used, want, rng)
        if site is None:
            return None
        used.add(site.name)
        return site, want.at(site)

    every_device = _Want(fleet, lambda d: True)
    defect_detectors = _Want(fleet, lambda d: d.device_class.model == "defect-detector")
    # Order matters only for which site each incident gets; kept fixed.
    if "site_offline" in kinds and (claimed := claim_site(every_device)):
        site, devs = claimed
        s, e = window(0.58, 0.125, 6 * HOUR)
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
    if "error_burst" in kinds and (claimed := claim_site(every_device)):
        site, devs = claimed
        s, e = window(0.30, 0.05, 45 * MINUTE)
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
    if "input_drift" in kinds and (claimed := claim_site(defect_detectors)):
        site, devs = claimed
        m = MODELS["defect-detector"]
        b = next(f for f in m.features if f.name == "brightness")
        lighting = ("daylight", "led", "low")
        new_probs = (0.30, 0.25, 0.45)
        prior = (0.70, 0.14, 0.10, 0.06)
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
        want = _Want(fleet, lambda d: d.device_class.name == "jetson-orin")
        cands = [s for s in sites if want(s)]
        if cands:
            # the hottest site, not the one with the most devices: the heat is the point
            free = [s for s in cands if s.name not in used] or cands
            site = max(free, key=lambda s: (s.ambient_c, s.name))
            used.add(site.name)
            s, e = window(0.75, 0.12, 4 * HOUR)
            devs = want.at(site)
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
