"""Seeded draws and plan parsing for the SLO scenarios (tests/slo_scenarios.py).

Every draw of a scenario is a SplitMix64 hash of (seed, stream, event key)
instead of the next value of a shared generator, so that changing one
cohort's traffic changes no other event's time, status, latency or ids.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

from analytics.api.params import parse_duration

EPOCH = datetime(1970, 1, 1)


def parse_offset(value: Any, name: str) -> timedelta:
    """``"-3h"``, ``"-90m"``, ``"30s"`` (the read API's durations, signed) or a timedelta; ValueError naming ``name``."""
    if isinstance(value, timedelta):
        return value
    text = str(value).strip()
    try:
        return -parse_duration(text[1:]) if text.startswith("-") else parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{name}: expected an offset such as -3h or -90m: {exc}") from None


def hashes(seed: int, stream: int, keys: np.ndarray) -> np.ndarray:
    """64-bit SplitMix64 hashes of (seed, stream, key), one per key: draws without shared generator state."""
    return _mix(keys.astype(np.uint64) ^ _mix(np.array([seed * 64 + stream], np.uint64)))


def uniforms(seed: int, stream: int, keys: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) draws, one per key (see :func:`hashes`)."""
    return (hashes(seed, stream, keys) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _mix(z: np.ndarray) -> np.ndarray:
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def ns(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1) * 1000


def check_rate(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 10_000:
        raise ValueError(f"{name}: inferences per minute in [0, 10000), got {value!r}")


def check_share(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError(f"{name}: a probability in [0, 1], got {value!r}")
