"""Check that a request log really contains the incidents its manifest lists.

Each incident kind has a check that measures the effect in the decoded data
(not in the simulator's internals) and raises :class:`IncidentCheckFailed`
when it is absent, too small, too large or leaks into other cohorts::

    from sample_data.verify import FleetData, check_incident, check_all
    data = FleetData.load("sample_data/fleet-sample.otlp.zst")
    manifest = json.load(open("sample_data/manifest.json"))
    results = check_all(data, manifest)       # {incident id: measured values}

    python -m sample_data.verify sample_data/fleet-sample.otlp.zst sample_data/manifest.json

Tolerances are statistical (several standard errors of what was measured)
and every check also demands the data a detector would need to tell the
incident from normal operation; the simulator lists an incident only when
its run is big enough for that (:mod:`sample_data.visibility`). The
measured values are returned so a report can show them.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from .fleet import DEVICE_CLASSES
from .incidents import BASE_ERROR_RATE
from .readback import read_metric_points, read_spans

NS = 1_000_000_000
HOUR = 3600 * NS


class IncidentCheckFailed(AssertionError):
    pass


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise IncidentCheckFailed(message)


def _share_se(p: float, n: int) -> float:
    """Standard error of a share ``p`` measured on ``n`` events."""
    return float(np.sqrt(max(p * (1 - p), 1e-6) / max(n, 1)))


def _median_log_se(*samples: np.ndarray) -> float:
    """Standard error of the difference of the log medians of ``samples`` (robust spread:
    the median absolute deviation, so the Pareto tail does not inflate it)."""
    var = 0.0
    for x in samples:
        lx = np.log(x)
        sigma = 1.4826 * float(np.median(np.abs(lx - np.median(lx))))
        var += (1.2533 * sigma) ** 2 / len(x)
    return float(np.sqrt(var))


class FleetData:
    """Edge inference spans and a few other columns as numpy arrays."""

    def __init__(self, spans, temperature_points) -> None:
        s = spans
        name = np.array(s.name)
        attrs, res = s.attributes, s.resource
        mode = np.array([a.get("ml.inference.mode", "") if n == "inference" else "" for n, a in zip(s.name, attrs)])
        start = np.array(s.start_ns, dtype=np.int64)
        end = np.array(s.end_ns, dtype=np.int64)
        recv = np.array(s.received_ns, dtype=np.int64)
        status = np.array(s.status)

        ei = np.flatnonzero((name == "inference") & (mode == "edge"))
        self.n = len(ei)

        def rcol(key, idx):
            return np.array([res[i].get(key, "") for i in idx])

        def acol(key, idx, default=None):
            return np.array([attrs[i].get(key, default) for i in idx])

        self.device = rcol("device.id", ei)
        self.site = rcol("fleet.site", ei)
        self.region = rcol("fleet.region", ei)
        self.device_class = rcol("device.class", ei)
        self.firmware = rcol("device.firmware.version", ei)
        self.model = acol("ml.model.name", ei, "")
        self.version = acol("ml.model.version", ei, "")
        self.request_id = acol("ml.request.id", ei, "")
        self.label = acol("ml.prediction.label", ei, "")
        self.start = start[ei]
        self.end = end[ei]
        self.received = recv[ei]
        self.error = status[ei] == 2
        self.duration_ms = (self.end - self.start) / 1e6
        self._attrs = [attrs[i] for i in ei]

        ci = np.flatnonzero((name == "inference") & (mode == "cloud"))
        self.cloud_label = {attrs[i]["ml.request.id"]: attrs[i].get("ml.prediction.label") for i in ci}

        xi = np.flatnonzero(name == "execute")
        self.exec_class = rcol("device.class", xi)
        self.exec_firmware = rcol("device.firmware.version", xi)
        self.exec_ms = (end[xi] - start[xi]) / 1e6
        self.exec_device = rcol("device.id", xi)
        self.exec_start = start[xi]

        # every record's site and receive time (all signals' spans), for the offline check
        self.all_site = np.array([r.get("fleet.site", "") for r in res])
        self.all_received = recv

        tp = temperature_points
        self.temp_device = np.array([r.get("device.id", "") for r in tp.resource])
        self.temp_time = np.array(tp.time_ns, dtype=np.int64)
        self.temp_received = np.array(tp.received_ns, dtype=np.int64)
        self.temp_value = np.array(tp.value, dtype=float)

    @classmethod
    def load(cls, path: str) -> FleetData:
        return cls(read_spans(path), read_metric_points(path, names={"device.temperature"}))

    def feature(self, name: str, numeric: bool = True) -> np.ndarray:
        key = f"ml.feature.{name}"
        if numeric:
            return np.array([a.get(key, np.nan) for a in self._attrs], dtype=float)
        return np.array([a.get(key, "") for a in self._attrs])


# --------------------------------------------------------------------------------------
def check_input_drift(d: FleetData, inc: dict, manifest: dict) -> dict:
    site, model = inc["cohort"]["fleet.site"], inc["cohort"]["ml.model.name"]
    t0 = inc["start_unix_nano"]
    mag = inc["magnitude"]["ml.feature.brightness"]
    shift, std = mag["mean_shift"], mag["std"]
    low_after = inc["magnitude"]["ml.feature.lighting"]["after"]["low"]
    low_before = inc["magnitude"]["ml.feature.lighting"]["before"]["low"]
    b = d.feature("brightness")
    contrast = d.feature("contrast")
    light = d.feature("lighting", numeric=False)
    after = d.start >= t0
    out = {"other_groups": {}}
    for s in sorted(set(d.site[d.model == model])):
        g = (d.site == s) & (d.model == model)
        if (g & after).sum() < 100 or (g & ~after).sum() < 100:
            continue
        delta = float(b[g & after].mean() - b[g & ~after].mean())
        se = float(std * np.sqrt(1 / (g & after).sum() + 1 / (g & ~after).sum()))
        low = float((light[g & after] == "low").mean())
        low_tol = max(0.07, 4 * _share_se(low_after, int((g & after).sum())))
        if s == site:
            _require(shift > 8 * se, f"drift: too few inferences at {s} to measure a {shift} shift")
            _require(abs(delta - shift) < max(0.15 * shift, 4 * se),
                     f"drift: brightness mean moved {delta:.2f} at {s}, manifest says {shift}")
            _require(low_tol < (low_after - low_before) / 2, f"drift: too few inferences at {s} after the start")
            _require(abs(low - low_after) < low_tol,
                     f"drift: lighting=low share {low:.3f} at {s}, expected {low_after}")
            dc = float(contrast[g & after].mean() - contrast[g & ~after].mean())
            dc_se = float(np.nanstd(contrast[g]) * np.sqrt(1 / (g & after).sum() + 1 / (g & ~after).sum()))
            _require(abs(dc) < max(0.02, 4 * dc_se), f"drift: contrast moved {dc:.4f} at {s} but should not")
            out.update(brightness_shift=round(delta, 3), lighting_low_after=round(low, 3),
                       contrast_shift=round(dc, 4), events_after=int((g & after).sum()))
        else:
            _require(abs(delta) < max(0.25 * std, 4 * se), f"drift leaked: brightness moved {delta:.2f} at {s}")
            _require(abs(low - low_before) < max(0.05, 4 * _share_se(low_before, int((g & after).sum()))),
                     f"drift leaked: lighting=low share {low:.3f} at {s}")
            out["other_groups"][s] = round(delta, 3)
    _require("brightness_shift" in out, f"drift: not enough data for the cohort at {site}")
    _require(len(out["other_groups"]) >= 1, "drift: no other cohort to compare with")
    return out


def check_shadow_disagreement(d: FleetData, inc: dict, manifest: dict) -> dict:
    model, new = inc["cohort"]["ml.model.name"], inc["cohort"]["ml.model.version"]
    mag = inc["magnitude"]
    gap = mag["expected_agreement_before"] - mag["expected_agreement_after"]
    out = {}
    for version, expected in ((new, mag["expected_agreement_after"]),
                              (None, mag["expected_agreement_before"])):
        g = (d.model == model) & ((d.version == new) if version else (d.version != new))
        pairs = [(lab, d.cloud_label[r]) for r, lab in zip(d.request_id[g], d.label[g]) if r in d.cloud_label]
        _require(len(pairs) >= 100, f"shadow: only {len(pairs)} edge/cloud pairs for version {version or 'old'}")
        agree = float(np.mean([a == b for a, b in pairs]))
        tol = max(0.03, 3.5 * _share_se(expected, len(pairs)))
        _require(tol < gap / 2, f"shadow: {len(pairs)} edge/cloud pairs for version {version or 'old'} cannot tell "
                                f"agreement {mag['expected_agreement_after']} from {mag['expected_agreement_before']}")
        _require(abs(agree - expected) < tol,
                 f"shadow: agreement {agree:.3f} on {version or 'old versions'}, expected {expected}")
        out["agreement_" + ("new" if version else "old")] = round(agree, 4)
        out["pairs_" + ("new" if version else "old")] = len(pairs)
    return out


def check_latency_regression(d: FleetData, inc: dict, manifest: dict) -> dict:
    cls = inc["cohort"]["device.class"]
    factor = inc["magnitude"]["execute_latency_factor"]
    # leave out executions slowed by throttling: another incident's effect
    hot = np.zeros(len(d.exec_ms), dtype=bool)
    for other in manifest["incidents"]:
        if other["kind"] == "thermal_throttling":
            hot |= np.isin(d.exec_device, other["devices"]) & (d.exec_start >= other["start_unix_nano"]) & (
                d.exec_start < other["end_unix_nano"])
    out = {"other_classes": {}}
    for name, c in DEVICE_CLASSES.items():
        old = d.exec_ms[(d.exec_class == name) & (d.exec_firmware == c.firmware[0]) & ~hot]
        new = d.exec_ms[(d.exec_class == name) & (d.exec_firmware == c.firmware[1]) & ~hot]
        if len(old) < 50 or len(new) < 50:
            if name == cls:
                raise IncidentCheckFailed(f"latency: too few execute spans for {name} ({len(old)}/{len(new)})")
            continue
        ratio = float(np.median(new) / np.median(old))
        tol = 4 * _median_log_se(old, new)
        if name == cls:
            _require(tol < np.log(factor) / 2, f"latency: too few execute spans for {name} to measure x{factor}")
            _require(abs(np.log(ratio / factor)) < max(np.log(1.15), tol),
                     f"latency: {name} execute median x{ratio:.2f} after the firmware update, manifest says x{factor}")
            out["execute_median_ratio"] = round(ratio, 3)
        else:
            _require(abs(np.log(ratio)) < max(np.log(1.1), tol),
                     f"latency leaked: {name} execute median x{ratio:.2f} after its update")
            out["other_classes"][name] = round(ratio, 3)
    return out


def check_error_burst(d: FleetData, inc: dict, manifest: dict) -> dict:
    site = inc["cohort"]["fleet.site"]
    rate = inc["magnitude"]["error_rate"]
    w = (d.start >= inc["start_unix_nano"]) & (d.start < inc["end_unix_nano"])
    g = d.site == site
    _require((g & w).sum() >= 60, f"burst: only {(g & w).sum()} inferences at {site} in the window")
    inside = float(d.error[g & w].mean())
    outside = float(d.error[g & ~w].mean())
    others = float(d.error[~g & w].mean())
    _require(0.5 * rate <= inside <= 1.5 * rate + 0.05, f"burst: error rate {inside:.3f} at {site}, expected ~{rate}")
    _require(outside < 0.05, f"burst: error rate {outside:.3f} at {site} outside the window")
    _require(others < 0.05, f"burst leaked: error rate {others:.3f} at other sites in the window")
    return {"error_rate_in_window": round(inside, 4), "outside": round(outside, 4), "other_sites": round(others, 4),
            "inferences_in_window": int((g & w).sum())}


def check_slow_error_increase(d: FleetData, inc: dict, manifest: dict) -> dict:
    region = inc["cohort"]["fleet.region"]
    s, e = inc["start_unix_nano"], inc["end_unix_nano"]
    add = inc["magnitude"]["error_rate_end"] - inc["magnitude"]["error_rate_start"]
    # leave out any other error incident's window and site
    exclude = np.zeros(d.n, dtype=bool)
    for other in manifest["incidents"]:
        if other["kind"] == "error_burst":
            exclude |= (d.site == other["cohort"]["fleet.site"]) & (d.start >= other["start_unix_nano"]) & (
                d.start < other["end_unix_nano"])
    g = (d.region == region) & ~exclude
    late = d.start >= e - (e - s) // 4
    early = d.start < s
    late_rate = float(d.error[g & late].mean())
    expected_late = BASE_ERROR_RATE + add * 0.875
    n_late = int((g & late).sum())
    # late in the ramp the region burns its 99.5 % budget at 2x and more (a ticket, not a page):
    # the rate must clear base + 0.35 * add (half-way to its expected value) by 3.5 standard errors
    floor = BASE_ERROR_RATE + 0.35 * add
    _require(n_late >= 500 and 3.5 * _share_se(expected_late, n_late) < expected_late - floor,
             f"slow errors: {n_late} inferences at the end of the window are too few to tell")
    _require(late_rate > floor, f"slow errors: late error rate {late_rate:.4f} in {region}, "
                                f"expected ~{expected_late:.4f}")
    _require(late_rate < BASE_ERROR_RATE + 1.5 * add, f"slow errors: late error rate {late_rate:.4f} too high")
    other = (d.region != region) & ~exclude & late
    others = float(d.error[other].mean()) if other.any() else BASE_ERROR_RATE
    _require(others < BASE_ERROR_RATE + max(0.3 * add, 4 * _share_se(BASE_ERROR_RATE, int(other.sum()))),
             f"slow errors leaked: {others:.4f} in other regions")
    out = {"late_error_rate": round(late_rate, 5), "other_regions_late": round(others, 5)}
    if (g & early).sum() >= 300:
        early_rate = float(d.error[g & early].mean())
        early_tol = max(0.3 * add, 4 * _share_se(BASE_ERROR_RATE, int((g & early).sum())))
        _require(early_rate < BASE_ERROR_RATE + early_tol, f"slow errors: already {early_rate:.4f} before the start")
        out["before_start"] = round(early_rate, 5)
    return out


def check_site_offline(d: FleetData, inc: dict, manifest: dict) -> dict:
    site = inc["cohort"]["fleet.site"]
    s, e = inc["start_unix_nano"], inc["end_unix_nano"]
    during = (d.all_received >= s) & (d.all_received < e)
    _require(not np.any((d.all_site == site) & during), f"offline: spans from {site} were received during the outage")
    _require(not np.any(np.isin(d.temp_device, inc["devices"]) & (d.temp_received >= s) & (d.temp_received < e)),
             f"offline: metrics from {site} were received during the outage")
    g = (d.site == site) & (d.end >= s) & (d.end < e)
    _require(g.sum() >= 20, f"offline: only {g.sum()} inferences at {site} during the outage")
    _require(bool(np.all(d.received[g] >= e)), "offline: backlog received before reconnection")
    lag = (d.received[g] - d.end[g]) / HOUR
    _require(lag.max() >= 0.75 * (e - s) / HOUR, f"offline: max lateness {lag.max():.2f} h, outage {(e - s) / HOUR} h")
    other = (d.site != site) & (d.end >= s) & (d.end < e)
    other_lag = np.median((d.received[other] - d.end[other]) / NS)
    _require(other_lag < manifest["config"]["export_interval_s"] + 60, "offline: other sites late too")
    return {"backlog_inferences": int(g.sum()), "max_lateness_h": round(float(lag.max()), 3),
            "median_lateness_h": round(float(np.median(lag)), 3), "other_sites_median_lag_s": round(float(other_lag), 1)}


def check_clock_skew(d: FleetData, inc: dict, manifest: dict) -> dict:
    run_start = manifest["config"]["start_unix_nano"]
    interval = manifest["config"]["export_interval_s"]
    offline = {dev for i in manifest["incidents"] if i["kind"] == "site_offline" for dev in i["devices"]}
    out = {}
    for spec in inc["magnitude"]["devices"]:
        g = d.device == spec["device.id"]
        _require(g.sum() >= 20, f"skew: too few spans from {spec['device.id']}")
        true_t = d.received[g]
        skew = spec["offset_seconds"] + spec["drift_ppm"] * 1e-6 * (true_t - run_start) / NS
        lag = (d.received[g] - d.end[g]) / NS
        # lag = export wait + network - skew: with the skew added back it is an ordinary delay
        corrected = np.median(lag + skew)
        _require(0 <= corrected <= interval + 60,
                 f"skew: {spec['device.id']} delay {corrected:.1f}s after removing the stated skew")
        raw = float(np.median(lag))
        if spec["drift_ppm"]:
            q = np.quantile(true_t, [0.1, 0.9])
            early, late = np.median(lag[true_t <= q[0]]), np.median(lag[true_t >= q[1]])
            expected = -spec["drift_ppm"] * 1e-6 * (np.median(true_t[true_t >= q[1]]) - np.median(
                true_t[true_t <= q[0]])) / NS
            _require(abs((late - early) - expected) < 0.25 * abs(expected) + interval / 2,
                     f"skew: drift of {spec['device.id']} {late - early:.0f}s, expected {expected:.0f}s")
            out[spec["device.id"]] = {"lag_change_s": round(float(late - early), 1), "expected_s": round(expected, 1)}
        else:
            _require(abs(raw + spec["offset_seconds"]) < interval + 60,
                     f"skew: {spec['device.id']} median lag {raw:.0f}s, offset {spec['offset_seconds']}s")
            out[spec["device.id"]] = {"median_lag_s": round(raw, 1)}
    skewed = {s["device.id"] for s in inc["magnitude"]["devices"]}
    normal = ~np.isin(d.device, list(skewed | offline))
    lag = (d.received[normal] - d.end[normal]) / NS
    _require(np.quantile(lag, 0.999) < interval + 120 and lag.min() > -1,
             "skew: devices not in the cohort look skewed")
    out["others_lag_p50_p999_s"] = [round(float(np.quantile(lag, 0.5)), 1), round(float(np.quantile(lag, 0.999)), 1)]
    return out


def check_thermal_throttling(d: FleetData, inc: dict, manifest: dict) -> dict:
    devs = inc["devices"]
    s, e = inc["start_unix_nano"], inc["end_unix_nano"]
    thr = inc["magnitude"]["threshold_c"]
    factor = inc["magnitude"]["latency_factor_preprocess_execute"]
    tg = np.isin(d.temp_device, devs)
    # device clocks are right for this cohort unless one is also skewed: compare on point times
    mid = (d.temp_time >= s + (e - s) // 4) & (d.temp_time < e - (e - s) // 4)
    _require(tg.sum() > 0 and (tg & mid).sum() > 0, "thermal: no temperature points for the cohort")
    hot = float(np.median(d.temp_value[tg & mid]))
    before = float(d.temp_value[tg & (d.temp_time < s)].max())
    _require(hot > thr, f"thermal: cohort temperature {hot:.1f} C in the window, threshold {thr}")
    _require(before < thr - 10, f"thermal: cohort already at {before:.1f} C before the window")
    _require(float(d.temp_value[~tg].max()) < thr, "thermal leaked: a device outside the cohort exceeded the threshold")
    g = np.isin(d.device, devs)
    win = (d.start >= s + (e - s) // 4) & (d.start < e - (e - s) // 4)
    pre = d.start < s
    _require((g & win).sum() >= 30, "thermal: too few inferences in the window")
    ratio = float(np.median(d.duration_ms[g & win]) / np.median(d.duration_ms[g & pre]))
    # the whole inference: preprocess and execute slow down by the factor, postprocess does not
    _require(0.7 * factor < ratio < 1.2 * factor, f"thermal: latency x{ratio:.2f} in the window, expected ~x{factor}")
    cls = inc["cohort"]["device.class"]
    o = (d.device_class == cls) & ~g
    other = 1.0
    if (o & win).sum() >= 30:
        other = float(np.median(d.duration_ms[o & win]) / np.median(d.duration_ms[o & pre]))
        tol = max(np.log(1.15), 4 * _median_log_se(d.duration_ms[o & win], d.duration_ms[o & pre]))
        _require(abs(np.log(other)) < tol, f"thermal leaked: other {cls} latency x{other:.2f} in the window")
    return {"median_temp_c": round(hot, 1), "max_before_c": before, "latency_ratio": round(ratio, 3),
            "other_devices_ratio": round(other, 3)}


CHECKS = {
    "input_drift": check_input_drift,
    "shadow_disagreement": check_shadow_disagreement,
    "latency_regression": check_latency_regression,
    "error_burst": check_error_burst,
    "slow_error_increase": check_slow_error_increase,
    "site_offline": check_site_offline,
    "clock_skew": check_clock_skew,
    "thermal_throttling": check_thermal_throttling,
}


def check_incident(data: FleetData, incident: dict, manifest: dict) -> dict:
    check = CHECKS.get(incident["kind"])
    if check is None:
        raise IncidentCheckFailed(f"no check for incident kind {incident['kind']!r}")
    return check(data, incident, manifest)


def check_all(data: FleetData, manifest: dict) -> dict:
    return {inc["id"]: check_incident(data, inc, manifest) for inc in manifest["incidents"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m sample_data.verify REQUEST_LOG MANIFEST", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        manifest = json.load(f)
    data = FleetData.load(argv[0])
    failed = 0
    for inc in manifest["incidents"]:
        try:
            print(inc["id"], json.dumps(check_incident(data, inc, manifest)))
        except IncidentCheckFailed as exc:
            failed += 1
            print(inc["id"], "FAILED:", exc)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
