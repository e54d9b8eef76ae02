"""One simulated device: all its events for the whole run, drawn up front.

:class:`DeviceSim` is built by :class:`~sample_data.generator.FleetSimulation`
(one per device) and then asked, tick by tick, for the spans that ended in
the window (``window_specs(k)``), the cloud shadow and label spans it caused
(``cloud_spec`` / ``label_spec``), and the values its metrics report
(``g_cpu``, ``g_mem``, ``g_temp``, ``g_batt``, ``histogram_records(k)``).

Construction draws from one ``numpy`` stream per device (``streams.EVENTS``)
in a fixed order: lifecycle (firmware update and reboot, model update,
loads: :mod:`sample_data.lifecycle`), arrivals and per-inference draws
(stage latencies with a Pareto tail, throttling above ``THROTTLE_C``,
errors, features and predictions, shadow / label / stage-span sampling:
:mod:`sample_data.inference_draws`), outage upload jitter, gauges
(:mod:`sample_data.physics`). Ids come from a second stream and lifecycle
ids from a third, so adding a field never shifts the ids. This module lays
the draws out in time and builds the span specs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from opentelemetry.trace import Status, StatusCode

from .fleet import HOUR, NS, Device
from .inference_draws import ERROR_MESSAGES, ERROR_TYPES, InferenceDraws, draw_arrivals, draw_inferences
from .lifecycle import lifecycle_spans, plan_lifecycle
from .otel import INTERNAL, SERVER, DeviceMeters, SpanSpec
from .physics import device_clock, draw_gauges, temperature
from .streams import EVENTS, IDS, LIFECYCLE_IDS, random_ids, run_token, stream

if TYPE_CHECKING:  # pragma: no cover
    from .generator import FleetSimulation

MS = 1_000_000


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
        self.rid_prefix = f"{device.device_id}-{run_token(sim.cfg.seed, device.index):08x}-"
        # window (T_{k-1}, T_k] of tick k ends at edges[k]
        ticks = np.arange(sim.n_ticks + 1, dtype=np.int64)
        self._edges = np.minimum(self.start + ticks * sim.tick_ns, self.end)

        rng = stream(sim.cfg.seed, EVENTS, device.index)  # one stream, drawn in this fixed order:
        life = plan_lifecycle(sim, device, rng)
        t = draw_arrivals(sim, device, life, rng)
        draws = draw_inferences(sim, device, life, rng, t)
        self._lay_out(rng, t, draws)  # outage upload jitter
        boot = life.boot_done if life.boot_done is not None else self.start
        gauges = draw_gauges(rng, device, sim.effects, self._edges[1:], boot, self.start, sim.tick_ns)
        self.backlog_jitter = int(rng.uniform(0, 30) * NS)

        self.firmware, self.fw_events, self.model_events = life.firmware, life.fw_events, life.model_events
        self.reboot_tick, self.boot_done = life.reboot_tick, life.boot_done
        out = draws.outputs
        self.pred_edge, self.pred_cloud, self.labels_true = out.pred_edge, out.pred_cloud, out.labels_true
        self.score_edge, self.score_cloud = out.score_edge, out.score_cloud
        self.g_cpu, self.g_mem, self.g_temp, self.g_batt = gauges.cpu, gauges.mem, gauges.temp, gauges.batt
        # deployment spans with their true end, merged into the windows by it
        self.lifecycle = lifecycle_spans(life, self.model, self.clock,
                                         stream(sim.cfg.seed, LIFECYCLE_IDS, device.index))
        self.life_bounds = self._window_bounds(np.array([x[0] for x in self.lifecycle], dtype=np.int64))
        # iteration state
        self.meters: DeviceMeters | None = None
        self.meters_epoch = -1
        self.spans_since_collect = 0
        self.metric_cursor = 0  # index into self.end_sorted of the next inference to record
        self.backlog = 0
        self.last_deliver = 0

    def _window_bounds(self, ends: np.ndarray) -> list[int]:
        """Per tick k, how many of the sorted true end times ``ends`` lie in windows up to k;
        the last window takes everything that ended after the nominal end too."""
        bounds = np.searchsorted(ends, self._edges, side="right")
        bounds[-1] = len(ends)
        return bounds.tolist()

    # ---- times (true and device clock), batching bounds, Python columns ---------------------
    def _lay_out(self, rng: np.random.Generator, t: np.ndarray, x: InferenceDraws) -> None:
        sim, end, offline = self.sim, self.end, self.offline
        self.n = n = len(t)
        self.t_true = t
        pre, exe, post, overhead = x.pre, x.exe, x.post, x.overhead
        shadow, labelled = x.shadow, x.labelled
        c_delay, c_dur, l_delay, l_dur = x.c_delay, x.c_dur, x.l_delay, x.l_dur
        # ids: trace (hi, lo), root, preprocess, execute, postprocess, cloud span, label trace hi/lo/span
        ids = random_ids(stream(sim.cfg.seed, IDS, self.device.index), (n, 10))
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
        self.bounds = self._window_bounds(self.end_sorted)

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
        self.version = x.version.tolist()
        self.cold = x.cold.tolist()
        self.err = x.err.tolist()
        self.stages = x.stages.tolist()
        self.etype = [ERROR_TYPES[i] for i in x.etype.tolist()]
        self.feats = [(name, vals) for name, vals, _ in x.outputs.feats]
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

    # ---- the device's physics (sample_data.physics) ---------------------------------------
    def clock(self, t):
        """Device clock for true time(s) ``t`` (int or int64 array)."""
        return device_clock(self.device, self.start, t)

    def temperature(self, t: np.ndarray) -> np.ndarray:
        """Modelled SoC temperature (no sensor noise) at true times ``t``."""
        return temperature(self.device, self.sim.effects, t)

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
