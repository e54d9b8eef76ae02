"""The path every OTLP request takes, whichever receiver it came in on.

digest → duplicate check → decoded size (per-request cap) → memory admission →
decode and validate → Arrow → group commit → answer. Receivers only translate
the outcome (or the exception) into their protocol's answer::

    ingestor = Ingestor(config, metrics, exporter)
    outcome = await ingestor.ingest("traces", payload, receiver="http", received_at_ns=time.time_ns())
    outcome.rejected, outcome.error_message     # for partial_success

Raises :class:`BadRequest` (answer 400 / INVALID_ARGUMENT) for a body that is
not OTLP, :class:`DecodedTooLarge` (413 / INVALID_ARGUMENT, not retried) for a
request whose decoded rows would pass the budget's per-request cap (sized
from its wire format before anything is decoded, see
:mod:`collector.decoding.decoded_size`), :class:`Refused` (503 / UNAVAILABLE with
retry advice) when the memory budget is full or the commit failed. Bad input costs only its own
request: nothing else is dropped and the process keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from collector.processing.admission import DigestWindow, MemoryBudget
from collector.processing.batcher import Batcher, WriteFailed
from collector.config import CollectorConfig
from collector.decoding.decoded_size import decoded_size
from collector.processing.exporters import BatchedRequest, Exporter
from collector.decoding.log_decode import decode_logs
from collector.decoding.metric_decode import decode_metrics
from collector.receivers.otlp_json import json_to_protobuf
from collector.selfmetrics import CollectorMetrics
from collector.decoding.trace_decode import decode_traces

log = logging.getLogger("fleetwatch.pipeline")

SIGNALS = ("traces", "metrics", "logs")

# Smaller requests are decoded on the event loop: handing them to a thread
# costs more than decoding them (measured: the hand-off was most of the cost
# of a two-span request). Larger ones go to the pool so the loop stays
# responsive while they decode.
_INLINE_DECODE_BYTES = 64 * 1024


class BadRequest(ValueError):
    """The request body is not a valid OTLP request; the client must not retry it."""


class DecodedTooLarge(BadRequest):
    """The request's decoded rows would take more than one request may hold; never retried."""


