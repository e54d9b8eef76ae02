"""OTLP/gRPC receiver (default 127.0.0.1:4317): the trace, metrics and logs Export services.

Requests are taken as raw bytes (no generated-stub decode) and go through the
same :class:`collector.processing.pipeline.Ingestor` as HTTP. Answers follow the OTLP
specification:

=================================  =============================================
situation                          status
=================================  =============================================
stored (maybe partially)           OK, Export*ServiceResponse with partial_success
missing or wrong bearer token      UNAUTHENTICATED
message not decodable              INVALID_ARGUMENT
message over the cap (inflated)    RESOURCE_EXHAUSTED (enforced by gRPC itself)
memory budget full, commit failed  UNAVAILABLE with RetryInfo (retryable)
=================================  =============================================

gzip-compressed requests are inflated by gRPC; the cap
(``max_recv_msg_size_mib``) applies to the inflated message.
"""

from __future__ import annotations

import logging
import time

import grpc

from collector.receivers.auth import BearerAuth
from collector.config import GrpcReceiverConfig, TlsConfig, parse_endpoint
from collector.processing.pipeline import BadRequest, Ingestor, Refused
from collector.receivers.responses import retry_info, status_message, success_body, StatusCode
from collector.selfmetrics import CollectorMetrics

log = logging.getLogger("fleetwatch.receiver.grpc")

_SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


def _identity(data: bytes) -> bytes:
    return data


class GrpcReceiver:
    """grpc.aio server for OTLP/gRPC; see the module docstring for its answers."""

    def __init__(
        self,
        config: GrpcReceiverConfig,
        ingestor: Ingestor,
        metrics: CollectorMetrics,
        auth: BearerAuth,
        tls: TlsConfig,
    ) -> None:
        self.config = config
        self.ingestor = ingestor
        self.metrics = metrics
        self.auth = auth
        self.tls = tls
        self.max_bytes = int(config.max_recv_msg_size_mib * (1 << 20))
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        host, port = parse_endpoint(self.config.endpoint, "receivers.otlp.protocols.grpc.endpoint")
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_bytes),
                ("grpc.max_send_message_length", 4 << 20),
                ("grpc.so_reuseport", 0),
            ]
        )
        for signal, service in _SERVICES.items():
            handler = grpc.unary_unary_rpc_method_handler(
                self._handler(signal), request_deserializer=_identity, response_serializer=_identity
            )
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": handler}),))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if self.tls.enabled:
                with open(self.tls.key_file, "rb") as key, open(self.tls.cert_file, "rb") as cert:  # type: ignore[arg-type]
                    credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
                self.port = server.add_secure_port(address, credentials)
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError:  # gRPC says only "Failed to bind"; the usual cause is named
            self.port = 0
        if not self.port:
            raise OSError(f"cannot listen on {address} for OTLP/gRPC: address already in use "
                          "or not available")
        await server.start()
        self._server = server
        log.info("otlp/grpc receiver listening", extra={"host": host, "port": self.port, "tls": self.tls.enabled})

    async def stop(self, grace: float) -> None:
        """Stop accepting; in-flight calls get ``grace`` seconds to finish."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    def _handler(self, signal: str):
        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            received_at_ns = time.time_ns()
            metadata = dict(context.invocation_metadata() or ())
            if not self.auth.check(metadata.get("authorization")):
                self.metrics.requests.inc(receiver="grpc", signal=signal, outcome="unauthenticated")
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
            self.metrics.bytes_received.inc(len(request), receiver="grpc", stage="decompressed")
            try:
                outcome = await self.ingestor.ingest(signal, request, receiver="grpc", received_at_ns=received_at_ns)
            except BadRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except Refused as exc:
                status = status_message(StatusCode.UNAVAILABLE, str(exc), exc.retry_after)
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    str(exc),
                    trailing_metadata=(
                        ("google.rpc.retryinfo-bin", retry_info(exc.retry_after).SerializeToString()),
                        ("grpc-status-details-bin", status.SerializeToString()),
                    ),
                )
            return success_body(signal, outcome.rejected, outcome.error_message, json=False)

        return export
