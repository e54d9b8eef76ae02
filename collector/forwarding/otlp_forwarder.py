"""The forwarding exporter: store on the gateway's disk, then forward upstream over OTLP/HTTP.

A gateway acknowledges a device once its request is in the persistent queue
(fsync'ed); a sender thread drains the queue in order to the upstream
endpoint — a central fleetwatch or any OTLP/HTTP receiver::

    exporter = ForwardingExporter(config.exporters.otlp, metrics, gateway_id="gw-7")
    exporter.start()            # opens (and repairs) the queue, starts the sender
    exporter.submit(batch)      # merges the batch's requests into upstream requests, appends, fsyncs
    exporter.close()            # stops; whatever was not delivered stays on disk

Each gateway batch is queued as one item: device requests of one signal
concatenated (protobuf messages of one type merge by concatenation) up to
``max_request_size_mib`` and compressed. The sender merges the oldest queued
items into one upstream request up to the same size (``upstream_merge``),
recording each merge before sending it. A re-sent upstream request is
therefore byte-identical, and the central instance recognises it by its
digest: exactly once in results even when a send's outcome was unknown. A
device request too large for the queue's disk budget is refused at the
receiver (``largest_queueable_request``), never queued. Each upstream
request carries the gateway's receive time and id in
``X-Fleetwatch-Received-At`` / ``X-Fleetwatch-Gateway-Id``.

Answers: 2xx (partial success included) → delivered; 429/502/503/504,
401/403, timeouts and connection errors → retried with exponential backoff
and jitter, honouring Retry-After, without a time limit by default; any
other status (400 above all) → the request goes to the dead-letter file with
the reason, and the queue moves on.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import queue
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass

from collector.forwarding import queue_format as fmt
from collector.config import OtlpExporterConfig
from collector.processing.exporters import BatchedRequest, WriteBatch
from collector.forwarding.persistent_queue import PersistentQueue
from collector.forwarding.retry import Backoff, parse_retry_after, retryable_status
from collector.selfmetrics import CollectorMetrics
from collector.forwarding.sent_digests import SentDigestJournal
from collector.forwarding.upstream_merge import RequestMerger, UpstreamRequest, compress

log = logging.getLogger("fleetwatch.exporter.otlp")

_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}
_DROP_LOG_INTERVAL = 60.0
# Room for a queue item's JSON meta next to its payload: the fixed fields, and
# each device request's digest (counted with its request in _groups).
_META_ALLOWANCE = 4096
_DIGEST_META_BYTES = 64


def largest_queueable_request(config: OtlpExporterConfig) -> int:
    """Protobuf bytes of the largest device request the forwarding queue's disk budget can ever hold.

    Allows for the meta and for compression's worst case on incompressible
    data (zstd and gzip grow it by well under 1/256).
    """
    item = PersistentQueue.largest_item(int(config.queue.max_size_mib * (1 << 20))) - _META_ALLOWANCE
    return max(0, item - item // 256 - 64)


@dataclass
class SendResult:
    delivered: bool
    permanent: bool = False
    status: int | None = None
    reason: str = ""
    retry_after: float | None = None
    # False only when the request certainly never reached the upstream (no
    # connection): it may then be re-planned with more of the backlog.
    maybe_sent: bool = True


class _Upstream:
    """One keep-alive HTTP(S) connection to the upstream receiver."""

    def __init__(self, config: OtlpExporterConfig) -> None:
        url = urllib.parse.urlsplit(config.endpoint)
        self.https = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.https else 80)
        self.base_path = url.path.rstrip("/")
        self.timeout = config.timeout
        self.ssl_context = ssl.create_default_context(cafile=config.ca_file) if self.https else None
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> SendResult:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                         context=self.ssl_context)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._conn.request("POST", self.base_path + path, body=body, headers=headers)
            response = self._conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            unreached = isinstance(exc, (ConnectionRefusedError, socket.gaierror))
            return SendResult(False, reason=f"{type(exc).__name__}: {exc}", maybe_sent=not unreached)
        if 200 <= response.status < 300:
            return SendResult(True, status=response.status)
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return SendResult(
            False,
            permanent=not retryable_status(response.status),
            status=response.status,
            reason=f"HTTP {response.status} {response.reason}",
            retry_after=parse_retry_after(response.getheader("Retry-After")),
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ForwardingExporter:
    """Persistent queue plus sender thread; see the module docstring."""

    def __init__(self, config: OtlpExporterConfig, metrics: CollectorMetrics, gateway_id: str) -> None:
        self.config = config
        self.metrics = metrics
        self.gateway_id = gateway_id
        self.healthy = True
        self.max_request_bytes = min(int(config.max_request_size_mib * (1 << 20)), largest_queueable_request(config))
        self.queue = PersistentQueue(config.queue.directory, max_bytes=int(config.queue.max_size_mib * (1 << 20)),
                                     fsync=config.queue.fsync, on_drop=self._on_drop)
        self.journal = SentDigestJournal(config.queue.directory.rstrip("/") + ".sent-digests")
        self.merger = RequestMerger(self.queue, config.queue.directory.rstrip("/") + ".merge-plan",
                                    self.max_request_bytes, fsync=config.queue.fsync)
        self._upstream = _Upstream(config)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._batches: queue.Queue[WriteBatch | None] = queue.Queue()
        self._appender: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        self._drops = {"items": 0, "bytes": 0, "logged_at": 0.0}
        self._register_metrics()

    def _register_metrics(self) -> None:
        r = self.metrics.registry
        self.m_requests = r.counter("fleetwatch_forward_requests_total",
                                    "Upstream send attempts by outcome (delivered, retry, dead_letter).", ["outcome"])
        self.m_items = r.counter("fleetwatch_forward_items_delivered_total",
                                 "Device requests delivered upstream.", ["signal"])
        self.m_batches = r.counter("fleetwatch_forward_batches_delivered_total",
                                   "Queued gateway batches delivered upstream (several merge into one request).")
        self.m_bytes = r.counter("fleetwatch_forward_bytes_sent_total",
                                 "Compressed bytes of delivered upstream requests.")
        self.m_dropped = r.counter("fleetwatch_forward_queue_dropped_items_total",
                                   "Queued upstream requests dropped, oldest first, because the disk budget was full.")
        r.gauge_callback("fleetwatch_forward_queue_items", "Upstream requests waiting in the persistent queue.",
                         lambda: len(self.queue))
        r.gauge_callback("fleetwatch_forward_queue_bytes", "Bytes of the persistent queue's segment files.",
                         lambda: self.queue.stats().bytes)
        r.gauge_callback("fleetwatch_forward_queue_quarantined_segments",
                         "Damaged queue segments moved to quarantine (their intact records were kept).",
                         lambda: self.queue.stats().quarantined_segments)
        self.m_up = r.gauge("fleetwatch_forward_upstream_up", "1 when the last upstream send succeeded.")

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        report = self.queue.open()
        self.journal.open()
        self.merger.open()
        log.info("forwarding queue opened", extra={"directory": self.config.queue.directory,
                                                   "endpoint": self.config.endpoint, "report": str(report)})
        self._appender = threading.Thread(target=self._append_loop, name="otlp-queue-writer", daemon=True)
        self._appender.start()
        self._sender = threading.Thread(target=self._send_loop, name="otlp-forwarder", daemon=True)
        self._sender.start()

    def recent_digests(self, window_seconds: float, limit: int) -> list[tuple[str, int]]:
        """Device-request digests still queued or delivered within the window."""
        found: dict[str, int] = dict(self.journal.recent(window_seconds))
        for _, meta in self.queue.iter_meta():
            try:
                info = json.loads(meta)
            except ValueError:
                continue
            for digest in info.get("digests", []):
                found[digest] = info.get("queued_at", 0)
        return sorted(found.items(), key=lambda item: item[1])[-limit:] if limit else []

    def close(self, timeout: float = 30.0) -> None:
        """Queue what was submitted, stop sending; undelivered requests stay on disk."""
        if self._appender is not None:
            self._batches.put(None)
            self._appender.join(timeout)
        self._stop.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout)
        self._upstream.close()
        self.queue.close()
        self.journal.close()

    # -- the write side --------------------------------------------------
    def submit(self, batch: WriteBatch) -> None:
        """Hand a batch to the queue writer thread; it acknowledges once the batch is on disk."""
        self._batches.put(batch)

    def _append_loop(self) -> None:
        while True:
            batch = self._batches.get()
            if batch is None:
                return
            self._append(batch)

    def _append(self, batch: WriteBatch) -> None:
        try:
            items = [self._upstream_item(group) for group in self._groups(batch.requests)]
            for chunk in self._appendable_chunks(items):
                self.queue.append_many(chunk)
        except Exception as exc:  # disk full, I/O error: the devices get a retryable error
            self.healthy = False
            log.error("could not queue %d requests: %.300s", len(batch.requests), exc)
            batch.on_done(exc)
            return
        self.healthy = True
        self._wake.set()
        batch.on_done(None)

    def _groups(self, requests: list[BatchedRequest]) -> list[list[BatchedRequest]]:
        """Requests of one signal and gateway, in order, up to the upstream size cap."""
        groups: list[list[BatchedRequest]] = []
        open_groups: dict[tuple[str, str], tuple[list[BatchedRequest], list[int]]] = {}
        for request in requests:
            key = (request.signal, request.gateway_id)
            group, size = open_groups.get(key, (None, [0]))
            request_bytes = len(request.payload) + _DIGEST_META_BYTES
            if group is None or size[0] + request_bytes > self.max_request_bytes:
                group, size = [], [0]
                open_groups[key] = (group, size)
                groups.append(group)
            group.append(request)
            size[0] += request_bytes
        return groups

    def _appendable_chunks(self, items: list[tuple[bytes, bytes]]) -> list[list[tuple[bytes, bytes]]]:
        """Consecutive runs of items that each fit the disk budget (one write and fsync per run)."""
        chunks: list[list[tuple[bytes, bytes]]] = []
        room = 0
        for payload, meta in items:
            size = fmt.RECORD_OVERHEAD + len(payload) + len(meta)
            if not chunks or size > room:
                chunks.append([])
                room = self.queue.max_bytes - fmt.HEADER_SIZE
            chunks[-1].append((payload, meta))
            room -= size
        return chunks

    def _upstream_item(self, group: list[BatchedRequest]) -> tuple[bytes, bytes]:
        raw = b"".join(r.payload for r in group)
        meta = {
            "signal": group[0].signal,
            "gateway_id": group[0].gateway_id,
            "received_at": min(r.received_at_ns for r in group),
            "queued_at": time.time_ns(),
            "items": sum(r.items for r in group),
            "raw_bytes": len(raw),
            "encoding": self.config.compression,
            "digests": [r.digest for r in group],
        }
        return compress(raw, self.config.compression), json.dumps(meta, separators=(",", ":")).encode()

    def _on_drop(self, items: int, nbytes: int) -> None:
        self.m_dropped.inc(items)
        self._drops["items"] += items
        self._drops["bytes"] += nbytes
        now = time.monotonic()
        if now - self._drops["logged_at"] >= _DROP_LOG_INTERVAL:
            log.error("disk budget full: dropped the oldest queued upstream requests",
                      extra={"dropped_items": self._drops["items"], "dropped_bytes": self._drops["bytes"],
                             "max_size_mib": self.config.queue.max_size_mib})
            self._drops.update(items=0, bytes=0, logged_at=now)

    # -- the send side ---------------------------------------------------
    def _send_loop(self) -> None:
        backoff = Backoff(self.config.retry)
        last_failure_log = 0.0
        request: UpstreamRequest | None = None
        result = SendResult(False)
        while not self._stop.is_set():
            # A request that may have reached the upstream is re-sent as it is;
            # one that never did takes in what was queued meanwhile.
            if request is None or not result.maybe_sent or not self.merger.still_queued(request):
                request = self.merger.next()
            if request is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            meta = request.meta
            result = self._send(request)
            if result.delivered:
                self.journal.add(meta.get("digests", []))
                # Counted before the queue lets go, so that an empty queue means
                # the counters already say what was delivered.
                self.m_up.set(1)
                self.m_requests.inc(outcome="delivered")
                self.m_items.inc(len(meta.get("digests", [])), signal=meta.get("signal", "unknown"))
                self.m_batches.inc(request.batches)
                self.m_bytes.inc(len(request.body))
                self.queue.ack(request.last_seq)
                backoff.reset()
                request = None
                continue
            self.m_up.set(0)
            if result.permanent or backoff.expired():
                reason = result.reason if result.permanent else f"gave up after retrying: {result.reason}"
                self._dead_letter(request, reason, result.status)
                self.queue.ack(request.last_seq)
                request = None
                backoff.reset()
                self.m_requests.inc(outcome="dead_letter")
                continue
            self.m_requests.inc(outcome="retry")
            delay = backoff.next_delay(result.retry_after)
            now = time.monotonic()
            if now - last_failure_log >= _DROP_LOG_INTERVAL:
                log.warning("upstream unavailable; keeping the queue and retrying",
                            extra={"reason": result.reason, "retry_in_seconds": round(delay, 1),
                                   "queued_requests": len(self.queue)})
                last_failure_log = now
            self._stop.wait(delay)

    def _send(self, request: UpstreamRequest) -> SendResult:
        meta = request.meta
        signal = meta.get("signal", "traces")
        headers = {"Content-Type": "application/x-protobuf", **self.config.headers,
                   "X-Fleetwatch-Gateway-Id": str(meta.get("gateway_id", self.gateway_id))}
        if meta.get("received_at"):
            headers["X-Fleetwatch-Received-At"] = str(meta["received_at"])
        encoding = meta.get("encoding", self.config.compression)
        if encoding in ("zstd", "gzip"):
            headers["Content-Encoding"] = encoding
        return self._upstream.post(_PATHS.get(signal, "/v1/traces"), request.body, headers)

    def _dead_letter(self, request: UpstreamRequest, reason: str, status: int | None) -> None:
        meta = request.meta
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "reason": reason,
            "status": status,
            "seq": request.first_seq,
            "last_seq": request.last_seq,
            **{k: meta.get(k) for k in ("signal", "gateway_id", "received_at", "items", "encoding", "digests")},
            "payload_base64": base64.b64encode(request.body).decode("ascii"),
        }
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(self.config.dead_letter_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        log.error("upstream refused a request permanently; written to the dead-letter file",
                  extra={"reason": reason, "status": status, "file": self.config.dead_letter_file,
                         "items": meta.get("items")})
