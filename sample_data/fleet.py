"""The simulated fleet: regions, sites, device classes, firmware, models, rollouts.

Everything here is static description plus :func:`build_fleet`, which lays
out a fleet deterministically from a seed::

    from sample_data.fleet import build_fleet
    fleet = build_fleet(n_devices=200, seed=7, start_ns=..., duration_ns=...)
    fleet.devices[0].device_id          # "ams1-orin-001"
    fleet.devices[0].resource_attributes(firmware="6.1.0")
    fleet.rollouts                      # staged model / firmware rollouts
    fleet.describe()                    # JSON-ready summary for the manifest

Catalogue (the numbers are the generator's baseline; incidents change them):

* ``DEVICE_CLASSES``: hardware families with their service, model, latency
  profile per stage (median ms and log-normal sigma), resource baseline
  (CPU, memory, idle temperature, battery or not), firmware versions and a
  relative inference rate.
* ``MODELS``: a classifier (``defect-detector``, shadowed in the cloud), a
  keyword classifier on phones (``keyword-spotter``, no shadow: audio stays
  on the phone) and a regression model (``energy-forecaster``, shadowed);
  each with versions, labels or value range and the input features it logs
  as ``ml.feature.*`` (numeric: mean and standard deviation; categorical:
  categories and probabilities).
* ``SITES``: ten sites in three regions, each with a UTC offset (for the
  daily rhythm), an ambient temperature and a device mix.

Rollouts are staged: a canary stage on about 10 % of the target devices,
then the rest of the fleet spread over a few hours. Times are fractions of
the run, so short live runs get the same rollout shape as the two-day
sample (not necessarily the same incidents: see ``sample_data.visibility``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCOPE_NAME = "fleetwatch.sample_data"
SCOPE_VERSION = "1.0"
NS = 1_000_000_000
MINUTE = 60 * NS
HOUR = 3600 * NS
THROTTLE_C = 85.0  # any device whose SoC is hotter than this throttles ...
THROTTLE_FACTOR = 2.3  # ... and its preprocess and execute stages take this much longer


@dataclass(frozen=True)
class DeviceClass:
    name: str
    prefix: str
    kind: str
    service: str
    model: str
    os_type: str
    # stage latency: (median ms, log-normal sigma)
    preprocess: tuple[float, float]
    execute: tuple[float, float]
    postprocess: tuple[float, float]
    tail_probability: float  # share of executions hit by a heavy (Pareto) tail
    cpu_base: float  # utilisation 0..1 at nominal load
    memory_total: int  # bytes
    memory_base: float  # share used at nominal load
    idle_temp_c: float  # above ambient at nominal load
    battery: bool
    firmware: tuple[str, str]  # (installed, rolled out during the run)
    relative_rate: float  # emitted inferences per hour relative to the fleet mean
    nominal_rate_per_hour: float  # what a real device of this class does
    export_bytes_per_span: int  # modelled telemetry bytes per span (telemetry.bytes_sent)


DEVICE_CLASSES: dict[str, DeviceClass] = {
    c.name: c
    for c in (
        DeviceClass(
            name="jetson-orin", prefix="orin", kind="gpu-module", service="vision-inspector",
            model="defect-detector", os_type="linux",
            preprocess=(3.2, 0.25), execute=(14.0, 0.30), postprocess=(1.4, 0.30),
            tail_probability=0.015, cpu_base=0.42, memory_total=16 << 30, memory_base=0.38,
            idle_temp_c=24.0, battery=False, firmware=("6.0.2", "6.1.0"),
            relative_rate=1.4, nominal_rate_per_hour=7200.0, export_bytes_per_span=410,
        ),
        DeviceClass(
            name="coral-tpu", prefix="coral", kind="tpu-stick", service="vision-inspector",
            model="defect-detector", os_type="linux",
            preprocess=(4.5, 0.25), execute=(9.0, 0.25), postprocess=(1.8, 0.30),
            tail_probability=0.01, cpu_base=0.31, memory_total=4 << 30, memory_base=0.52,
            idle_temp_c=18.0, battery=False, firmware=("2.14.1", "2.15.0"),
            relative_rate=1.2, nominal_rate_per_hour=3600.0, export_bytes_per_span=400,
        ),
        DeviceClass(
            name="pixel-phone", prefix="phone", kind="phone", service="keyword-app",
            model="keyword-spotter", os_type="android",
            preprocess=(6.0, 0.35), execute=(22.0, 0.35), postprocess=(2.0, 0.35),
            tail_probability=0.03, cpu_base=0.18, memory_total=8 << 30, memory_base=0.61,
            idle_temp_c=9.0, battery=True, firmware=("14.3.1", "14.4.0"),
            relative_rate=0.7, nominal_rate_per_hour=240.0, export_bytes_per_span=390,
        ),
        DeviceClass(
            name="stm32-mcu", prefix="mcu", kind="microcontroller", service="energy-sensor",
            model="energy-forecaster", os_type="rtos",
            preprocess=(11.0, 0.20), execute=(85.0, 0.20), postprocess=(4.0, 0.20),
            tail_probability=0.005, cpu_base=0.55, memory_total=1 << 20, memory_base=0.71,
            idle_temp_c=6.0, battery=True, firmware=("1.8.3", "1.9.0"),
            relative_rate=0.6, nominal_rate_per_hour=60.0, export_bytes_per_span=360,
        ),
    )
}


@dataclass(frozen=True)
class Feature:
    name: str
    mean: float = 0.0
    std: float = 1.0
    categories: tuple[str, ...] = ()
    probabilities: tuple[float, ...] = ()
    decimals: int = 3

    @property
    def categorical(self) -> bool:
        return bool(self.categories)


@dataclass(frozen=True)
class Model:
    name: str
    task: str  # "classification" | "regression"
    versions: tuple[str, ...]  # (installed, rolled out during the run)
    cloud_version: str | None  # None: no shadow mode
    labels: tuple[str, ...] = ()
    label_prior: tuple[float, ...] = ()
    features: tuple[Feature, ...] = ()
    edge_accuracy: float = 0.94  # P(edge label == true label)
    cloud_accuracy: float = 0.97
    edge_value_noise: float = 1.0  # regression: std of edge prediction error
    cloud_value_noise: float = 0.4


MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        Model(
            name="defect-detector", task="classification", versions=("2.3.1", "2.4.0"),
            cloud_version="cloud-xl-5", labels=("ok", "scratch", "dent", "misaligned"),
            label_prior=(0.82, 0.08, 0.06, 0.04),
            features=(
                Feature("brightness", mean=128.0, std=18.0, decimals=1),
                Feature("contrast", mean=0.55, std=0.08, decimals=3),
                Feature("blur", mean=0.12, std=0.04, decimals=3),
                Feature("lighting", categories=("daylight", "led", "low"), probabilities=(0.5, 0.4, 0.1)),
            ),
            edge_accuracy=0.94, cloud_accuracy=0.97,
        ),
        Model(
            name="keyword-spotter", task="classification", versions=("1.2.0", "1.2.0"),
            cloud_version=None, labels=("none", "start", "stop", "next", "help"),
            label_prior=(0.70, 0.08, 0.08, 0.10, 0.04),
            features=(
                Feature("snr_db", mean=18.0, std=5.0, decimals=1),
                Feature("utterance_ms", mean=820.0, std=180.0, decimals=0),
                Feature("locale", categories=("en", "de", "es", "hi"), probabilities=(0.45, 0.2, 0.2, 0.15)),
            ),
            edge_accuracy=0.92,
        ),
        Model(
            name="energy-forecaster", task="regression", versions=("0.9.4", "0.9.5"),
            cloud_version="cloud-gbm-12",
            features=(
                Feature("ambient_temp_c", mean=21.0, std=4.0, decimals=2),
                Feature("load_kw", mean=35.0, std=9.0, decimals=2),
                Feature("humidity", mean=0.45, std=0.1, decimals=3),
                Feature("day_type", categories=("weekday", "weekend"), probabilities=(0.71, 0.29)),
            ),
            edge_value_noise=1.1, cloud_value_noise=0.45,
        ),
    )
}


@dataclass(frozen=True)
class Site:
    name: str
    code: str
    region: str
    utc_offset_h: int
    ambient_c: float
    mix: dict[str, float]  # device class -> weight


SITES: tuple[Site, ...] = (
    Site("ams-factory-1", "ams1", "eu-west", 1, 19.0, {"jetson-orin": 5, "coral-tpu": 3, "stm32-mcu": 3, "pixel-phone": 1}),
    Site("ber-warehouse-2", "ber2", "eu-west", 1, 17.0, {"coral-tpu": 4, "stm32-mcu": 3, "pixel-phone": 3}),
    Site("mad-store-3", "mad3", "eu-west", 1, 24.0, {"coral-tpu": 3, "pixel-phone": 4, "stm32-mcu": 1}),
    Site("nyc-store-1", "nyc1", "us-east", -5, 21.0, {"coral-tpu": 3, "pixel-phone": 4, "stm32-mcu": 1}),
    Site("atl-factory-2", "atl2", "us-east", -5, 26.0, {"jetson-orin": 5, "coral-tpu": 2, "stm32-mcu": 3}),
    Site("bos-warehouse-3", "bos3", "us-east", -5, 15.0, {"coral-tpu": 4, "stm32-mcu": 3, "pixel-phone": 2}),
    Site("blr-factory-1", "blr1", "ap-south", 5, 29.0, {"jetson-orin": 5, "coral-tpu": 3, "stm32-mcu": 2, "pixel-phone": 1}),
    Site("sin-warehouse-2", "sin2", "ap-south", 8, 31.0, {"jetson-orin": 4, "coral-tpu": 3, "stm32-mcu": 2, "pixel-phone": 2}),
    Site("bom-store-3", "bom3", "ap-south", 5, 30.0, {"coral-tpu": 2, "pixel-phone": 5, "stm32-mcu": 1}),
    Site("syd-lab-4", "syd4", "ap-south", 11, 22.0, {"jetson-orin": 2, "coral-tpu": 2, "pixel-phone": 2, "stm32-mcu": 2}),
)
REGIONS: tuple[str, ...] = tuple(dict.fromkeys(s.region for s in SITES))
SITE_BY_NAME = {s.name: s for s in SITES}


@dataclass
class Device:
    """One simulated device; ``index`` is its position in the fleet."""

    index: int
    device_id: str
    site: Site
    device_class: DeviceClass
    clock_offset_ns: int = 0  # device clock = true time + offset + drift
    clock_drift_ppm: float = 0.0

    @property
    def model(self) -> Model:
        return MODELS[self.device_class.model]

    def resource_attributes(self, firmware: str) -> dict[str, str]:
        c = self.device_class
        return {
            "service.name": c.service,
            "service.version": "1.0.0",
            "device.id": self.device_id,
            "device.model.identifier": c.name,
            "os.type": c.os_type,
            "fleet.site": self.site.name,
            "fleet.region": self.site.region,
            "device.class": c.name,
            "device.firmware.version": firmware,
        }


@dataclass(frozen=True)
class RolloutStage:
    name: str  # "canary" | "fleet"
    start_ns: int
    end_ns: int


@dataclass
class Rollout:
    """A staged rollout: which devices get what, when (per device)."""

    rollout_id: str
    kind: str  # "model" | "firmware"
    target: str  # model name or device class name
    from_version: str
    to_version: str
    stages: tuple[RolloutStage, ...]
    # device index -> (stage name, update time ns)
    schedule: dict[int, tuple[str, int]] = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "rollout_id": self.rollout_id,
            "kind": self.kind,
            "target": self.target,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "stages": [
                {"stage": s.name, "start_unix_nano": s.start_ns, "end_unix_nano": s.end_ns,
                 "devices": sum(1 for v in self.schedule.values() if v[0] == s.name)}
                for s in self.stages
            ],
        }


@dataclass
class Fleet:
    devices: list[Device]
    rollouts: list[Rollout]
    start_ns: int
    duration_ns: int

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

    def sites_in_use(self) -> list[Site]:
        seen = {d.site.name for d in self.devices}
        return [s for s in SITES if s.name in seen]

    def describe(self) -> dict:
        classes: dict[str, int] = {}
        for d in self.devices:
            classes[d.device_class.name] = classes.get(d.device_class.name, 0) + 1
        return {
            "regions": sorted({d.site.region for d in self.devices}),
            "sites": [
                {"site": s.name, "region": s.region, "utc_offset_hours": s.utc_offset_h,
                 "devices": sum(1 for d in self.devices if d.site is s)}
                for s in self.sites_in_use()
            ],
            "device_classes": {
                name: {"kind": c.kind, "service": c.service, "model": c.model,
                       "devices": classes.get(name, 0), "firmware": list(c.firmware),
                       "battery": c.battery}
                for name, c in DEVICE_CLASSES.items()
            },
            "models": {
                name: {"task": m.task, "versions": list(m.versions), "cloud_shadow_version": m.cloud_version,
                       "labels": list(m.labels),
                       "features": [f"ml.feature.{f.name}" for f in m.features]}
                for name, m in MODELS.items()
            },
            "devices": [
                {"device.id": d.device_id, "fleet.site": d.site.name, "fleet.region": d.site.region,
                 "device.class": d.device_class.name}
                for d in self.devices
            ],
        }


def _layout(n_devices: int, rng: np.random.Generator) -> list[tuple[Site, DeviceClass]]:
    """Spread devices over sites (round-robin, so every site is used early)
    and pick each device's class from its site's mix."""
    out = []
    for i in range(n_devices):
        site = SITES[i % len(SITES)]
        names = list(site.mix)
        weights = np.array([site.mix[n] for n in names], dtype=float)
        cls = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        out.append((site, DEVICE_CLASSES[cls]))
    return out


def _staged(rng: np.random.Generator, indices: list[int], start_ns: int, duration_ns: int,
            canary_at: float, fleet_at: float, fleet_spread: float,
            canary_share: float = 0.1) -> tuple[tuple[RolloutStage, ...], dict[int, tuple[str, int]]]:
    canary_start = start_ns + int(canary_at * duration_ns)
    canary_end = canary_start + int(0.02 * duration_ns)
    fleet_start = start_ns + int(fleet_at * duration_ns)
    fleet_end = fleet_start + int(fleet_spread * duration_ns)
    order = [indices[i] for i in rng.permutation(len(indices))]
    n_canary = max(1, round(canary_share * len(order))) if order else 0
    schedule: dict[int, tuple[str, int]] = {}
    for k, idx in enumerate(order):
        if k < n_canary:
            t = canary_start + int(rng.uniform(0, canary_end - canary_start))
            schedule[idx] = ("canary", t)
        else:
            t = fleet_start + int(rng.uniform(0, fleet_end - fleet_start))
            schedule[idx] = ("fleet", t)
    stages = (RolloutStage("canary", canary_start, canary_end), RolloutStage("fleet", fleet_start, fleet_end))
    return stages, schedule


def build_fleet(n_devices: int, seed: int, start_ns: int, duration_ns: int) -> Fleet:
    """Lay out ``n_devices`` devices and the rollouts of the run.

    Deterministic in (n_devices, seed, start, duration); uses its own RNG
    stream and no global state.
    """
    if n_devices < 1:
        raise ValueError("a fleet needs at least one device")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0xF1EE7])))
    layout = _layout(n_devices, rng)
    counters: dict[tuple[str, str], int] = {}
    devices = []
    for i, (site, cls) in enumerate(layout):
        k = counters.get((site.code, cls.prefix), 0) + 1
        counters[(site.code, cls.prefix)] = k
        devices.append(Device(i, f"{site.code}-{cls.prefix}-{k:03d}", site, cls))

    rollouts: list[Rollout] = []
    # Model rollouts: defect-detector 2.3.1 -> 2.4.0 and energy-forecaster 0.9.4 -> 0.9.5.
    for model_name, rid, canary_at, fleet_at in (
        ("defect-detector", "rollout-dd-2.4.0", 0.22, 0.48),
        ("energy-forecaster", "rollout-ef-0.9.5", 0.55, 0.66),
    ):
        m = MODELS[model_name]
        idx = [d.index for d in devices if d.device_class.model == model_name]
        stages, schedule = _staged(rng, idx, start_ns, duration_ns, canary_at, fleet_at, 0.08)
        rollouts.append(Rollout(rid, "model", model_name, m.versions[0], m.versions[1], stages, schedule))
    # Firmware rollout per device class (the coral-tpu one carries the latency regression).
    for cls in DEVICE_CLASSES.values():
        idx = [d.index for d in devices if d.device_class is cls]
        stages, schedule = _staged(rng, idx, start_ns, duration_ns, 0.12, 0.36, 0.12)
        rollouts.append(Rollout(f"fw-{cls.prefix}-{cls.firmware[1]}", "firmware", cls.name,
                                cls.firmware[0], cls.firmware[1], stages, schedule))
    return Fleet(devices, rollouts, start_ns, duration_ns)
