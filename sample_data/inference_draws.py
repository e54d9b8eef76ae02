"""When a device's inferences happen and what happens in each, drawn for all at once.

Both functions draw from the device's event stream, after its lifecycle
(:mod:`sample_data.lifecycle`) and in this fixed order: every byte of the
output depends on it::

    t = draw_arrivals(sim, device, life, rng)        # true start times, sorted
    x = draw_inferences(sim, device, life, rng, t)   # per inference, numpy arrays
    x.pre, x.exe, x.post, x.overhead    # stage latencies (ms)
    x.err, x.etype                      # failed?, index into ERROR_TYPES
    x.version, x.cold                   # model version, first inference after a load
    x.outputs                           # features and predictions (sample_data.model_outputs)
    x.shadow, x.labelled, x.stages      # sampled for a cloud answer, a label, stage spans

Arrivals are a Poisson process with a daily rhythm (by thinning), none
while the device reboots. Latencies are log-normal per stage, with a Pareto
tail on a share of executions, slowed by incidents, by throttling above
``THROTTLE_C`` and on a cold start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .fleet import HOUR, NS, THROTTLE_C, THROTTLE_FACTOR, Device
from .lifecycle import Lifecycle
from .model_outputs import ModelOutputs, draw_model_outputs
from .physics import daily_load, rhythm_amplitude, temperature

if TYPE_CHECKING:  # pragma: no cover
    from .generator import FleetSimulation

ERROR_TYPES = ("timeout", "runtime_error", "invalid_input")
ERROR_TYPE_P = (0.3, 0.5, 0.2)
ERROR_MESSAGES = {
    "timeout": "inference deadline exceeded",
    "runtime_error": "delegate returned an error",
    "invalid_input": "input tensor failed validation",
}


def draw_arrivals(sim: FleetSimulation, device: Device, life: Lifecycle, rng: np.random.Generator) -> np.ndarray:
    """True start times (int64 ns, sorted) of the device's emitted inferences."""
    cfg, cls = sim.cfg, device.device_class
    start = cfg.start_ns
    end = start + cfg.duration_ns
    amp = rhythm_amplitude(cls)
    base = cfg.inferences_per_hour * cls.relative_rate / sim.mean_relative_rate
    base *= float(np.exp(rng.normal(0.0, 0.2)))
    dur = end - start
    n_max = int(rng.poisson(base * (1 + amp) * dur / HOUR))
    t = start + np.sort((rng.random(n_max) * dur).astype(np.int64))
    keep = rng.random(n_max) < daily_load(device, t)
    t = t[keep]
    if life.reboot_true is not None:
        t = t[(t < life.reboot_true - 2 * NS) | (t > life.fw_load[1])]
    return t


@dataclass
class InferenceDraws:
    """Per inference (index = inference number), numpy arrays."""

    version: np.ndarray  # model version (str)
    cold: np.ndarray  # first inference after a model load
    pre: np.ndarray  # stage latencies, ms
    exe: np.ndarray
    post: np.ndarray
    overhead: np.ndarray
    err: np.ndarray
    etype: np.ndarray  # index into ERROR_TYPES
    outputs: ModelOutputs
    shadow: np.ndarray  # answered by the cloud shadow too
    c_delay: np.ndarray  # s from the edge answer's upload to the cloud answer
    c_dur: np.ndarray  # ms
    labelled: np.ndarray  # gets a ground-truth label
    l_delay: np.ndarray  # h from the edge answer's upload to its label
    l_dur: np.ndarray  # ms
    stages: np.ndarray  # emitted with preprocess / execute / postprocess spans


def draw_inferences(sim: FleetSimulation, device: Device, life: Lifecycle, rng: np.random.Generator,
                    t: np.ndarray) -> InferenceDraws:
    """Everything about the inferences starting at true times ``t``, vectorised."""
    cfg, cls, model, effects = sim.cfg, device.device_class, device.model, sim.effects
    n = len(t)
    loads, reboot_true = life.loads, life.reboot_true
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
    throttled = temperature(device, effects, t) > THROTTLE_C
    f_pre = np.where(throttled, f_pre * THROTTLE_FACTOR, f_pre)
    f_exe = np.where(throttled, f_exe * THROTTLE_FACTOR, f_exe)
    pre = pre * f_pre * np.where(cold, 2.0, 1.0)
    exe = exe * f_exe * np.where(cold, 5.0, 1.0)
    overhead = rng.uniform(0.05, 0.3, n)

    # errors
    err = rng.random(n) < effects.error_rate(device, t)
    etype = rng.choice(len(ERROR_TYPES), p=ERROR_TYPE_P, size=n)

    outputs = draw_model_outputs(rng, device, effects, t, version)

    # shadow and labels
    ok = ~err
    shadow = ok & (rng.random(n) < cfg.shadow_ratio) if model.cloud_version else np.zeros(n, dtype=bool)
    c_delay = np.clip(rng.lognormal(np.log(4.0), 0.8, n), 0.3, 300.0)
    c_dur = rng.lognormal(np.log(60.0), 0.3, n)
    labelled = ok & (rng.random(n) < cfg.label_ratio)
    l_delay = np.clip(rng.lognormal(np.log(3.0), 0.6, n), 1 / 3, 18.0)
    l_dur = rng.uniform(1.0, 5.0, n)
    stages = err | (rng.random(n) < cfg.stage_ratio)
    return InferenceDraws(version=version, cold=cold, pre=pre, exe=exe, post=post, overhead=overhead,
                          err=err, etype=etype, outputs=outputs, shadow=shadow, c_delay=c_delay,
                          c_dur=c_dur, labelled=labelled, l_delay=l_delay, l_dur=l_dur, stages=stages)
