"""Incident scheduling: which cohort each requested kind hits, and when.

``plan_incidents(fleet, kinds, seed, volume)`` turns the kinds of the catalogue
(:mod:`sample_data.incidents`) into :class:`~sample_data.incidents.Incident`
objects with their cohort, times, magnitude and detection hints::

    from sample_data.incident_plan import plan_incidents
    plan = plan_incidents(fleet, KINDS, seed=7, volume=RunVolume(fleet, ...))
    [i.describe(fleet) for i in plan.incidents]   # manifest entries
    plan.omitted                                  # {kind: why this run cannot show it}

Site-wide incidents get different sites where the fleet has enough of them
(the site with the most matching devices, ties broken by the plan's own RNG
stream), so their signals do not mask each other. A kind whose cohort does
not exist, or whose cohort and window would carry too little telemetry for
its signal to show (:mod:`sample_data.visibility`), is left out of the run
and its manifest, with the reason in ``plan.omitted``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import visibility as vis
from .fleet import HOUR, MINUTE, MODELS, NS, THROTTLE_C, THROTTLE_FACTOR, Device, Fleet, Site
from .incidents import (
    BASE_ERROR_RATE,
    KINDS,
    ClockSkew,
    Effects,
    ErrorBurst,
    Incident,
    InputDrift,
    LatencyRegression,
    ShadowDisagreement,
    SiteOffline,
    SlowErrorIncrease,
    ThermalThrottling,
)
from .physics import temperature

THERMAL_MARGIN_C = 8.0  # the hot cohort's plateau sits at least this far above the throttling threshold
SLOW_ERROR_ADDED = 0.02  # error rate added by the end of the slow increase (0.3 % -> 2.3 %)


@dataclass
class IncidentPlan:
    """The incidents of a run, and the kinds asked for but left out, each with its reason."""

    incidents: list[Incident] = field(default_factory=list)
    omitted: dict[str, str] = field(default_factory=dict)


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


def _pick_site(sites: list[Site], used: set[str], want: _Want, rng: np.random.Generator,
               weight: Callable[[list[int]], float] | None = None) -> Site | None:
    candidates = [s for s in sites if s.name not in used and want(s)]
    if not candidates:
        candidates = [s for s in sites if want(s)]
    if not candidates:
        return None
    # prefer the site with the most matching devices (or the most ``weight``: the most
    # telemetry where the incident happens), break ties with the rng
    counts = np.array([weight(want.at(s)) if weight else len(want.at(s)) for s in candidates], float)
    best = [c for c, n in zip(candidates, counts) if n == counts.max()]
    return best[int(rng.integers(len(best)))]


def _hot_plateau_rise(fleet: Fleet, devices: list[int], s: int, e: int, ramp: int) -> float:
    """Extra heat that puts every device of the cohort at least THERMAL_MARGIN_C above the
    throttling threshold for the whole plateau, whatever the site's climate and local time."""
    grid = np.linspace(s + ramp, e - ramp, 97).astype(np.int64)
    calm = Effects([])
    coolest = min(float(temperature(fleet.devices[i], calm, grid).min()) for i in devices)
    return round(THROTTLE_C + THERMAL_MARGIN_C - coolest, 1)


