"""OTLP/HTTP receiver (default 127.0.0.1:4318) plus /healthz and /metrics.

``POST /v1/traces``, ``POST /v1/metrics`` and ``POST /v1/logs`` take ``application/x-protobuf``
or ``application/json`` bodies, optionally gzip, deflate or zstd encoded, and
answer in the request's content type:

====================================  ==========================================
situation                             answer
====================================  ==========================================
all items stored                      200, empty Export*ServiceResponse
some items invalid                    200 with partial_success (count, message)
missing or wrong bearer token         401
body not decodable                    400 with google.rpc.Status
body over the cap (wire or inflated)  413
decoded rows over the per-request cap 413
other content type or encoding        415
memory budget full, commit failed     503 with Retry-After
====================================  ==========================================

``GET /healthz`` answers 200 when live and ready (503 while starting or
stopping); ``GET /metrics`` is the Prometheus text exposition.
"""

from __future__ import annotations

import json
import logging
import math
import time

from aiohttp import web

from collector.receivers.auth import BearerAuth
from collector.config import HttpReceiverConfig, parse_endpoint
from collector.receivers.decompress import BadEncoding, BodyTooLarge, UnsupportedEncoding, decompress
from collector.processing.pipeline import BadRequest, DecodedTooLarge, Ingestor, Refused
from collector.receivers.responses import StatusCode, status_body, success_body
from collector.selfmetrics import CollectorMetrics

log = logging.getLogger("fleetwatch.receiver.http")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _gateway_receipt(headers, received_at_ns: int) -> tuple[int, str | None]:
    """The receive time and id a forwarding gateway stamped, when present and well-formed."""
    stamped = headers.get("X-Fleetwatch-Received-At", "")
    gateway = headers.get("X-Fleetwatch-Gateway-Id") or None
    if stamped.isdigit() and 0 < int(stamped) < 2**63:
        received_at_ns = int(stamped)
    if gateway is not None and (len(gateway) > 256 or not gateway.isprintable()):
        gateway = None
    return received_at_ns, gateway


class HttpReceiver:
    """aiohttp server for OTLP/HTTP; see the module docstring for its answers."""

    def __init__(
        self,
        config: HttpReceiverConfig,
        ingestor: Ingestor,
        metrics: CollectorMetrics,
        auth: BearerAuth,
        ssl_context=None,
        health=None,
        shutdown_timeout: float = 30.0,
        trust_gateway_headers: bool = True,
    ) -> None:
        self.config = config
        self.ingestor = ingestor
        self.metrics = metrics
        self.auth = auth
        self.ssl_context = ssl_context
        self.health = health or (lambda: (True, {}))
        self.shutdown_timeout = shutdown_timeout
        self.trust_gateway_headers = trust_gateway_headers
        self.max_bytes = int(config.max_request_body_size_mib * (1 << 20))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_bytes)
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        app.router.add_post("/v1/logs", self._logs)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._prometheus)
        return app

    async def start(self) -> None:
        host, port = parse_endpoint(self.config.endpoint, "receivers.otlp.protocols.http.endpoint")
        # auto_decompress=False: we inflate ourselves, with a cap on the inflated size.
        self._runner = web.AppRunner(
            self._app(), auto_decompress=False, access_log=None, handle_signals=False,
            shutdown_timeout=self.shutdown_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self.ssl_context, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # port 0 → real port
        log.info("otlp/http receiver listening", extra={"host": host, "port": self.port, "tls": bool(self.ssl_context)})

    async def stop(self) -> None:
        """Stop accepting; in-flight requests get up to ``shutdown_timeout`` to finish."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers --------------------------------------------------------
    async def _traces(self, request: web.Request) -> web.Response:
        return await self._export(request, "traces")

    async def _metrics(self, request: web.Request) -> web.Response:
        return await self._export(request, "metrics")

    async def _logs(self, request: web.Request) -> web.Response:
        return await self._export(request, "logs")

    async def _export(self, request: web.Request, signal: str) -> web.Response:
        received_at_ns = time.time_ns()
        content_type = request.content_type.lower()
        as_json = content_type == JSON
        if not self.auth.check(request.headers.get("Authorization")):
            self.metrics.requests.inc(receiver="http", signal=signal, outcome="unauthenticated")
            return self._error(401, StatusCode.UNAUTHENTICATED, "missing or invalid bearer token", as_json,
                               headers={"WWW-Authenticate": 'Bearer realm="fleetwatch"'})
        if content_type not in (PROTOBUF, JSON):
            self.metrics.requests.inc(receiver="http", signal=signal, outcome="unsupported_media_type")
            return self._error(415, StatusCode.INVALID_ARGUMENT,
                               f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}", False)
        if request.content_length is not None and request.content_length > self.max_bytes:
            return self._too_large(signal, as_json, BodyTooLarge(self.max_bytes, "on the wire"))
        try:
            wire = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(signal, as_json, BodyTooLarge(self.max_bytes, "on the wire"))
        try:
            body = decompress(wire, request.headers.get("Content-Encoding"), self.max_bytes)
        except BodyTooLarge as exc:
            return self._too_large(signal, as_json, exc)
        except UnsupportedEncoding as exc:
            self.metrics.requests.inc(receiver="http", signal=signal, outcome="unsupported_encoding")
            return self._error(415, StatusCode.INVALID_ARGUMENT, str(exc), as_json)
        except BadEncoding as exc:
            self.metrics.requests.inc(receiver="http", signal=signal, outcome="bad_request")
            return self._error(400, StatusCode.INVALID_ARGUMENT, str(exc), as_json)
        self.metrics.bytes_received.inc(len(wire), receiver="http", stage="wire")
        self.metrics.bytes_received.inc(len(body), receiver="http", stage="decompressed")
        gateway_id = None
        if self.trust_gateway_headers:
            received_at_ns, gateway_id = _gateway_receipt(request.headers, received_at_ns)
        try:
            outcome = await self.ingestor.ingest(
                signal, body, receiver="http", received_at_ns=received_at_ns, json=as_json, gateway_id=gateway_id
            )
        except DecodedTooLarge as exc:  # counted by the ingestor; 413 is not retried by OTLP clients
            return self._error(413, StatusCode.INVALID_ARGUMENT, str(exc), as_json)
        except BadRequest as exc:
            return self._error(400, StatusCode.INVALID_ARGUMENT, str(exc), as_json)
        except Refused as exc:
            return self._error(503, StatusCode.UNAVAILABLE, str(exc), as_json,
                               headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
                               retry_after=exc.retry_after)
        return web.Response(
            body=success_body(signal, outcome.rejected, outcome.error_message, json=as_json),
            content_type=JSON if as_json else PROTOBUF,
        )

    def _too_large(self, signal: str, as_json: bool, exc: BodyTooLarge) -> web.Response:
        self.metrics.requests.inc(receiver="http", signal=signal, outcome="too_large")
        return self._error(413, StatusCode.RESOURCE_EXHAUSTED, str(exc), as_json)

    @staticmethod
    def _error(status: int, code: StatusCode, message: str, as_json: bool, headers=None,
               retry_after: float | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=status_body(code, message, json=as_json, retry_after=retry_after),
            content_type=JSON if as_json else PROTOBUF,
            headers=headers,
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        ready, details = self.health()
        body = {"status": "ok" if ready else "unavailable", "live": True, "ready": ready, **details}
        return web.Response(status=200 if ready else 503, text=json.dumps(body), content_type=JSON)

    async def _prometheus(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.registry.render(), content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"}, charset="utf-8")
