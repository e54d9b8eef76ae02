"""One simulated device: all its events for the whole run, drawn up front.

:class:`DeviceSim` is built by :class:`~sample_data.generator.FleetSimulation`
(one per device) and then asked, tick by tick, for the spans that ended in
the window (``window_specs(k)``), the cloud shadow and label spans it caused
(``cloud_spec`` / ``label_spec``), and the values its metrics report
(``g_cpu``, ``g_mem``, ``g_temp``, ``g_batt``, ``histogram_records(k)``).

Construction draws from one ``numpy`` stream per device in a fixed order:
lifecycle (firmware update and reboot, model update, loads), arrivals
(Poisson with a daily rhythm, by thinning), per-inference draws (stage
latencies with a Pareto tail, throttling above ``THROTTLE_C``, errors,
features, predictions, shadow / label / stage-span sampling), outage
upload jitter, gauges. Ids come from a second stream and lifecycle ids from
a third, so adding a field never shifts the ids.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from opentelemetry.trace import Status, StatusCode

from .fleet import NS, THROTTLE_C, THROTTLE_FACTOR, Device
from .otel import INTERNAL, SERVER, DeviceMeters, SpanSpec

if TYPE_CHECKING:  # pragma: no cover
    from .generator import FleetSimulation

HOUR = 3600 * NS
MINUTE = 60 * NS
MS = 1_000_000
U64_MAX = (1 << 64) - 1
ERROR_TYPES = ("timeout", "runtime_error", "invalid_input")
ERROR_TYPE_P = (0.3, 0.5, 0.2)
ERROR_MESSAGES = {
    "timeout": "inference deadline exceeded",
    "runtime_error": "delegate returned an error",
    "invalid_input": "input tensor failed validation",
}


def _gen(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, index])))


def _ids(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(1, U64_MAX, size=shape, dtype=np.uint64, endpoint=True)


def _local_hours(t: np.ndarray, utc_offset_h: int) -> np.ndarray:
    return ((t / HOUR) + utc_offset_h) % 24.0


# --------------------------------------------------------------------------------------
# one device
# --------------------------------------------------------------------------------------
class DeviceSim:
    """All events of one device for the whole run, drawn up front.

    Built by ``FleetSimulation`` (one per device); then, for tick ``k`` (the
    window (T_{k-1}, T_k] of true time)::

        dev.window_specs(k)          # SpanSpecs of the spans that ended in the window, in end order
        dev.epoch_of_window(k)       # 0, or 1 after the firmware reboot (a new resource)
        dev.histogram_records(k)     # [(duration ms, attributes)] since the previous collection
        dev.g_cpu[k - 1], dev.g_mem[k - 1], dev.g_temp[k - 1], dev.g_batt[k - 1]   # gauge values
        dev.cloud_spec(i), dev.label_spec(i)   # spans this device's inference i caused elsewhere
        dev.clock(t)                 # the device's (possibly skewed) clock for true time t
        dev.temperature(t)           # modelled SoC temperature (throttling above THROTTLE_C)

    ``n``, ``t_true`` and the per-inference Python lists (``s0``, ``version``,
    ``err``, ...) are indexed by inference number, which is also the suffix of
    its ``ml.request.id`` (``<device.id>-<run token>-<number>``).
    """

    def __init__(self, sim: FleetSimulation, device: Device) -> None:
        self.sim = sim
        self.device = device
        self.cls = device.device_class
        self.model = device.model
        self.start = sim.cfg.start_ns
        self.end = sim.cfg.start_ns + sim.cfg.duration_ns
        self.offline = sim.effects.offline_window(device)
        # request ids: device id, a per-run token (so runs with other seeds never collide), number
        token = int(np.random.SeedSequence([sim.cfg.seed, 5, device.index]).generate_state(1, np.uint32)[0])
        self.rid_prefix = f"{device.device_id}-{token:08x}-"
        rng = _gen(sim.cfg.seed, 1, device.index)  # one stream, drawn in this fixed order:
        self._plan_lifecycle(rng)
        t = self._arrivals(rng)
        draws = self._draw_inferences(rng, t)
        self._lay_out(rng, t, draws)
        self._lifecycle_specs(_gen(sim.cfg.seed, 4, device.index))
        self._gauges(rng)
        # iteration state
        self.meters: DeviceMeters | None = None
        self.meters_epoch = -1
        self.spans_since_collect = 0
        self.metric_cursor = 0  # index into self.end_sorted of the next inference to record
        self.backlog = 0
        self.last_deliver = 0
        self.backlog_jitter = int(rng.uniform(0, 30) * NS)

    # ---- lifecycle: firmware update (reboot), model update, model loads ------------------
    def _plan_lifecycle(self, rng: np.random.Generator) -> None:
        sim, device, cls, model = self.sim, self.device, self.cls, self.model
        start, end, tick = self.start, self.end, sim.tick_ns
        self.reboot_tick: int | None = None
        firmware = [cls.firmware[0]]
        reboot_true = None
        boot_done = None
        events = []  # raw lifecycle descriptions, turned into specs once the clock is known
        fw_ro = sim.firmware_rollouts.get(cls.name)
        if fw_ro is not None and device.index in fw_ro.schedule:
            stage, t_upd = fw_ro.schedule[device.index]
            dl = int(rng.uniform(120, 480) * NS)
            failed = rng.random() < 0.02
            boot = int(rng.uniform(40, 90) * NS)
            load = int(rng.uniform(0.8, 2.5) * NS)
            k = math.ceil((t_upd + dl - start) / tick)
            if failed:
                if t_upd + dl + 30 * NS < end:
                    events.append(("fw", t_upd, t_upd + dl + 30 * NS, fw_ro, stage, "failed", None))
            elif k < sim.n_ticks:
                self.reboot_tick = k
                reboot_true = start + k * tick
                boot_done = reboot_true + boot
                firmware.append(cls.firmware[1])
                events.append(("fw", t_upd, boot_done + load + 2 * NS, fw_ro, stage, "success",
                               (boot_done, boot_done + load)))
        m_ro = sim.model_rollouts.get(model.name)
        model_update = None
        if m_ro is not None and device.index in m_ro.schedule:
            stage, t_m = m_ro.schedule[device.index]
            if reboot_true is not None and reboot_true - 10 * MINUTE <= t_m <= boot_done + 10 * NS:
                t_m = boot_done + 20 * NS + int(rng.uniform(0, 60) * NS)
            dl = int(rng.uniform(20, 90) * NS)
            ld = int(rng.uniform(1.0, 4.0) * NS)
            r_fail, r_integrity = rng.random(), rng.random()
            if t_m + dl + 2 * ld + 5 * NS < end:
                model_update = (t_m, dl, ld, r_fail < 0.03, r_integrity < 0.04, stage)

        # model loads: (load start, load end, version, integrity ok)
        loads: list[tuple[int, int, str, bool]] = []
        v_old, v_new = model.versions
        current = v_old
        model_events = []
        if model_update is not None:
            t_m, dl, ld, dl_failed, integrity_failed, stage = model_update
            if dl_failed:
                model_events.append((t_m, t_m + dl, "failed", stage, []))
            else:
                l1 = (t_m + dl, t_m + dl + ld, v_new, not integrity_failed)
                mloads = [l1]
                if integrity_failed:
                    mloads.append((l1[1] + NS // 2, l1[1] + NS // 2 + ld, v_old, True))
                outcome = "rolled_back" if integrity_failed else "success"
                model_events.append((t_m, mloads[-1][1] + NS, outcome, stage, mloads))
        # firmware reboot loads whatever version is current at boot
        fw_load = None
        for ev in events:
            if ev[6] is not None:
                fw_load = ev[6]
        model_done_before_boot = (
            model_events and boot_done is not None and model_events[0][1] <= (reboot_true or 0)
        )
        if fw_load is not None:
            if model_done_before_boot:
                for _, _, outcome, _, mloads in model_events:
                    for lo in mloads:
                        if lo[3]:
                            current = lo[2]
            loads_fw = (fw_load[0], fw_load[1], current, True)
        for _, _, outcome, _, mloads in model_events:
            loads.extend(mloads)
        if fw_load is not None:
            loads.append(loads_fw)
        loads.sort(key=lambda x: x[1])
        self.loads = loads
        self.fw_load = fw_load
        self.fw_load_version = loads_fw[2] if fw_load is not None else None
        self.model_rollout = m_ro
        self.model_events = model_events
        self.fw_events = events
        self.firmware = firmware
        self.reboot_true = reboot_true
        self.boot_done = boot_done

    # ---- inference arrivals: Poisson with a daily rhythm, by thinning ----------------------
    def _arrivals(self, rng: np.random.Generator) -> np.ndarray:
        cfg, cls, device = self.sim.cfg, self.cls, self.device
        start, end = self.start, self.end
        amp = 0.7 if cls.kind == "phone" else 0.35
        base = cfg.inferences_per_hour * cls.relative_rate / self.sim.mean_relative_rate
        base *= float(np.exp(rng.normal(0.0, 0.2)))
        dur = end - start
        n_max = int(rng.poisson(base * (1 + amp) * dur / HOUR))
        t = start + np.sort((rng.random(n_max) * dur).astype(np.int64))
        lh = _local_hours(t, device.site.utc_offset_h)
        keep = rng.random(n_max) < (1 + amp * np.cos(2 * np.pi * (lh - 14.0) / 24.0)) / (1 + amp)
        t = t[keep]
        if self.reboot_true is not None:
            t = t[(t < self.reboot_true - 2 * NS) | (t > self.fw_load[1])]
        self.n = len(t)
        self.t_true = t
        return t

    # ---- everything about each inference, vectorised ----------------------------------------
    def _draw_inferences(self, rng: np.random.Generator, t: np.ndarray) -> dict:
        cfg, cls, device, model, effects = self.sim.cfg, self.cls, self.device, self.model, self.sim.effects
        n = len(t)
        loads, reboot_true = self.loads, self.reboot_true
        v_old = model.versions[0]

        # model version per inference, cold starts
        ok_loads = [lo for lo in loads if lo[3]]
        load_ends = np.array([lo[1] for lo in ok_loads], dtype=np.int64)
        vers = np.array([v_old] + [lo[2] for lo in ok_loads])
        li = np.searchsorted(load_ends, t, side="right")  # 0: before any load
        version = vers[li]
        cold = np.zeros(n, dtype=bool)
        for j in range(len(load_ends)):
            first = np.searchsorted(t, load_ends[j], side="left")
            if first < n and (j + 1 >= len(load_ends) or t[first] < load_ends[j + 1]):
                cold[first] = True
        new_fw = t >= reboot_true if reboot_true is not None else np.zeros(n, dtype=bool)

        # latency (ms)
        pre = rng.lognormal(np.log(cls.preprocess[0]), cls.preprocess[1], n)
        exe = rng.lognormal(np.log(cls.execute[0]), cls.execute[1], n)
        post = rng.lognormal(np.log(cls.postprocess[0]), cls.postprocess[1], n)
        tail = rng.random(n) < cls.tail_probability
        exe = np.where(tail, exe * np.minimum(1.0 + 3.0 * rng.pareto(1.6, n), 60.0), exe)
        f_pre, f_exe = effects.latency_factors(device, t, new_fw)
        throttled = self.temperature(t) > THROTTLE_C
        f_pre = np.where(throttled, f_pre * THROTTLE_FACTOR, f_pre)
        f_exe = np.where(throttled, f_exe * THROTTLE_FACTOR, f_exe)
        pre = pre * f_pre * np.where(cold, 2.0, 1.0)
        exe = exe * f_exe * np.where(cold, 5.0, 1.0)
        overhead = rng.uniform(0.05, 0.3, n)

        # errors
        err = rng.random(n) < effects.error_rate(device, t)
        etype = rng.choice(len(ERROR_TYPES), p=ERROR_TYPE_P, size=n)

        # features
        feats = []
        drift = [d for d in effects.drift if d.hits(device)]
        dmask = (t >= drift[0].start_ns) if drift else np.zeros(n, dtype=bool)
        for f in model.features:
            if f.categorical:
                idx = rng.choice(len(f.categories), p=f.probabilities, size=n)
                if drift and f.name in drift[0].category_probs:
                    alt = rng.choice(len(f.categories), p=drift[0].category_probs[f.name], size=n)
                    idx = np.where(dmask, alt, idx)
                cats = f.categories
                feats.append((f"ml.feature.{f.name}", [cats[i] for i in idx.tolist()], idx))
            else:
                x = rng.normal(f.mean, f.std, n)
                if drift and f.name in drift[0].feature_shift:
                    x = np.where(dmask, x + drift[0].feature_shift[f.name], x)
                feats.append((f"ml.feature.{f.name}", np.round(x, f.decimals).tolist(), x))

        # predictions
        self.labels_true: list | None = None
        if model.task == "classification":
            k_lab = len(model.labels)
            y = rng.choice(k_lab, p=model.label_prior, size=n)
            if drift:
                y_alt = rng.choice(k_lab, p=drift[0].label_prior, size=n)
                y = np.where(dmask, y_alt, y)
            acc = effects.edge_accuracy(device, model.name, version, model.edge_accuracy)
            e_ok = rng.random(n) < acc
            edge = np.where(e_ok, y, (y + 1 + rng.integers(0, k_lab - 1, n)) % k_lab)
            c_ok = rng.random(n) < model.cloud_accuracy
            cloud = np.where(c_ok, y, (y + 1 + rng.integers(0, k_lab - 1, n)) % k_lab)
            s_edge = np.where(e_ok, rng.beta(9.0, 1.3, n), rng.beta(3.0, 2.5, n))
            s_cloud = np.where(c_ok, rng.beta(12.0, 1.2, n), rng.beta(3.0, 2.0, n))
            labs = model.labels
            self.pred_edge = [labs[i] for i in edge.tolist()]
            self.pred_cloud = [labs[i] for i in cloud.tolist()]
            self.score_edge = np.round(s_edge, 4).tolist()
            self.score_cloud = np.round(s_cloud, 4).tolist()
            self.labels_true = [labs[i] for i in y.tolist()]
        else:
            fx = {name.removeprefix("ml.feature."): raw for name, _, raw in feats}
            weekend = fx["day_type"] == 1
            v = (0.55 * fx["load_kw"] + 0.3 * (fx["ambient_temp_c"] - 21.0) + 4.0 * fx["humidity"]
                 - 3.0 * weekend + rng.normal(0.0, 0.8, n))
            self.pred_edge = np.round(v + rng.normal(0.0, model.edge_value_noise, n), 3).tolist()
            self.pred_cloud = np.round(v + rng.normal(0.0, model.cloud_value_noise, n), 3).tolist()
            self.labels_true = np.round(v, 3).tolist()

        # shadow and labels
        ok = ~err
        shadow = ok & (rng.random(n) < cfg.shadow_ratio) if model.cloud_version else np.zeros(n, dtype=bool)
        c_delay = np.clip(rng.lognormal(np.log(4.0), 0.8, n), 0.3, 300.0)
        c_dur = rng.lognormal(np.log(60.0), 0.3, n)
        labelled = ok & (rng.random(n) < cfg.label_ratio)
        l_delay = np.clip(rng.lognormal(np.log(3.0), 0.6, n), 1 / 3, 18.0)
        l_dur = rng.uniform(1.0, 5.0, n)
        stages = err | (rng.random(n) < cfg.stage_ratio)
        return dict(pre=pre, exe=exe, post=post, overhead=overhead, err=err, etype=etype, feats=feats,
                    version=version, cold=cold, shadow=shadow, c_delay=c_delay, c_dur=c_dur,
                    labelled=labelled, l_delay=l_delay, l_dur=l_dur, stages=stages)

    # ---- times (true and device clock), batching bounds, Python columns ---------------------
    def _lay_out(self, rng: np.random.Generator, t: np.ndarray, x: dict) -> None:
        sim, start, end, n, offline = self.sim, self.start, self.end, self.n, self.offline
        tick = sim.tick_ns
        pre, exe, post, overhead = x["pre"], x["exe"], x["post"], x["overhead"]
        shadow, labelled = x["shadow"], x["labelled"]
        c_delay, c_dur, l_delay, l_dur = x["c_delay"], x["c_dur"], x["l_delay"], x["l_dur"]
        # ids: trace (hi, lo), root, preprocess, execute, postprocess, cloud span, label trace hi/lo/span
        ids = _ids(_gen(sim.cfg.seed, 2, self.device.index), (n, 10))
        pre_ns = (pre * MS).astype(np.int64)
        exe_ns = (exe * MS).astype(np.int64)
        post_ns = (post * MS).astype(np.int64)
        over_ns = (overhead * MS).astype(np.int64)
        total_ns = pre_ns + exe_ns + post_ns + over_ns
        s0 = self.clock(t)
        end_true = t + total_ns
        self.end_true = end_true
        order = np.argsort(end_true, kind="stable")
        self.order = order
        self.end_sorted = end_true[order]
        edges = np.minimum(start + np.arange(sim.n_ticks + 1, dtype=np.int64) * tick, end)
        bounds = np.searchsorted(self.end_sorted, edges, side="right")
        bounds[-1] = n  # the last window takes everything that ended after the nominal end too
        self.bounds = bounds.tolist()

        # cloud shadow: true times (the cloud's clock is right); offline devices upload later
        up = end_true.copy()
        if offline is not None:
            lag = (end_true >= offline[0]) & (end_true < offline[1])
            up = np.where(lag, offline[1] + (rng.random(n) * 60 * NS).astype(np.int64), up)
        c_start = up + (c_delay * NS).astype(np.int64)
        c_end = c_start + (c_dur * MS).astype(np.int64)
        shadow &= c_end <= end
        l_time = up + (l_delay * HOUR).astype(np.int64)
        l_end = l_time + (l_dur * MS).astype(np.int64)
        labelled &= l_end <= end

        # Python lists for the per-span loop
        self.s0 = s0.tolist()
        self.b1 = (s0 + pre_ns).tolist()
        self.b2 = (s0 + pre_ns + exe_ns).tolist()
        self.b3 = (s0 + pre_ns + exe_ns + post_ns).tolist()
        self.b4 = (s0 + total_ns).tolist()
        self.duration_ms = (total_ns / MS).tolist()
        self.version = x["version"].tolist()
        self.cold = x["cold"].tolist()
        self.err = x["err"].tolist()
        self.stages = x["stages"].tolist()
        self.etype = [ERROR_TYPES[i] for i in x["etype"].tolist()]
        self.feats = [(name, vals) for name, vals, _ in x["feats"]]
        self.ids = ids.tolist()
        self.shadow_idx = np.flatnonzero(shadow)
        self.c_start, self.c_end = c_start, c_end
        self.label_idx = np.flatnonzero(labelled)
        self.l_time, self.l_end = l_time, l_end
        so = np.argsort(c_end[self.shadow_idx], kind="stable")
        self.shadow_idx = self.shadow_idx[so]
        self.shadow_end_sorted = c_end[self.shadow_idx]
        lo_ = np.argsort(l_end[self.label_idx], kind="stable")
        self.label_idx = self.label_idx[lo_]
        self.label_end_sorted = l_end[self.label_idx]
        self._edges = edges

    # ---- lifecycle spans (device clock), with their true end for batching ---------------------
    def _lifecycle_specs(self, life_ids: np.random.Generator) -> None:
        lifecycle: list[tuple[int, list[SpanSpec]]] = []
        for kind, t0, t1, ro, stage, outcome, fwl in self.fw_events:
            tid = int(_ids(life_ids, 2)[0]) << 64 | int(_ids(life_ids, 1)[0])
            sid = int(_ids(life_ids, 1)[0])
            specs = []
            if fwl is not None:
                specs.append(self._load_spec(life_ids, tid, sid, fwl[0], fwl[1], self.fw_load_version, True))
            specs.append(self._deploy_spec(tid, sid, t0, t1, "firmware", ro, stage, outcome,
                                           {}))
            lifecycle.append((t1, specs))
        for t0, t1, outcome, stage, mloads in self.model_events:
            tid = int(_ids(life_ids, 2)[0]) << 64 | int(_ids(life_ids, 1)[0])
            sid = int(_ids(life_ids, 1)[0])
            specs = [self._load_spec(life_ids, tid, sid, a, b, v, okk) for a, b, v, okk in mloads]
            specs.append(self._deploy_spec(tid, sid, t0, t1, "model", self.model_rollout, stage, outcome,
                                           {"ml.model.name": self.model.name}))
            lifecycle.append((t1, specs))
        lifecycle.sort(key=lambda x: x[0])
        self.lifecycle = lifecycle
        life_end = np.array([x[0] for x in lifecycle], dtype=np.int64)
        lb = np.searchsorted(life_end, self._edges, side="right")
        lb[-1] = len(lifecycle)
        self.life_bounds = lb.tolist()

    # ---- clock -------------------------------------------------------------------------
    def clock(self, t):
        """Device clock for true time(s) ``t`` (int or int64 array)."""
        d = self.device
        if isinstance(t, np.ndarray):
            return t + d.clock_offset_ns + ((t - self.start) * (d.clock_drift_ppm * 1e-6)).astype(np.int64)
        return int(t) + d.clock_offset_ns + int((int(t) - self.start) * (d.clock_drift_ppm * 1e-6))

    # ---- lifecycle spans ---------------------------------------------------------------
    def _load_spec(self, life_ids, tid, parent, a, b, version, ok) -> SpanSpec:
        attrs = {
            "ml.model.name": self.model.name,
            "ml.model.version": version,
            "ml.model.integrity": "ok" if ok else "failed",
        }
        status = None if ok else Status(StatusCode.ERROR, "model signature verification failed")
        return SpanSpec("model.load", tid, int(_ids(life_ids, 1)[0]), parent, False, INTERNAL,
                        self.clock(a), self.clock(b), attrs, status)

    def _deploy_spec(self, tid, sid, a, b, kind, ro, stage, outcome, extra) -> SpanSpec:
        attrs = {
            "deployment.kind": kind,
            "deployment.rollout.id": ro.rollout_id,
            "deployment.rollout.stage": stage,
            "deployment.outcome": outcome,
            "deployment.version.from": ro.from_version,
            "deployment.version.to": ro.to_version,
            **extra,
        }
        status = None if outcome == "success" else Status(StatusCode.ERROR, f"deployment {outcome}")
        return SpanSpec("deployment", tid, sid, 0, False, INTERNAL, self.clock(a), self.clock(b), attrs, status)

    # ---- physics -------------------------------------------------------------------------
    def load(self, t: np.ndarray) -> np.ndarray:
        """Relative load 0..1 from the daily rhythm at true times ``t``."""
        amp = 0.7 if self.cls.kind == "phone" else 0.35
        lh = _local_hours(t, self.device.site.utc_offset_h)
        return (1 + amp * np.cos(2 * np.pi * (lh - 14.0) / 24.0)) / (1 + amp)

    def temperature(self, t: np.ndarray) -> np.ndarray:
        """Modelled SoC temperature (no sensor noise): site ambient with a daily swing,
        heat from load, and any incident's extra heat."""
        lh = _local_hours(t, self.device.site.utc_offset_h)
        ambient = self.device.site.ambient_c + 3.0 * np.cos(2 * np.pi * (lh - 15.0) / 24.0)
        return ambient + self.cls.idle_temp_c * (0.7 + 0.3 * self.load(t)) + self.sim.effects.temperature_add(
            self.device, t)

    # ---- gauges --------------------------------------------------------------------------
    def _gauges(self, rng: np.random.Generator) -> None:
        sim, cls, dev = self.sim, self.cls, self.device
        k = np.arange(1, sim.n_ticks + 1, dtype=np.int64)
        tt = np.minimum(self.start + k * sim.tick_ns, self.end)
        lh = _local_hours(tt, dev.site.utc_offset_h)
        load = self.load(tt)
        cpu = cls.cpu_base * (0.55 + 0.45 * load) + rng.normal(0, 0.03, len(k))
        since_boot = (tt - (self.boot_done if self.boot_done is not None else self.start)) / HOUR
        since_boot = np.where(since_boot < 0, (tt - self.start) / HOUR + 6.0, since_boot)
        mem = (cls.memory_base + 0.04 * load + 0.002 * since_boot + rng.normal(0, 0.004, len(k)))
        mem = np.clip(mem, 0.05, 0.98) * cls.memory_total
        temp = self.temperature(tt) + rng.normal(0, 0.4, len(k))
        self.g_cpu = np.round(np.clip(cpu, 0.01, 1.0), 3).tolist()
        self.g_mem = ((mem // 1024).astype(np.int64) * 1024).tolist()
        self.g_temp = np.round(temp, 1).tolist()
        self.g_batt: list | None = None
        if cls.battery:
            level = float(rng.uniform(0.55, 0.95))
            out = []
            step_h = sim.tick_ns / HOUR
            noise = rng.normal(0, 0.002, len(k))
            for h, ld, nz in zip(lh.tolist(), load.tolist(), noise.tolist()):
                if cls.kind == "phone":
                    delta = 0.15 * step_h if (h >= 22 or h < 7) else -(0.03 + 0.05 * ld) * step_h
                else:  # microcontroller with a small solar panel
                    delta = (0.012 if 10 <= h < 16 else 0.0) * step_h - 0.004 * step_h
                level = min(1.0, max(0.03, level + delta + nz * step_h))
                out.append(round(level, 3))
            self.g_batt = out

    # ---- per tick ---------------------------------------------------------------------------
    def epoch_of_window(self, k: int) -> int:
        """Epoch of the window (T_{k-1}, T_k]: 1 after the firmware reboot at T_{reboot_tick}."""
        return 1 if self.reboot_tick is not None and k > self.reboot_tick else 0

    def inference_specs(self, lo: int, hi: int, out: list[SpanSpec]) -> None:
        m = self.model
        mname = m.name
        rid_prefix = self.rid_prefix
        classification = m.task == "classification"
        s0, b1, b2, b3, b4 = self.s0, self.b1, self.b2, self.b3, self.b4
        ids, version, cold, err, etype, feats = self.ids, self.version, self.cold, self.err, self.etype, self.feats
        stages = self.stages
        pred, score = self.pred_edge, (self.score_edge if classification else None)
        append = out.append
        for i in self.order[lo:hi].tolist():
            th, tl, r, p1, p2, p3 = ids[i][:6]
            tid = th << 64 | tl
            attrs = {
                "ml.model.name": mname,
                "ml.model.version": version[i],
                "ml.inference.mode": "edge",
                "ml.request.id": f"{rid_prefix}{i:06d}",
            }
            if err[i]:
                et = etype[i]
                status = Status(StatusCode.ERROR, ERROR_MESSAGES[et])
            else:
                status = None
                if classification:
                    attrs["ml.prediction.label"] = pred[i]
                    attrs["ml.prediction.score"] = score[i]
                else:
                    attrs["ml.prediction.value"] = pred[i]
            for name, vals in feats:
                attrs[name] = vals[i]
            if cold[i]:
                attrs["ml.inference.cold_start"] = True
            if status is not None:
                attrs["error.type"] = et
            if stages[i]:
                append(SpanSpec("preprocess", tid, p1, r, False, INTERNAL, s0[i], b1[i], None, None))
                append(SpanSpec("execute", tid, p2, r, False, INTERNAL, b1[i], b2[i], None, status))
                append(SpanSpec("postprocess", tid, p3, r, False, INTERNAL, b2[i], b3[i], None, None))
            append(SpanSpec("inference", tid, r, 0, False, INTERNAL, s0[i], b4[i], attrs, status))

    def window_specs(self, k: int) -> list[SpanSpec]:
        """Specs of the spans that ended in the window (T_{k-1}, T_k], in end order."""
        lo, hi = self.bounds[k - 1], self.bounds[k]
        a, b = self.life_bounds[k - 1], self.life_bounds[k]
        out: list[SpanSpec] = []
        if a == b:
            self.inference_specs(lo, hi, out)
        else:
            # merge the lifecycle spans in by end time
            ends = self.end_sorted
            pos = lo
            for j in range(a, b):
                t_end, specs = self.lifecycle[j]
                cut = int(np.searchsorted(ends[pos:hi], t_end, side="right")) + pos
                self.inference_specs(pos, cut, out)
                out.extend(specs)
                pos = cut
            self.inference_specs(pos, hi, out)
        return out

    def cloud_spec(self, i: int) -> SpanSpec:
        m = self.model
        th, tl, r = self.ids[i][:3]
        sid = self.ids[i][6]
        attrs = {
            "ml.model.name": m.name,
            "ml.model.version": m.cloud_version,
            "ml.inference.mode": "cloud",
            "ml.request.id": f"{self.rid_prefix}{i:06d}",
        }
        if m.task == "classification":
            attrs["ml.prediction.label"] = self.pred_cloud[i]
            attrs["ml.prediction.score"] = self.score_cloud[i]
        else:
            attrs["ml.prediction.value"] = self.pred_cloud[i]
        return SpanSpec("inference", th << 64 | tl, sid, r, True, SERVER, int(self.c_start[i]), int(self.c_end[i]),
                        attrs, None)

    def label_spec(self, i: int) -> SpanSpec:
        m = self.model
        lh, ll, ls = self.ids[i][7:10]
        attrs = {"ml.request.id": f"{self.rid_prefix}{i:06d}", "ml.model.name": m.name}
        if m.task == "classification":
            attrs["ml.label"] = self.labels_true[i]
            attrs["ml.label.source"] = "human"
        else:
            attrs["ml.label.value"] = self.labels_true[i]
            attrs["ml.label.source"] = "meter"
        return SpanSpec("ground_truth", lh << 64 | ll, ls, 0, False, INTERNAL, int(self.l_time[i]), int(self.l_end[i]),
                        attrs, None)

    def histogram_records(self, k: int) -> list[tuple[float, dict]]:
        """Durations of the inferences that ended since the previous collection, up to T_k."""
        lo = self.metric_cursor
        hi = self.bounds[k]
        self.metric_cursor = hi
        attrs = self.sim.version_attrs[self.model.name]
        dur, ver = self.duration_ms, self.version
        return [(dur[i], attrs[ver[i]]) for i in self.order[lo:hi].tolist()]
