"""A device's physical side: its clock, daily load, SoC temperature and gauge readings.

Pure functions of true time (int64 ns) except :func:`draw_gauges`, which
adds sensor noise from the device's event stream::

    device_clock(device, start_ns, t)       # what the device's (possibly skewed) clock says
    daily_load(device, t)                   # relative load 0..1 (peak at 14:00 local time)
    temperature(device, effects, t)         # modelled SoC temperature, incident heat included
    draw_gauges(rng, device, effects, tick_ends, boot_ns, start_ns, tick_ns)   # one reading per tick
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .fleet import HOUR, Device, DeviceClass

if TYPE_CHECKING:  # pragma: no cover
    from .incidents import Effects


def local_hours(t: np.ndarray, utc_offset_h: int) -> np.ndarray:
    """Hour of the day (float, 0..24) in local time at true times ``t``."""
    return ((t / HOUR) + utc_offset_h) % 24.0


def rhythm_amplitude(device_class: DeviceClass) -> float:
    """How strongly a class follows the daily rhythm: phones strongly, the rest mildly."""
    return 0.7 if device_class.kind == "phone" else 0.35


def daily_load(device: Device, t: np.ndarray) -> np.ndarray:
    """Relative load 0..1 from the daily rhythm at true times ``t``."""
    amp = rhythm_amplitude(device.device_class)
    lh = local_hours(t, device.site.utc_offset_h)
    return (1 + amp * np.cos(2 * np.pi * (lh - 14.0) / 24.0)) / (1 + amp)


def device_clock(device: Device, start_ns: int, t):
    """Device clock for true time(s) ``t`` (int or int64 array): offset plus drift since
    ``start_ns`` (both zero unless a clock-skew incident set them)."""
    if isinstance(t, np.ndarray):
        return t + device.clock_offset_ns + ((t - start_ns) * (device.clock_drift_ppm * 1e-6)).astype(np.int64)
    return int(t) + device.clock_offset_ns + int((int(t) - start_ns) * (device.clock_drift_ppm * 1e-6))


def temperature(device: Device, effects: Effects, t: np.ndarray) -> np.ndarray:
    """Modelled SoC temperature (no sensor noise): site ambient with a daily swing,
    heat from load, and any incident's extra heat."""
    lh = local_hours(t, device.site.utc_offset_h)
    ambient = device.site.ambient_c + 3.0 * np.cos(2 * np.pi * (lh - 15.0) / 24.0)
    return ambient + device.device_class.idle_temp_c * (0.7 + 0.3 * daily_load(device, t)) + effects.temperature_add(
        device, t)


@dataclass
class Gauges:
    """One reading per tick (index k - 1 for tick k)."""

    cpu: list[float]  # utilisation 0..1
    mem: list[int]  # bytes in use
    temp: list[float]  # degrees C
    batt: list[float] | None  # level 0..1; None without a battery


def draw_gauges(rng: np.random.Generator, device: Device, effects: Effects, tt: np.ndarray,
                boot_ns: int, start_ns: int, tick_ns: int) -> Gauges:
    """Gauge readings at true times ``tt`` (the ends of the ticks, ``tick_ns`` apart).

    Memory leaks slowly since the last boot: ``boot_ns``, or, before a reboot during
    the run, six hours before ``start_ns``."""
    cls = device.device_class
    n = len(tt)
    lh = local_hours(tt, device.site.utc_offset_h)
    load = daily_load(device, tt)
    cpu = cls.cpu_base * (0.55 + 0.45 * load) + rng.normal(0, 0.03, n)
    since_boot = (tt - boot_ns) / HOUR
    since_boot = np.where(since_boot < 0, (tt - start_ns) / HOUR + 6.0, since_boot)
    mem = (cls.memory_base + 0.04 * load + 0.002 * since_boot + rng.normal(0, 0.004, n))
    mem = np.clip(mem, 0.05, 0.98) * cls.memory_total
    temp = temperature(device, effects, tt) + rng.normal(0, 0.4, n)
    batt: list | None = None
    if cls.battery:
        level = float(rng.uniform(0.55, 0.95))
        batt = []
        step_h = tick_ns / HOUR
        noise = rng.normal(0, 0.002, n)
        for h, ld, nz in zip(lh.tolist(), load.tolist(), noise.tolist()):
            if cls.kind == "phone":
                delta = 0.15 * step_h if (h >= 22 or h < 7) else -(0.03 + 0.05 * ld) * step_h
            else:  # microcontroller with a small solar panel
                delta = (0.012 if 10 <= h < 16 else 0.0) * step_h - 0.004 * step_h
            level = min(1.0, max(0.03, level + delta + nz * step_h))
            batt.append(round(level, 3))
    return Gauges(
        cpu=np.round(np.clip(cpu, 0.01, 1.0), 3).tolist(),
        mem=((mem // 1024).astype(np.int64) * 1024).tolist(),
        temp=np.round(temp, 1).tolist(),
        batt=batt,
    )
