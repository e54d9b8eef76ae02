"""Deterministic generation of a fleet's telemetry from a seed.

:class:`FleetSimulation` is the single source of truth for both outputs::

    sim = FleetSimulation(SimConfig(seed=7, devices=200, duration_ns=48 * HOUR))
    for request in sim.requests():      # in creation (tick) order
        request.signal                  # "traces" | "metrics"
        request.emitter.resource(request.epoch)
        request.spans                   # list[SpanSpec]   (traces)
        request.metrics                 # MetricsData      (metrics, real SDK)
        request.created_ns, request.deliver_ns
    sim.manifest()                      # ground truth (after the iteration)

Time advances in ticks of ``export_interval_s``. At each tick every device
exports the spans that ended since the previous tick (one request, as a
batch span processor would) and, every ``metric_interval_s``, collects its
metrics; the cloud shadow service and the labeling service export theirs.
``deliver_ns`` is when the request leaves the device: the tick itself, or
the end of an outage for a site that is offline (its backlog drains in
order). Bulk adds a simulated network latency to get the gateway's
``received_at``; live sends the request when the simulated clock reaches
``deliver_ns``.

Randomness: every device has its own ``numpy.random.Generator(PCG64)``
streams derived from ``SeedSequence([seed, stream, device_index])``; the
fleet layout and the incident plan have theirs. No global state, no wall
clock: the same config gives the same requests, byte for byte.

Per device, all events of the run are drawn at once with numpy (Poisson
arrivals with a daily rhythm by thinning, log-normal stage latencies with a
Pareto tail, errors, features, predictions, shadow and label sampling,
ids); the per-tick work is slicing those arrays and building span specs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from opentelemetry.sdk.metrics.export import MetricsData

from .device import HOUR, DeviceSim
from .fleet import DEVICE_CLASSES, MODELS, NS, Fleet, build_fleet
from .incident_plan import plan_incidents
from .incidents import KINDS, Effects, Incident, iso
from .otel import DeviceMeters, SimResource, SpanSpec
from .visibility import RunVolume

DEFAULT_START_NS = 1_793_577_600 * NS  # 2026-11-02T00:00:00Z, a Monday
CLOUD_RESOURCE = {
    "service.name": "shadow-inference",
    "service.version": "5.0.0",
    "cloud.provider": "simulated",
    "cloud.region": "central",
}
LABEL_RESOURCE = {"service.name": "labeling-service", "service.version": "2.1.0"}


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Times in nanoseconds since the epoch (UTC)."""

    seed: int = 7
    devices: int = 200
    start_ns: int = DEFAULT_START_NS
    duration_ns: int = 48 * HOUR
    export_interval_s: int = 60
    metric_interval_s: int = 60
    inferences_per_hour: float = 30.0  # mean emitted inference spans per device-hour
    shadow_ratio: float = 0.15  # share of successful edge inferences also answered by the cloud
    label_ratio: float = 0.05  # share of successful edge inferences that get a ground-truth label
    stage_ratio: float = 1.0  # share of inferences with preprocess/execute/postprocess child spans
    #                           (failed inferences always keep theirs, as a tail sampler would)
    incidents: tuple[str, ...] = KINDS

    def validate(self) -> None:
        if self.devices < 1:
            raise ValueError("devices must be >= 1")
        if self.export_interval_s < 1:
            raise ValueError("export interval must be >= 1 s")
        if self.metric_interval_s % self.export_interval_s:
            raise ValueError("the metric interval must be a multiple of the export interval")
        if self.duration_ns < self.export_interval_s * NS:
            raise ValueError("the run must last at least one export interval")
        if not 0 < self.inferences_per_hour <= 100_000:
            raise ValueError("inferences per hour must be in (0, 100000]")
        for name in ("shadow_ratio", "label_ratio", "stage_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")


