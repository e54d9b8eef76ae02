"""Bulk output: a whole simulated run written fast as a request log.

The same requests the live mode sends (same spans, same metric points) are
serialized with the SDK's own OTLP encoders (``encode_spans`` /
``encode_metrics``) and written with :class:`collector.request_log.
RequestLogWriter` in the order a gateway would have received them, so a
backfill goes through the collector's own decode / validate / batch /
write path (``collector.store.bulk.ingest_request_log``)::

    from sample_data.bulk import write_request_log, ingest_into_duckdb
    manifest = write_request_log(SimConfig(seed=7), "fleet.otlp.zst")
    counts = ingest_into_duckdb(SimConfig(seed=7), "fleet.duckdb")

``received_at`` is the request's delivery time (the export tick, or the
end of an outage for a site that was offline) plus a simulated network
latency drawn from a per-emitter seeded stream: tens of milliseconds for
the cloud services, ~120 ms for wired devices, ~350 ms for phones.
Requests are produced tick by tick and held in a heap until no later
request can arrive before them, so memory stays bounded by the largest
backlog, not by the run.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import tempfile
from collections.abc import Callable

import numpy as np
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from collector.request_log import RequestLogWriter

from .streams import NETWORK, stream
from .generator import FleetSimulation, Request, SimConfig
from .otel import readable_spans
from .progress import progress_reporter

DEFAULT_LEVEL = 10


def encode_request(req: Request) -> bytes:
    """Serialize a request exactly as the OTLP exporters would."""
    if req.signal == "traces":
        return encode_spans(readable_spans(req.spans, req.emitter.resource(req.epoch))).SerializeToString()
    return encode_metrics(req.metrics).SerializeToString()


class _Network:
    """Seeded per-emitter latency between a request leaving and the gateway receiving it."""

    def __init__(self, sim: FleetSimulation) -> None:
        self.seed = sim.cfg.seed
        self.n_devices = len(sim.devices)
        self._rngs: dict[int, np.random.Generator] = {}

    def latency_ns(self, req: Request) -> int:
        key = req.emitter.key
        rng = self._rngs.get(key)
        if rng is None:
            rng = self._rngs[key] = stream(self.seed, NETWORK, key)
        if key >= self.n_devices:
            median, sigma = 0.03, 0.3
        elif req.emitter.phone:
            median, sigma = 0.35, 0.7
        else:
            median, sigma = 0.12, 0.5
        return max(1_000_000, int(rng.lognormal(np.log(median), sigma) * 1e9))


def received_requests(sim: FleetSimulation, progress: Callable[[int], None] | None = None):
    """Yield ``(received_at_ns, signal, payload)`` in received order."""
    net = _Network(sim)
    heap: list[tuple[int, int, str, bytes]] = []
    for req in sim.requests(progress):
        recv = req.deliver_ns + net.latency_ns(req)
        heapq.heappush(heap, (recv, req.seq, req.signal, encode_request(req)))
        # every later request is created at or after this one and received after it was created
        while heap and heap[0][0] <= req.created_ns:
            r, _, signal, payload = heapq.heappop(heap)
            yield r, signal, payload
    while heap:
        r, _, signal, payload = heapq.heappop(heap)
        yield r, signal, payload


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_request_log(cfg: SimConfig, path: str, *, level: int = DEFAULT_LEVEL,
                      progress: bool | None = False) -> dict:
    """Simulate ``cfg`` into the request log ``path``; return the manifest.

    ``progress``: False (default) nothing; None a bar on a terminal and periodic
    lines on stderr otherwise; True a bar (:mod:`sample_data.progress`).
    """
    sim = FleetSimulation(cfg)
    bar = progress_reporter(sim.n_ticks, "simulate", progress)
    counts = {"traces": 0, "metrics": 0}
    raw_bytes = 0
    try:
        with RequestLogWriter(path, level=level) as log:
            for received_at, signal, payload in received_requests(sim, bar.update if bar else None):
                log.append(signal, received_at, payload)
                counts[signal] += 1
                raw_bytes += len(payload)
    finally:
        if bar is not None:
            bar.close()
    manifest = sim.manifest()
    manifest["data"] = {
        "file": os.path.basename(path),
        "format": "fleetwatch request log v1 (collector/request_log.py), zstd level %d" % level,
        "bytes": os.path.getsize(path),
        "sha256": _sha256(path),
        "records": counts,
        "uncompressed_payload_bytes": raw_bytes,
    }
    return manifest


def ingest_into_duckdb(cfg: SimConfig, db_path: str, *, level: int = 3,
                       progress: bool | None = False, keep_log: str | None = None) -> dict:
    """Simulate ``cfg`` and load it into ``db_path`` through the collector.

    Writes a temporary request log (or ``keep_log``) and hands it to
    ``collector.store.bulk.ingest_request_log``, the collector's own ingest path.
    Returns ``{"manifest": ..., "ingest": <collector counts>}``. A ``db_path`` in
    a directory that does not exist is a ValueError naming that path.
    """
    try:
        from collector.store.bulk import ingest_request_log
    except ImportError as exc:  # pragma: no cover - depends on the collector's progress
        raise RuntimeError("collector.store.bulk.ingest_request_log is not available in this installation") from exc
    if keep_log:
        manifest = write_request_log(cfg, keep_log, level=level, progress=progress)
        return {"manifest": manifest, "ingest": ingest_request_log(db_path, keep_log)}
    directory = os.path.dirname(os.path.abspath(db_path))
    if not os.path.isdir(directory):
        # checked here: otherwise the temporary directory below is the path the error names
        raise ValueError(f"cannot create {db_path}: directory {directory} does not exist")
    with tempfile.TemporaryDirectory(dir=directory, prefix=".fleetwatch-sim-") as tmp:
        log_path = os.path.join(tmp, "run.otlp.zst")
        manifest = write_request_log(cfg, log_path, level=level, progress=progress)
        return {"manifest": manifest, "ingest": ingest_request_log(db_path, log_path)}
