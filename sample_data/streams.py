"""The simulator's seeded random streams: one per purpose, so no draw shifts another's.

Every device has its own ``numpy`` PCG64 streams, derived from
``SeedSequence([seed, stream, device index])``::

    rng = stream(seed, EVENTS, device.index)   # lifecycle, arrivals, per-inference draws, gauges
    ids = random_ids(stream(seed, IDS, device.index), (n, 10))
    run_token(seed, device.index)              # the per-run part of its ml.request.id

The bulk writer's network latency has stream ``NETWORK`` per emitter (the
devices, then the cloud shadow service and the labeling service). The fleet
layout and the incident plan have their own seed sequences
(:func:`sample_data.fleet.build_fleet`,
:func:`sample_data.incident_plan.plan_incidents`).
"""

from __future__ import annotations

import numpy as np

EVENTS = 1  # a device's events, drawn in a fixed order (see sample_data.device)
IDS = 2  # trace and span ids of its inferences (and of the spans they cause)
NETWORK = 3  # simulated network latency of an emitter's requests (bulk output)
LIFECYCLE_IDS = 4  # trace and span ids of its deployment and model.load spans
RUN_TOKEN = 5  # the per-run token in its ml.request.id

U64_MAX = (1 << 64) - 1


def stream(seed: int, purpose: int, index: int) -> np.random.Generator:
    """The random stream ``purpose`` of device (or emitter) ``index`` in the run with ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, purpose, index])))


def random_ids(rng: np.random.Generator, shape) -> np.ndarray:
    """Non-zero 64-bit ids (trace ids are two of them)."""
    return rng.integers(1, U64_MAX, size=shape, dtype=np.uint64, endpoint=True)


def run_token(seed: int, index: int) -> int:
    """A 32-bit token per (run seed, device), so runs with other seeds never share request ids."""
    return int(np.random.SeedSequence([seed, RUN_TOKEN, index]).generate_state(1, np.uint32)[0])