class Refused(RuntimeError):
    """Temporarily refused; the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class IngestOutcome:
    accepted: int
    rejected: int
    error_message: str = ""
    duplicate: bool = False


@dataclass
class _Decoded:
    tables: dict[str, tuple[dict[str, Any], int]]  # storage table -> (decoded columns, rows)
    payload: bytes  # the request as protobuf (JSON requests converted), for forwarding
    count: int
    rejected: int
    reasons: dict[str, int]
    first_error: str | None


def decode_request(signal: str, payload: bytes, is_json: bool = False) -> _Decoded:
    """Decode one protobuf (or OTLP/JSON) request into columns; ValueError for a malformed body."""
    if is_json:
        payload = json_to_protobuf(payload, signal)
    if signal == "traces":
        decoded: dict[str, Any] = decode_traces(payload)
        tables = {"span_rows": (decoded, decoded["count"])} if decoded["count"] else {}
    elif signal == "logs":
        decoded = decode_logs(payload)
        tables = {"log_rows": (decoded["log_rows"], decoded["count"])} if decoded["count"] else {}
    else:
        decoded = decode_metrics(payload)
        tables = {
            name: (decoded[name], len(decoded[name]["time"]))
            for name in ("metric_points", "histogram_points")
            if decoded[name]["time"]
        }
    return _Decoded(
        tables, payload, decoded["count"], decoded["rejected"], decoded["reject_reasons"], decoded["first_error"]
    )


def request_digest(signal: str, payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=16, person=signal.encode()).hexdigest()


class Ingestor:
    """Admits, decodes and batches requests; see the module docstring."""

    def __init__(self, config: CollectorConfig, metrics: CollectorMetrics, exporter: Exporter) -> None:
        self.config = config
        self.metrics = metrics
        self.gateway_id = config.service.gateway_id
        self.signals = config.signals()
        limiter = config.processors.memory_limiter
        self.retry_after = limiter.retry_after
        self.budget = MemoryBudget(int(limiter.limit_mib * (1 << 20)))
        duck = config.exporters.duckdb
        self.digests = DigestWindow(duck.dedup_window, duck.dedup_max_entries)
        self.digests.load(exporter.recent_digests(duck.dedup_window, duck.dedup_max_entries))
        self.batcher = Batcher(exporter, config.processors.batch, max_batch_bytes=self.budget.request_cap)
        # Decoding holds the GIL either way; a pool keeps the event loop
        # answering health checks and accepting connections meanwhile.
        self._decode_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")
        metrics.queue_limit_bytes.set(self.budget.limit)
        self.forward_limit = self._forward_limit(config)

    @staticmethod
    def _forward_limit(config: CollectorConfig) -> int | None:
        """The largest request the forwarding queue can hold, when this process forwards."""
        if "otlp" not in config.exporter_names() or config.exporters.otlp is None:
            return None
        from collector.forwarding.otlp_forwarder import largest_queueable_request

        return largest_queueable_request(config.exporters.otlp)

    async def ingest(
        self,
        signal: str,
        payload: bytes,
        *,
        receiver: str,
        received_at_ns: int,
        json: bool = False,
        gateway_id: str | None = None,
    ) -> IngestOutcome:
        """Admit, decode and commit one request. ``gateway_id`` overrides this
        process's id for requests a trusted gateway forwarded."""
        if signal not in SIGNALS:
            raise BadRequest(f"unknown signal {signal!r}")
        if signal not in self.signals:  # the config's pipelines say which signals this process takes
            self.metrics.requests.inc(receiver=receiver, signal=signal, outcome="no_pipeline")
            raise BadRequest(f"this collector has no {signal} pipeline (service.pipelines); it does not take {signal}")
        digest = request_digest(signal, payload)
        state = self.digests.lookup(digest)
        if state != "new":
            return await self._duplicate(signal, receiver, state)
        if json:  # converted up front: the decoded size is read from the protobuf
            payload_pb = await self._off_loop(len(payload), self._to_protobuf, signal, payload, receiver)
        else:
            payload_pb = payload
        # The budget counts what the decoded rows will take (resource and
        # scope values repeat in every row), sized before any column exists.
        reserved = max(len(payload), self._decoded_size(signal, payload_pb, receiver))
        if not self.budget.try_acquire(reserved):
            self.metrics.requests.inc(receiver=receiver, signal=signal, outcome="refused_memory")
            raise Refused(
                f"memory budget of {self.budget.limit} bytes for queued data is full; retry later", self.retry_after
            )
        try:
            try:
                decoded = await self._off_loop(len(payload_pb), decode_request, signal, payload_pb)
            except ValueError as exc:
                self.metrics.requests.inc(receiver=receiver, signal=signal, outcome="bad_request")
                raise BadRequest(str(exc)) from None
            self._count_decoded(signal, decoded)
            self._check_forwardable(signal, decoded, receiver)
            outcome = IngestOutcome(decoded.count, decoded.rejected, self._reject_message(decoded))
            if not decoded.count:
                self.metrics.requests.inc(receiver=receiver, signal=signal, outcome=self._outcome_name(outcome))
                return outcome
            request = BatchedRequest(digest, signal, decoded.count, received_at_ns, gateway_id or self.gateway_id,
                                     decoded.payload)
            await self._commit(request, decoded, receiver, reserved)
            self.metrics.requests.inc(receiver=receiver, signal=signal, outcome=self._outcome_name(outcome))
            return outcome
        finally:
            self.budget.release(reserved)
            self._update_gauges()

    async def _off_loop(self, size: int, fn, *args):
        """``fn(*args)`` inline for a small request, in the decode pool for a large one."""
        if size <= _INLINE_DECODE_BYTES:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._decode_pool, fn, *args)

    def _to_protobuf(self, signal: str, payload: bytes, receiver: str) -> bytes:
        try:
            return json_to_protobuf(payload, signal)
        except ValueError as exc:
            self.metrics.requests.inc(receiver=receiver, signal=signal, outcome="bad_request")
            raise BadRequest(str(exc)) from None

    def _decoded_size(self, signal: str, payload: bytes, receiver: str) -> int:
        """Bytes the request's rows take once decoded; DecodedTooLarge over the per-request cap."""
        try:
            size = decoded_size(signal, payload)
        except ValueError as exc:
            self.metrics.requests.inc(receiver=receiver, signal=signal, outcome="bad_request")
            raise BadRequest(str(exc)) from None
        cap = self.budget.request_cap
        if size > cap:
            self.metrics.requests.inc(receiver=receiver, signal=signal, outcome="too_large")
            raise DecodedTooLarge(
                f"OTLP {signal} request too large once decoded: its rows would take about {size} bytes "
                f"(resource and scope attributes are repeated in every row), over the limit of {cap} bytes "
                f"per request ({MemoryBudget.REQUEST_SHARE:.0%} of processors.memory_limiter.limit_mib, at "
                f"least {MemoryBudget.MIN_REQUEST_CAP} bytes); send fewer items or smaller attributes per request"
            )
        return size

    def _check_forwardable(self, signal: str, decoded: _Decoded, receiver: str) -> None:
        """Refuse for good a request larger than the forwarding queue's whole disk budget.

        It could never be queued; answering "retry later" would make clients
        re-send it forever, and failing its batch would fail the requests
        batched with it.
        """
        if self.forward_limit is None or len(decoded.payload) <= self.forward_limit:
            return
        self.metrics.items_refused.inc(decoded.count, signal=signal, reason="too_large_for_queue")
        self.metrics.requests.inc(receiver=receiver, signal=signal, outcome="too_large_for_queue")
        assert self.config.exporters.otlp is not None  # forward_limit is set only with it
        raise BadRequest(
            f"request of {len(decoded.payload)} bytes (protobuf) is larger than the gateway's forwarding queue "
            f"can ever hold: at most {self.forward_limit} bytes per request with exporters.otlp.queue."
            f"max_size_mib={self.config.exporters.otlp.queue.max_size_mib:g}; send it in smaller requests"
        )

    async def _commit(self, request: BatchedRequest, decoded: _Decoded, receiver: str, decoded_bytes: int) -> None:
        signal, digest = request.signal, request.digest
        future = self.batcher.add(decoded.tables, request, decoded_bytes)
        self.digests.reserve(digest, future)
        self._update_gauges()
        try:
            await asyncio.shield(future)
        except WriteFailed as exc:
            self.digests.forget(digest)
            self.metrics.items_refused.inc(decoded.count, signal=signal, reason="write_failed")
            self.metrics.requests.inc(receiver=receiver, signal=signal, outcome="write_failed")
            raise Refused(str(exc), self.retry_after) from None
        self.digests.commit(digest)
        self.metrics.items_accepted.inc(decoded.count, signal=signal)

    async def _duplicate(self, signal: str, receiver: str, state: str | asyncio.Future) -> IngestOutcome:
        if isinstance(state, asyncio.Future):
            try:
                await asyncio.shield(state)
            except WriteFailed as exc:
                raise Refused(str(exc), self.retry_after) from None
        self.metrics.requests.inc(receiver=receiver, signal=signal, outcome="duplicate")
        return IngestOutcome(0, 0, duplicate=True)

    def _count_decoded(self, signal: str, decoded: _Decoded) -> None:
        self.metrics.items_received.inc(decoded.count + decoded.rejected, signal=signal)
        for reason, count in decoded.reasons.items():
            self.metrics.items_rejected.inc(count, signal=signal, reason=reason)

    @staticmethod
    def _reject_message(decoded: _Decoded) -> str:
        if not decoded.rejected:
            return ""
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(decoded.reasons.items()))
        return f"rejected {decoded.rejected} ({reasons}); first: {decoded.first_error}"

    @staticmethod
    def _outcome_name(outcome: IngestOutcome) -> str:
        if outcome.rejected and outcome.accepted:
            return "partial"
        if outcome.rejected:
            return "rejected"
        return "accepted"

    def _update_gauges(self) -> None:
        self.metrics.queue_bytes.set(self.budget.used)
        self.metrics.queue_requests.set(self.batcher.waiting_requests)

    async def drain(self) -> None:
        """Commit everything accepted so far (shutdown)."""
        await self.batcher.flush_and_wait()
        self._decode_pool.shutdown(wait=True)