def run_volume(cfg: SimConfig, fleet: Fleet) -> RunVolume:
    """How much telemetry ``cfg`` gives ``fleet`` where (what the incident plan sizes against)."""
    return RunVolume(fleet, inferences_per_hour=cfg.inferences_per_hour, shadow_ratio=cfg.shadow_ratio,
                     stage_ratio=cfg.stage_ratio, export_interval_s=cfg.export_interval_s,
                     metric_interval_s=cfg.metric_interval_s)


def omitted_incidents(cfg: SimConfig) -> dict[str, str]:
    """The incident kinds ``cfg`` asks for that its run is too small or too short to show, with
    the reason for each (cheap: plans the fleet and its incidents, simulates nothing)."""
    fleet = build_fleet(cfg.devices, cfg.seed, cfg.start_ns, cfg.duration_ns)
    return plan_incidents(fleet, cfg.incidents, cfg.seed, run_volume(cfg, fleet)).omitted


# --------------------------------------------------------------------------------------
# emitters: who sends telemetry (devices, the cloud shadow service, the labeling service)
# --------------------------------------------------------------------------------------
@dataclass
class Emitter:
    key: int  # position for ordering and per-emitter RNG streams
    name: str
    resources: list[SimResource]
    phone: bool = False

    def resource(self, epoch: int = 0) -> SimResource:
        return self.resources[epoch]


@dataclass
class Request:
    """One OTLP export request, before encoding."""

    signal: str
    emitter: Emitter
    epoch: int
    created_ns: int
    deliver_ns: int
    seq: int
    spans: list[SpanSpec] | None = None
    metrics: MetricsData | None = None