def plan_incidents(fleet: Fleet, kinds: tuple[str, ...] | list[str], seed: int,
                   volume: vis.RunVolume) -> IncidentPlan:
    """Choose cohorts and times for ``kinds``; deterministic in (fleet, kinds, seed, volume).

    Kinds whose cohort does not exist in this fleet (e.g. no coral-tpu
    device in a five-device run), or that this run is too small or too
    short to show, are left out with their reason; the manifest lists only
    the incidents that really happened and show in the data.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown incident kind(s): {', '.join(unknown)}; known: {', '.join(KINDS)}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x1C1D])))
    start, dur, end = fleet.start_ns, fleet.duration_ns, fleet.end_ns
    sites = fleet.sites_in_use()
    used: set[str] = set()
    plan = IncidentPlan()
    out = plan.incidents

    def at(frac: float) -> int:
        return start + int(frac * dur)

    def window(at_frac: float, length_frac: float, cap_ns: int) -> tuple[int, int]:
        """From ``at_frac`` of the run, for ``length_frac`` of it but at most ``cap_ns``."""
        s = at(at_frac)
        return s, s + min(int(length_frac * dur), cap_ns)

    def omit(kind: str, reason: str | None) -> bool:
        """Record why ``kind`` is left out; True when it is (``reason`` not None)."""
        if reason is not None:
            plan.omitted[kind] = reason
        return reason is not None

    def claim_site(kind: str, want: _Want, enough: Callable[[list[int]], str | None],
                   weight: Callable[[list[int]], float] | None = None) -> tuple[Site, list[int]] | None:
        """A site for a site-wide incident (not used yet if possible, the most ``weight``),
        marked used, with its wanted devices; None (and the reason recorded) when no site has
        the cohort or the chosen one is too small for the incident to show (``enough``)."""
        site = _pick_site(sites, used, want, rng, weight)
        if site is None:
            omit(kind, "no device of its cohort in this fleet")
            return None
        devs = want.at(site)
        if omit(kind, enough(devs)):
            return None
        used.add(site.name)
        return site, devs

    every_device = _Want(fleet, lambda d: True)
    defect_detectors = _Want(fleet, lambda d: d.device_class.model == "defect-detector")
    # Order matters only for which site each incident gets; kept fixed.
    if "site_offline" in kinds:
        s, e = window(0.58, 0.125, 6 * HOUR)
        shortest = max(vis.MIN_OUTAGE, 3 * volume.export_interval_ns)

        def outage_shows(devs: list[int]) -> str | None:
            if e - s < shortest:
                return (f"a {(e - s) / MINUTE:.0f}-minute outage (1/8 of the run) is too short to show; "
                        f"it needs {shortest / MINUTE:.0f} minutes (at least 3 export intervals)")
            return vis.shortfall("inferences at the site during the outage", volume.inferences(devs, s, e),
                                 vis.MIN_OUTAGE_INFERENCES)

        if claimed := claim_site("site_offline", every_device, outage_shows,
                                 lambda devs: volume.inferences(devs, s, e)):
            site, devs = claimed
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
        s = at(0.30)
        e = s + 45 * MINUTE
        rate = 0.30

        def burst_shows(devs: list[int]) -> str | None:
            if dur < vis.MIN_BURST_RUN:
                return (f"the run is shorter than {vis.MIN_BURST_RUN // HOUR} hours "
                        "(a 45-minute burst with the page alert's 1-hour window around it)")
            return vis.shortfall("inferences at the site during the 45-minute burst",
                                 volume.inferences(devs, s, e), vis.MIN_BURST_INFERENCES)

        if claimed := claim_site("error_burst", every_device, burst_shows,
                                 lambda devs: volume.inferences(devs, s, e)):
            site, devs = claimed
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
        t0 = at(0.40)

        def drift_shows(devs: list[int]) -> str | None:
            cohort = set(devs)
            others = [volume.inferences([i for i in defect_detectors.at(site) if i not in cohort], start, t0)
                      for site in sites]
            return (vis.shortfall("inferences of the drifted cohort before the drift",
                                  volume.inferences(devs, start, t0), vis.MIN_DRIFT_INFERENCES)
                    or vis.shortfall("inferences of the drifted cohort after its start",
                                     volume.inferences(devs, t0, end), vis.MIN_DRIFT_INFERENCES)
                    or vis.shortfall("defect-detector inferences at another site to compare with (before the "
                                     "drift)", max(others, default=0.0), vis.MIN_DRIFT_INFERENCES))

        if claimed := claim_site("input_drift", defect_detectors, drift_shows):
            site, devs = claimed
            m = MODELS["defect-detector"]
            b = next(f for f in m.features if f.name == "brightness")
            lighting = ("daylight", "led", "low")
            new_probs = (0.30, 0.25, 0.45)
            prior = (0.70, 0.14, 0.10, 0.06)
            out.append(InputDrift(
                "input-drift-1", "input_drift", t0, end,
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
        _plan_thermal(fleet, volume, sites, used, plan)
    if "slow_error_increase" in kinds:
        s = at(0.10)
        late = end - (end - s) // 4
        regions = sorted({st.region for st in sites})
        busy = {st.region for st in sites if st.name in used}
        late_volume = {r: volume.inferences([d.index for d in fleet.devices if d.site.region == r], late, end)
                       for r in regions}
        shows = [r for r in regions if late_volume[r] >= vis.MIN_SLOW_ERROR_LATE]
        free = [r for r in shows if r not in busy] or shows
        if not omit("slow_error_increase", None if free else vis.shortfall(
                "inferences in the largest region in the last quarter of the ramp",
                max(late_volume.values()), vis.MIN_SLOW_ERROR_LATE)):
            region = free[int(rng.integers(len(free)))]
            devs = [d.index for d in fleet.devices if d.site.region == region]
            add = SLOW_ERROR_ADDED
            out.append(SlowErrorIncrease(
                "slow-errors-1", "slow_error_increase", s, end, {"fleet.region": region},
                {"error_rate_start": BASE_ERROR_RATE, "error_rate_end": BASE_ERROR_RATE + add,
                 "shape": "linear ramp",
                 "burn_rate_vs_99.5pct_slo_at_end": round((BASE_ERROR_RATE + add) / 0.005, 2)},
                {"signal": "inference success rate by region",
                 "slo": "success rate 99.5%", "alert": "ticket (not page)",
                 "windows": "burn > 1x over 3d and 6h (over 6h only, in a two-day set)"},
                f"A memory-fragmentation bug makes inferences in {region} fail slowly more often.",
                devs, added_at_end=add,
            ))
    if "latency_regression" in kinds:
        devs = [d.index for d in fleet.devices if d.device_class.name == "coral-tpu"]
        ro = next((r for r in fleet.rollouts if r.kind == "firmware" and r.target == "coral-tpu"), None)
        if not devs or ro is None:
            omit("latency_regression", "no coral-tpu device in this fleet")
        else:
            old, new = volume.split_at_updates(devs, {i: t for i, (_, t) in ro.schedule.items()})
            if not omit("latency_regression", vis.shortfall(
                    "coral-tpu execute spans on the older of the two firmwares", volume.stage_ratio * min(old, new),
                    vis.MIN_EXECUTE_SPANS)):
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
        if not devs or ro is None:
            omit("shadow_disagreement", "no defect-detector device in this fleet")
        else:
            old, new = volume.split_at_updates(devs, {i: t for i, (_, t) in ro.schedule.items()})
            if not omit("shadow_disagreement", vis.shortfall(
                    "edge/cloud pairs on the less used of the two model versions",
                    volume.shadow_ratio * min(old, new), vis.MIN_SHADOW_PAIRS)):
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
        _plan_clock_skew(fleet, volume, rng, plan)
    return plan


def _plan_thermal(fleet: Fleet, volume: vis.RunVolume, sites: list[Site], used: set[str],
                  plan: IncidentPlan) -> None:
    """Jetson-orin modules at one site overheat from 75 % of the run for 12 % of it (at most
    4 hours): heat sized so that all of them throttle between the ramps, at the site with the
    most of their inferences in the middle of the window (one no other incident uses, if one
    has enough)."""
    kind = "thermal_throttling"
    want = _Want(fleet, lambda d: d.device_class.name == "jetson-orin")
    s = fleet.start_ns + int(0.75 * fleet.duration_ns)
    e = s + min(int(0.12 * fleet.duration_ns), 4 * HOUR)
    ramp = min(30 * MINUTE, (e - s) // 8)  # the middle half of the window is all plateau
    shortest = max(vis.MIN_THERMAL_WINDOW, 4 * volume.metric_interval_ns)
    cands = [st for st in sites if want(st)]
    if not cands:
        plan.omitted[kind] = "no jetson-orin device in this fleet"
        return
    if e - s < shortest:
        plan.omitted[kind] = (f"a {(e - s) / MINUTE:.0f}-minute hot window (12 % of the run) is too short to "
                              f"show; it needs {shortest / MINUTE:.0f} minutes (at least 4 metric intervals)")
        return
    q = (e - s) // 4

    def hot_inferences(st: Site) -> float:
        return volume.inferences(want.at(st), s + q, e - q)

    free = [st for st in cands if st.name not in used and hot_inferences(st) >= vis.MIN_THERMAL_INFERENCES]
    site = max(free or cands, key=lambda st: (hot_inferences(st), st.name))
    reason = vis.shortfall("jetson-orin inferences at the site in the middle of the hot window",
                           hot_inferences(site), vis.MIN_THERMAL_INFERENCES)
    if reason:
        plan.omitted[kind] = reason
        return
    used.add(site.name)
    devs = want.at(site)
    rise = _hot_plateau_rise(fleet, devs, s, e, ramp)
    plan.incidents.append(ThermalThrottling(
        "thermal-1", kind, s, e,
        {"fleet.site": site.name, "device.class": "jetson-orin"},
        {"temperature_rise_c": rise, "ramp_minutes": round(ramp / MINUTE, 2),
         "threshold_c": THROTTLE_C, "plateau_at_least_c": THROTTLE_C + THERMAL_MARGIN_C,
         "latency_factor_preprocess_execute": THROTTLE_FACTOR,
         "throttled": "while the modelled SoC temperature is above the threshold "
                      "(the whole window but its ramps; other devices never reach it)"},
        {"signal": "device.temperature gauge and inference latency by device",
         "expect": "temperature above 85 C together with ~2.2x inference latency (2.3x on "
                   "preprocess and execute) on these devices only"},
        f"Cooling failure at {site.name}: jetson-orin modules heat up and throttle.",
        devs, temperature_rise_c=rise, ramp_ns=ramp,
    ))


def _plan_clock_skew(fleet: Fleet, volume: vis.RunVolume, rng: np.random.Generator, plan: IncidentPlan) -> None:
    """Three devices with broken clocks, none in a site-wide incident's cohort (whose checks
    read the device's own timestamps), each busy enough for its lag to be measured."""
    start, end = fleet.start_ns, fleet.end_ns
    site_wide = {i for inc in plan.incidents if "fleet.site" in inc.cohort for i in inc.devices}
    pool = [d.index for d in fleet.devices if d.index not in site_wide
            and volume.per_device_inferences(d.index, start, end) >= vis.MIN_SKEW_INFERENCES]
    if len(pool) < 3:
        plan.omitted["clock_skew"] = (
            f"only {len(pool)} device(s) outside the site-wide incidents emit the {vis.MIN_SKEW_INFERENCES} "
            "inferences a skewed clock needs to show; three are needed")
        return
    chosen = sorted(int(x) for x in rng.choice(pool, size=3, replace=False))
    # the drifting clock gains at least four export intervals over the run, so its drift stands
    # out of the export wait (20 s per hour unless the run is short or the interval long)
    gain_per_hour = max(20.0, 4 * volume.export_interval_ns / NS / (fleet.duration_ns / HOUR))
    specs = [(+420 * NS, 0.0, "ahead 7 minutes"), (-2 * HOUR, 0.0, "behind 2 hours"),
             (0, gain_per_hour / 3600.0 * 1e6, f"drifting +{gain_per_hour:.4g} s per hour")]
    skewed = []
    for idx, (off, ppm, what) in zip(chosen, specs):
        d = fleet.devices[idx]
        d.clock_offset_ns = off
        d.clock_drift_ppm = ppm
        skewed.append({"device.id": d.device_id, "offset_seconds": off / NS,
                       "drift_ppm": round(ppm, 3), "what": what})
    plan.incidents.append(ClockSkew(
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
