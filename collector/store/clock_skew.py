"""Per-device clock offset from receive time against event time, and last-seen times.

Every request has a *lag*: the gateway's receive time minus the newest event
time in it (by the device's clock). A device with a correct clock has lags of
at least the network and export delay; a device that buffered telemetry
while offline has large lags for its backlog — but its freshest requests
still arrive with a small lag. A device whose clock is behind has large lags
always, and one whose clock is ahead has negative lags, which buffering can
never cause. So the estimate is the smallest lag over the device's recent
requests::

    clocks = DeviceClocks(threshold_seconds=120)
    clocks.observe("cam-7", received_at_ns, newest_event_ns)
    clocks.offset_ns("cam-7")     # device clock minus gateway clock, or None when within the threshold
    clocks.snapshot()             # rows for the ``devices`` table

Rules: an offset is reported when the smallest lag over the last ``window``
requests is below ``-threshold`` (ahead: one request proves it) or above
``+threshold`` (behind) — but "behind" only once the device's clock is seen
keeping pace: over its last ``min_requests`` requests its event time must
not advance faster than twice its receive time. A backlog being uploaded
advances event time far faster than receive time (hours of events in
seconds), so a device catching up is never taken for a slow clock.
Corrected event time = device time minus the offset. Limits: a clock that jumps (an NTP fix) is re-estimated
only as old requests leave the window; the threshold should exceed the
devices' export interval.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class _Device:
    lags: deque = field(default_factory=lambda: deque(maxlen=64))
    recent: deque = field(default_factory=lambda: deque(maxlen=8))  # (received_ns, event_ns)
    last_seen_ns: int = 0
    last_event_ns: int = 0
    seen: int = 0


class DeviceClocks:
    """Clock-offset estimates and freshness per device; see the module docstring."""

    def __init__(self, threshold_seconds: float = 120.0, window: int = 64, min_requests: int = 8) -> None:
        if threshold_seconds <= 0 or window < 1 or min_requests < 1:
            raise ValueError("threshold_seconds, window and min_requests must be positive")
        self.threshold_ns = int(threshold_seconds * 1e9)
        self.window = window
        self.min_requests = min_requests
        self._devices: dict[str, _Device] = {}

    def __len__(self) -> int:
        return len(self._devices)

    def _device(self, device_id: str) -> _Device:
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = _Device(lags=deque(maxlen=self.window),
                                                        recent=deque(maxlen=self.min_requests))
        return device

    def observe(self, device_id: str, received_at_ns: int, newest_event_ns: int) -> None:
        device = self._device(device_id)
        device.lags.append(received_at_ns - newest_event_ns)
        device.recent.append((received_at_ns, newest_event_ns))
        device.seen += 1
        device.last_seen_ns = max(device.last_seen_ns, received_at_ns)
        device.last_event_ns = max(device.last_event_ns, newest_event_ns)

    def seed(self, device_id: str, min_lag_ns: int, last_seen_ns: int, last_event_ns: int, seen: int) -> None:
        """Restore a device from the ``devices`` table after a restart (its pace is re-learned)."""
        device = self._device(device_id)
        device.lags.append(min_lag_ns)
        device.seen = seen
        device.last_seen_ns, device.last_event_ns = last_seen_ns, last_event_ns

    def min_lag_ns(self, device_id: str) -> int | None:
        device = self._devices.get(device_id)
        return min(device.lags) if device and device.lags else None

    def offset_ns(self, device_id: str) -> int | None:
        device = self._devices.get(device_id)
        if not device or not device.lags:
            return None
        lag = min(device.lags)
        if lag < -self.threshold_ns or (lag > self.threshold_ns and self._keeps_pace(device)):
            return -lag
        return None

    def _keeps_pace(self, device: _Device) -> bool:
        """Event time advancing no faster than (twice) receive time over the last requests."""
        if len(device.recent) < self.min_requests:
            return False
        received = device.recent[-1][0] - device.recent[0][0]
        events = device.recent[-1][1] - device.recent[0][1]
        return events <= 2 * received + self.threshold_ns // 10

    def snapshot(self, device_ids=None) -> list[tuple]:
        """Rows (device_id, last_seen_ns, last_event_ns, min_lag_ns, clock_offset_ns, clock_skewed, requests, updated_ns)."""
        now = time.time_ns()
        rows = []
        for device_id in device_ids if device_ids is not None else self._devices:
            device = self._devices[device_id]
            offset = self.offset_ns(device_id)
            rows.append((device_id, device.last_seen_ns, device.last_event_ns, min(device.lags), offset,
                         offset is not None, device.seen, now))
        return rows
