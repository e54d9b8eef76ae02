"""One device's firmware and model updates: when they happen, how they end, their spans.

:func:`plan_lifecycle` draws, from the device's event stream, what the
rollouts of the run (:attr:`sample_data.fleet.Fleet.rollouts`) do to one
device; :func:`lifecycle_spans` turns that plan into the device's
``deployment`` spans with their ``model.load`` children::

    life = plan_lifecycle(sim, device, rng)
    life.firmware            # firmware per epoch: [installed] or [installed, updated]
    life.reboot_tick         # the firmware update reboots the device at the end of this tick, or None
    life.loads               # successful and failed model loads, by end time
    spans = lifecycle_spans(life, device.model, clock, stream(seed, LIFECYCLE_IDS, device.index))

A firmware update reboots the device at the next tick after its download;
the boot loads whatever model version is current then. A model update that
would overlap the reboot is moved after it. About 2 % of firmware updates,
3 % of model downloads and 4 % of model loads (integrity check, then a
reload of the old version) fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from opentelemetry.trace import Status, StatusCode

from .fleet import MINUTE, NS, Device, Model, Rollout
from .otel import INTERNAL, SpanSpec
from .streams import random_ids

if TYPE_CHECKING:  # pragma: no cover
    from .generator import FleetSimulation

ModelLoad = tuple[int, int, str, bool]  # (start, end, version, integrity ok), true times


@dataclass
class Lifecycle:
    """One device's updates over the run (true times, ns)."""

    firmware: list[str]  # firmware per epoch
    reboot_tick: int | None  # the firmware update reboots the device at the end of this tick
    reboot_true: int | None  # ... at this true time
    boot_done: int | None
    loads: list[ModelLoad]  # every model load, by end time
    fw_load: tuple[int, int] | None  # (start, end) of the model load after the reboot
    fw_load_version: str | None  # the version it loads
    fw_events: list[tuple]  # ("fw", start, end, rollout, stage, outcome, fw_load or None)
    model_events: list[tuple]  # (start, end, outcome, stage, [ModelLoad])
    model_rollout: Rollout | None


def plan_lifecycle(sim: FleetSimulation, device: Device, rng: np.random.Generator) -> Lifecycle:
    """Firmware update (and reboot), model update and model loads of ``device``, drawn from ``rng``."""
    cls, model = device.device_class, device.model
    start = sim.cfg.start_ns
    end = start + sim.cfg.duration_ns
    tick = sim.tick_ns
    reboot_tick: int | None = None
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
            reboot_tick = k
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
    loads: list[ModelLoad] = []
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
    return Lifecycle(
        firmware=firmware,
        reboot_tick=reboot_tick,
        reboot_true=reboot_true,
        boot_done=boot_done,
        loads=loads,
        fw_load=fw_load,
        fw_load_version=loads_fw[2] if fw_load is not None else None,
        fw_events=events,
        model_events=model_events,
        model_rollout=m_ro,
    )


def lifecycle_spans(life: Lifecycle, model: Model, clock: Callable[[int], int],
                    life_ids: np.random.Generator) -> list[tuple[int, list[SpanSpec]]]:
    """``[(true end, [SpanSpec])]`` per deployment, by end: the ``deployment`` span after
    its ``model.load`` children, stamped with the device ``clock``; ids from ``life_ids``."""
    lifecycle: list[tuple[int, list[SpanSpec]]] = []
    for kind, t0, t1, ro, stage, outcome, fwl in life.fw_events:
        tid = int(random_ids(life_ids, 2)[0]) << 64 | int(random_ids(life_ids, 1)[0])
        sid = int(random_ids(life_ids, 1)[0])
        specs = []
        if fwl is not None:
            specs.append(_load_spec(model, clock, life_ids, tid, sid, fwl[0], fwl[1], life.fw_load_version, True))
        specs.append(_deploy_spec(clock, tid, sid, t0, t1, "firmware", ro, stage, outcome, {}))
        lifecycle.append((t1, specs))
    for t0, t1, outcome, stage, mloads in life.model_events:
        tid = int(random_ids(life_ids, 2)[0]) << 64 | int(random_ids(life_ids, 1)[0])
        sid = int(random_ids(life_ids, 1)[0])
        specs = [_load_spec(model, clock, life_ids, tid, sid, a, b, v, okk) for a, b, v, okk in mloads]
        specs.append(_deploy_spec(clock, tid, sid, t0, t1, "model", life.model_rollout, stage, outcome,
                                  {"ml.model.name": model.name}))
        lifecycle.append((t1, specs))
    lifecycle.sort(key=lambda x: x[0])
    return lifecycle


def _load_spec(model: Model, clock: Callable[[int], int], life_ids: np.random.Generator,
               tid: int, parent: int, a: int, b: int, version: str, ok: bool) -> SpanSpec:
    attrs = {
        "ml.model.name": model.name,
        "ml.model.version": version,
        "ml.model.integrity": "ok" if ok else "failed",
    }
    status = None if ok else Status(StatusCode.ERROR, "model signature verification failed")
    return SpanSpec("model.load", tid, int(random_ids(life_ids, 1)[0]), parent, False, INTERNAL,
                    clock(a), clock(b), attrs, status)


def _deploy_spec(clock: Callable[[int], int], tid: int, sid: int, a: int, b: int, kind: str,
                 ro: Rollout, stage: str, outcome: str, extra: dict) -> SpanSpec:
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
    return SpanSpec("deployment", tid, sid, 0, False, INTERNAL, clock(a), clock(b), attrs, status)
