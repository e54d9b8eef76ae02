"""Devices that send small OTLP/HTTP requests at a steady rate, as a quiet fleet does.

    fleet = SteadyDevices(port, devices=20, spans=20, interval=0.35)
    fleet.start()
    ...                          # outages, restarts: a device re-sends until acknowledged
    fleet.stop()
    fleet.acked_spans, fleet.acked_requests

Each device is a thread with its own keep-alive connection; a request that
fails (the gateway restarting, refusing) is re-sent unchanged, as an SDK
does, so the acknowledged spans are the ones the central instance must hold.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable


class SteadyDevices:
    def __init__(self, port: int, *, devices: int, spans: int, interval: float,
                 shape: Callable[..., bytes]) -> None:
        if devices < 1 or spans < 1 or interval <= 0:
            raise ValueError("devices and spans must be at least 1 and interval positive")
        self.port = port
        self.devices = devices
        self.spans = spans
        self.interval = interval
        self.shape = shape
        self.acked_requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._device, args=(d,), daemon=True) for d in range(devices)]

    @property
    def acked_spans(self) -> int:
        return self.acked_requests * self.spans

    @property
    def nominal_spans_per_second(self) -> float:
        return self.devices * self.spans / self.interval

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _device(self, device: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        next_send = time.monotonic() + self.interval * device / self.devices  # spread the devices out
        sequence = 0
        while not self._stop.is_set():
            self._stop.wait(max(0.0, next_send - time.monotonic()))
            next_send += self.interval
            body = self.shape(self.spans, seed=sequence, device=device)  # unique per (seed, device)
            sequence += 1
            while not self._post(conn, body):
                if self._stop.wait(0.2):
                    return  # stopping: this request was never acknowledged, so it is not counted
            with self._lock:
                self.acked_requests += 1

    def _post(self, conn: http.client.HTTPConnection, body: bytes) -> bool:
        try:
            conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            conn.close()
            return False
