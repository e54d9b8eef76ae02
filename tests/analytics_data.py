"""A small fleet with known shapes, loaded through the collector's bulk path, for analytics tests."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime

import aiohttp

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from analytics.api.catalog import CATALOG
from analytics.api.config import ApiConfig
from analytics.api.server import ReadApi
from analytics.api.sql_guard import SqlGuard
from analytics.latency_buckets import BOUNDS_MS, COLUMNS, N_BUCKETS
from analytics.rollups import GROUP_COLUMNS
from bench.otlp_shapes import kv
from collector.store.bulk import ingest_request_log
from collector.request_log import RequestLogWriter

T0 = datetime(2026, 11, 30, 10, 0)
T0_NS = int((T0 - datetime(1970, 1, 1)).total_seconds()) * 10**9
MINUTES = 90
READ, ADMIN = "api-read-1", "api-admin-1"  # the read API's bearer tokens in analytics_config()


def analytics_config(**api) -> dict:
    """Config of a `fleetwatch serve` with analytics jobs and a read API: READ may query, ADMIN may also run SQL."""
    return {"analytics": {"workers": 2},
            "api": {"read": {"bearer_tokens": [READ]}, "admin": {"bearer_tokens": [ADMIN]}, **api}}


def fleet_requests(rng: np.random.Generator, n_devices: int = 12, per_request: int = 60, minutes: int = MINUTES,
                   per_device: int = 400, start_ns: int = T0_NS):
    """Inference spans with known shapes: two models, three sites, lognormal latency, 7 % errors."""
    for device in range(n_devices):
        model, version = ("detector", f"v{1 + device % 2}") if device % 3 else ("classifier", "v7")
        site = f"site-{device % 3}"
        times = np.sort(rng.integers(0, minutes * 60 * 10**9, per_device)) + start_ns
        for first in range(0, len(times), per_request):
            request = ExportTraceServiceRequest()
            rs = request.resource_spans.add()
            rs.resource.attributes.extend([kv("service.name", "cam"), kv("device.id", f"dev-{device:02d}"),
                                           kv("fleet.site", site), kv("fleet.region", "eu"),
                                           kv("device.class", "jetson"), kv("device.firmware.version", "1.2")])
            scope = rs.scope_spans.add()
            for start in times[first:first + per_request]:
                span = scope.spans.add()
                span.trace_id, span.span_id = os.urandom(16), os.urandom(8)
                span.name = "inference"
                span.start_time_unix_nano = int(start)
                span.end_time_unix_nano = int(start) + int(rng.lognormal(np.log(8e6), 0.6))
                if rng.random() < 0.07:
                    span.status.code = 2
                attrs = [kv("ml.model.name", model), kv("ml.model.version", version),
                         kv("ml.inference.mode", "edge")]
                if rng.random() < 0.02:
                    attrs.append(kv("ml.inference.cold_start", True))
                span.attributes.extend(attrs)
            # A non-inference child span: rollups must ignore it.
            child = scope.spans.add()
            child.trace_id, child.span_id, child.name = os.urandom(16), os.urandom(8), "preprocess"
            child.start_time_unix_nano, child.end_time_unix_nano = int(times[first]), int(times[first]) + 10**6
            yield request.SerializeToString()


def load_fleet(db) -> None:
    """The small fleet of :func:`fleet_requests`, through the collector's bulk path into ``db``."""
    log_path = db.with_suffix(".otlp.zst")
    with RequestLogWriter(log_path) as log:
        for i, body in enumerate(fleet_requests(np.random.default_rng(7))):
            log.append("traces", T0_NS + (MINUTES + 1) * 60 * 10**9 + i, body)
    ingest_request_log(db, log_path)


def named(store, name: str, **raw) -> list[dict]:
    """A named query of the read API's catalog run on ``store``'s read cursors, as the server would."""
    bound = CATALOG[name].bind({k: str(v) for k, v in raw.items()})
    return bound.finish(store.reads.run(bound.sql, bound.params, max_rows=100_000, timeout=120).table).to_pylist()


def read(store, sql, params=None):
    return store.reads.run(sql, params, max_rows=10**7, timeout=60).table


def expected_rollup(store, window_seconds: int) -> dict:
    """The rollup computed independently: raw spans into numpy, grouped in Python, np.searchsorted buckets."""
    raw = read(store, "SELECT epoch_ns(start_time) AS t, duration_ns, status_code, cold_start, "
                      + ", ".join(GROUP_COLUMNS) + " FROM span_rows WHERE name = 'inference'")
    t = raw["t"].to_numpy()
    window = (t // (window_seconds * 10**9)) * window_seconds
    bucket = np.searchsorted(np.asarray(BOUNDS_MS), raw["duration_ns"].to_numpy() / 1e6, side="left")
    groups = list(zip(*(raw[c].to_pylist() for c in GROUP_COLUMNS)))
    out: dict = {}
    for i, key in enumerate(groups):
        row = out.setdefault((int(window[i]), *key), {"inferences": 0, "errors": 0, "cold_starts": 0,
                                                      "latency_sum_ns": 0, "hist": [0] * N_BUCKETS})
        row["inferences"] += 1
        row["errors"] += raw["status_code"][i].as_py() == 2
        row["cold_starts"] += bool(raw["cold_start"][i].as_py())
        row["latency_sum_ns"] += raw["duration_ns"][i].as_py()
        row["hist"][int(bucket[i])] += 1
    return out


def stored_rollup(store, table: str) -> dict:
    rows = read(store, f"SELECT epoch(window_start)::BIGINT AS w, * FROM {table}").to_pylist()
    return {(r["w"], *(r[c] for c in GROUP_COLUMNS)): {
        "inferences": r["inferences"], "errors": r["errors"], "cold_starts": r["cold_starts"],
        "latency_sum_ns": r["latency_sum_ns"], "hist": [r[c] for c in COLUMNS]} for r in rows}


def serve_and_get(store, paths: list[str]) -> list[dict]:
    async def run():
        config = ApiConfig(endpoint="127.0.0.1:0")
        config.validate()
        api = ReadApi(config, store.reads, CATALOG, SqlGuard({"spans"}))
        await api.start()
        try:
            async with aiohttp.ClientSession() as session:
                out = []
                for path in paths:
                    async with session.get(f"http://127.0.0.1:{api.port}{path}") as response:
                        assert response.status == 200, await response.text()
                        out.append(json.loads(await response.text()))
                return out
        finally:
            await api.stop()

    return asyncio.run(run())