# --------------------------------------------------------------------------------------
# the fleet
# --------------------------------------------------------------------------------------
class FleetSimulation:
    """The whole run: fleet, incidents, per-device event streams, requests."""

    def __init__(self, cfg: SimConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.tick_ns = cfg.export_interval_s * NS
        self.metric_every = cfg.metric_interval_s // cfg.export_interval_s
        self.n_ticks = math.ceil(cfg.duration_ns / self.tick_ns)
        self.fleet: Fleet = build_fleet(cfg.devices, cfg.seed, cfg.start_ns, cfg.duration_ns)
        plan = plan_incidents(self.fleet, cfg.incidents, cfg.seed, run_volume(cfg, self.fleet))
        self.incidents: list[Incident] = plan.incidents
        self.omitted_incidents: dict[str, str] = plan.omitted  # kind -> why this run cannot show it
        self.effects = Effects(self.incidents)
        self.model_rollouts = {r.target: r for r in self.fleet.rollouts if r.kind == "model"}
        self.firmware_rollouts = {r.target: r for r in self.fleet.rollouts if r.kind == "firmware"}
        self.mean_relative_rate = float(np.mean([d.device_class.relative_rate for d in self.fleet.devices]))
        self.version_attrs = {
            m.name: {v: {"ml.model.name": m.name, "ml.model.version": v} for v in m.versions}
            for m in MODELS.values()
        }
        self.devices = [DeviceSim(self, d) for d in self.fleet.devices]
        n = len(self.devices)
        self.emitters = [
            Emitter(d.device.index, d.device.device_id,
                    [SimResource(d.device.resource_attributes(fw)) for fw in d.firmware],
                    phone=d.cls.kind == "phone")
            for d in self.devices
        ]
        self.cloud = Emitter(n, "shadow-inference", [SimResource(dict(CLOUD_RESOURCE))])
        self.labeler = Emitter(n + 1, "labeling-service", [SimResource(dict(LABEL_RESOURCE))])
        self._cloud_stream = self._merge_stream("shadow_end_sorted", "shadow_idx")
        self._label_stream = self._merge_stream("label_end_sorted", "label_idx")
        self.stats: dict = {"requests": {"traces": 0, "metrics": 0}, "spans": {}, "metric_points": 0}
        self._done = False

    def _merge_stream(self, ends_attr: str, idx_attr: str):
        """All devices' cloud (or label) spans sorted by (true end, device, inference),
        with per-tick bounds."""
        ends = np.concatenate([getattr(d, ends_attr) for d in self.devices] + [np.zeros(0, np.int64)])
        devs = np.concatenate([np.full(len(getattr(d, ends_attr)), d.device.index, np.int64)
                               for d in self.devices] + [np.zeros(0, np.int64)])
        idx = np.concatenate([getattr(d, idx_attr) for d in self.devices] + [np.zeros(0, np.int64)])
        order = np.lexsort((idx, devs, ends))
        ends, devs, idx = ends[order], devs[order], idx[order]
        edges = np.array([self.tick_time(k) for k in range(self.n_ticks + 1)], dtype=np.int64)
        bounds = np.searchsorted(ends, edges, side="right")
        bounds[-1] = len(ends)
        return list(zip(devs.tolist(), idx.tolist())), bounds.tolist()

    # ---- iteration ---------------------------------------------------------------------------
    def tick_time(self, k: int) -> int:
        return min(self.cfg.start_ns + k * self.tick_ns, self.cfg.start_ns + self.cfg.duration_ns)

    def requests(self, progress: Callable[[int], None] | None = None) -> Iterator[Request]:
        """Yield every request in creation order (tick by tick). Single use."""
        if self._done:
            raise RuntimeError("FleetSimulation.requests() can be iterated only once")
        self._done = True
        seq = 0
        spans_count: dict[str, int] = self.stats["spans"]
        for k in range(1, self.n_ticks + 1):
            hi_t = self.tick_time(k)
            last = k == self.n_ticks
            for dev, em in zip(self.devices, self.emitters):
                epoch = dev.epoch_of_window(k)
                deliver = self._deliver(dev, hi_t)
                specs = dev.window_specs(k)
                if specs:
                    for s in specs:
                        spans_count[s.name] = spans_count.get(s.name, 0) + 1
                    dev.spans_since_collect += len(specs)
                    yield Request("traces", em, epoch, hi_t, deliver, seq, spans=specs)
                    seq += 1
                    self.stats["requests"]["traces"] += 1
                reboot_now = dev.reboot_tick == k
                if k % self.metric_every == 0 or reboot_now or last:
                    data = self._collect(dev, em, epoch, k, hi_t)
                    yield Request("metrics", em, epoch, hi_t, deliver, seq, metrics=data)
                    seq += 1
                    self.stats["requests"]["metrics"] += 1
                if reboot_now and dev.meters is not None:
                    dev.meters.shutdown()
                    dev.meters = None
            for emitter, (items, bounds), make, key in (
                (self.cloud, self._cloud_stream, "cloud_spec", "inference.cloud"),
                (self.labeler, self._label_stream, "label_spec", "ground_truth"),
            ):
                a, b = bounds[k - 1], bounds[k]
                if a < b:
                    devs = self.devices
                    specs = [getattr(devs[d], make)(i) for d, i in items[a:b]]
                    spans_count[key] = spans_count.get(key, 0) + len(specs)
                    yield Request("traces", emitter, 0, hi_t, hi_t, seq, spans=specs)
                    seq += 1
                    self.stats["requests"]["traces"] += 1
            if progress is not None:
                progress(1)
        for dev in self.devices:
            if dev.meters is not None:
                dev.meters.shutdown()
                dev.meters = None

    def _deliver(self, dev: DeviceSim, t: int) -> int:
        """When the requests a device creates at ``t`` leave it: at once, or, while its
        site is offline, after reconnection; the queue is FIFO, so requests created
        while the backlog drains wait behind it (0.2 s per tick's requests)."""
        off = dev.offline
        if off is not None and off[0] <= t < off[1]:
            d = off[1] + dev.backlog_jitter + dev.backlog * (NS // 5)
        elif dev.last_deliver >= t:
            d = dev.last_deliver + NS // 5
        else:
            d = t
        if d != t:
            dev.backlog += 1
        dev.last_deliver = d
        return d

    def _collect(self, dev: DeviceSim, em: Emitter, epoch: int, k: int, t: int) -> MetricsData:
        if dev.meters is None or dev.meters_epoch != epoch:
            boot = self.cfg.start_ns if epoch == 0 else dev.boot_done
            dev.meters = DeviceMeters(em.resource(epoch), dev.clock(boot), dev.cls.battery)
            dev.meters_epoch = epoch
        g = k - 1
        n_spans, dev.spans_since_collect = dev.spans_since_collect, 0
        data = dev.meters.collect(
            dev.clock(t), dev.g_cpu[g], dev.g_mem[g], dev.g_temp[g],
            dev.g_batt[g] if dev.g_batt is not None else None,
            n_spans * dev.cls.export_bytes_per_span,
            dev.histogram_records(k),
        )
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    self.stats["metric_points"] += len(m.data.data_points)
        return data

    # ---- ground truth ------------------------------------------------------------------------
    def manifest(self) -> dict:
        cfg = self.cfg
        f = self.fleet
        n_inf = sum(d.n for d in self.devices)
        hours = cfg.duration_ns / HOUR
        per_class = {}
        for name, c in DEVICE_CLASSES.items():
            devs = [d for d in self.devices if d.cls is c]
            if not devs:
                continue
            emitted = sum(d.n for d in devs) / (len(devs) * hours)
            per_class[name] = {
                "devices": len(devs),
                "emitted_inferences_per_device_hour": round(emitted, 2),
                "nominal_inferences_per_device_hour": c.nominal_rate_per_hour,
                "sampling_ratio": round(emitted / c.nominal_rate_per_hour, 6),
            }
        deployments = []
        for d in self.devices:
            for kind, t0, t1, ro, stage, outcome, _ in d.fw_events:
                deployments.append({"device.id": d.device.device_id, "rollout_id": ro.rollout_id,
                                    "stage": stage, "outcome": outcome, "start": iso(t0), "end": iso(t1)})
            for t0, t1, outcome, stage, _ in d.model_events:
                ro = self.model_rollouts[d.model.name]
                deployments.append({"device.id": d.device.device_id, "rollout_id": ro.rollout_id,
                                    "stage": stage, "outcome": outcome, "start": iso(t0), "end": iso(t1)})
        return {
            "format": "fleetwatch-sample-manifest/1",
            "config": {
                "seed": cfg.seed,
                "devices": cfg.devices,
                "start": iso(cfg.start_ns),
                "start_unix_nano": cfg.start_ns,
                "duration_hours": round(hours, 6),
                "export_interval_s": cfg.export_interval_s,
                "metric_interval_s": cfg.metric_interval_s,
                "inferences_per_hour": cfg.inferences_per_hour,
                "shadow_ratio": cfg.shadow_ratio,
                "label_ratio": cfg.label_ratio,
                "stage_ratio": cfg.stage_ratio,
                "incidents": list(cfg.incidents),
            },
            "sampling": {
                "what": "the simulator emits a sample of each device's inferences (as a head sampler "
                        "would); the inference-duration histogram counts the emitted ones",
                "mean_inferences_per_device_hour": round(n_inf / (len(self.devices) * hours), 3),
                "per_device_class": per_class,
            },
            "counts": {
                "inferences_edge": n_inf,
                "spans": dict(sorted(self.stats["spans"].items())),
                "requests": dict(self.stats["requests"]),
                "metric_points": self.stats["metric_points"],
            },
            "fleet": f.describe(),
            "rollouts": [r.describe() for r in f.rollouts],
            "deployments": deployments,
            "incidents": [i.describe(f) for i in self.incidents],
            "incidents_omitted": dict(self.omitted_incidents),
        }


__all__ = ["SimConfig", "FleetSimulation", "Request", "Emitter", "DEFAULT_START_NS", "HOUR"]
