"""Merging queued gateway batches into large upstream requests, recorded so a re-send is byte-identical.

The forwarding queue holds one item per gateway batch. Under steady traffic
of small device requests those items are small (about a hundred spans), and
sending them one round trip each bounds the drain after an outage by the
round trip, not by bandwidth. The sender therefore merges the oldest queued
items into one upstream request::

    merger = RequestMerger(queue, "/var/lib/fleetwatch/queue.merge-plan", max_request_bytes=4 << 20)
    merger.open()                 # after queue.open(): picks up a merge that was in flight at a crash
    request = merger.next()       # None when the queue is empty
    send(request.body, request.meta)
    queue.ack(request.last_seq)   # the whole merged range is delivered

Exactly once holds because a merge is recorded before it is sent: the plan
file holds the sequence range of the merged request (replaced atomically,
fsync'ed). After a restart the first request is rebuilt from exactly that
range, and the merge itself is deterministic (items concatenated in order,
compressed without timestamps at a fixed level), so the re-sent request is
byte-identical and the central instance recognises its digest. A single
item is planned too: after a restart it must not be merged with newer items.
A request that failed is retried as it is (``still_queued`` says whether its
items are still at the head of the queue), never re-planned: a timed-out
send may have been committed upstream.
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass

import zstandard

from collector.forwarding import queue_format as fmt
from collector.forwarding.persistent_queue import PersistentQueue, QueueItem

log = logging.getLogger("fleetwatch.exporter.otlp")

# Enough items that a backlog of small gateway batches fills a request up to
# the byte cap; few enough that planning a merge stays cheap.
MAX_MERGED_ITEMS = 4096
_ZSTD_LEVEL = 3
_GZIP_LEVEL = 6


def compress(raw: bytes, encoding: str) -> bytes:
    """Compress deterministically: the same bytes in always give the same bytes out."""
    if encoding == "zstd":
        return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(raw)
    if encoding == "gzip":
        return gzip.compress(raw, compresslevel=_GZIP_LEVEL, mtime=0)
    return raw


def decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompress(body)
    if encoding == "gzip":
        return gzip.decompress(body)
    return body


def item_meta(item: QueueItem) -> dict:
    """The JSON meta the forwarder stored with a queue item (a damaged one reads as an empty traces item)."""
    try:
        return json.loads(item.meta)
    except ValueError:
        return {"signal": "traces", "encoding": "unknown", "digests": []}


@dataclass(frozen=True)
class UpstreamRequest:
    """One upstream request: queue items ``first_seq``..``last_seq`` as one compressed body."""

    first_seq: int
    last_seq: int
    body: bytes
    meta: dict  # signal, gateway_id, received_at, items, encoding, digests
    batches: int  # queue items (gateway batches) merged into it


class RequestMerger:
    """Builds the next upstream request from the queue's oldest items; see the module docstring."""

    def __init__(self, queue: PersistentQueue, plan_path: str, max_request_bytes: int, fsync: bool = True) -> None:
        if max_request_bytes <= 0:
            raise ValueError(f"max_request_bytes must be positive, not {max_request_bytes}")
        self.queue = queue
        self.plan_path = plan_path
        self.max_request_bytes = max_request_bytes
        self.fsync = fsync
        self._planned: tuple[int, int] | None = None  # a merge that may have been sent before a restart

    def open(self) -> None:
        """Read the plan of the last merged request; keep it if that request was never acknowledged."""
        try:
            with open(self.plan_path, "rb") as f:
                first, last = (int(part) for part in f.read().split())
        except (FileNotFoundError, ValueError):
            return
        if last > self.queue.stats().acked_through:
            self._planned = (first, last)

    def next(self) -> UpstreamRequest | None:
        if self._planned is not None:
            first, last = self._planned
            self._planned = None
            items = self.queue.peek(last - first + 1, 1 << 62)
            if items and items[0].seq <= last:
                return self._replay(first, last, [item for item in items if item.seq <= last])
        items = self.queue.peek(MAX_MERGED_ITEMS, self.max_request_bytes)
        if not items:
            return None
        chosen, metas = self._mergeable_prefix(items)
        self._record(chosen[0].seq, chosen[-1].seq)
        return self._build(chosen, metas)

    def still_queued(self, request: UpstreamRequest) -> bool:
        """False when the disk budget dropped the request's first items while it waited for a retry."""
        head = self.queue.peek(1, 0)
        return bool(head) and head[0].seq == request.first_seq

    def _replay(self, first: int, last: int, items: list[QueueItem]) -> UpstreamRequest:
        if [item.seq for item in items] != list(range(first, last + 1)):
            # Items of the range were lost on disk (damage, disk budget) since it was
            # sent: what is left goes as a new request the central instance cannot
            # recognise, so its spans may be counted twice there.
            log.warning("a merged upstream request in flight at the last stop lost items on disk; "
                        "re-sending the rest as a new request", extra={"planned": [first, last],
                                                                        "left": len(items)})
            self._record(items[0].seq, items[-1].seq)
        return self._build(items, [item_meta(item) for item in items])

    def _mergeable_prefix(self, items: list[QueueItem]) -> tuple[list[QueueItem], list[dict]]:
        """The oldest items of one signal, gateway and encoding whose raw bytes fit one request (at least one)."""
        metas = [item_meta(items[0])]
        key = _merge_key(metas[0])
        raw = metas[0].get("raw_bytes", len(items[0].payload))
        for item in items[1:]:
            meta = item_meta(item)
            raw += meta.get("raw_bytes", len(item.payload))
            if _merge_key(meta) != key or raw > self.max_request_bytes:
                break
            metas.append(meta)
        return items[:len(metas)], metas

    def _record(self, first_seq: int, last_seq: int) -> None:
        fmt.write_file_atomic(self.plan_path, f"{first_seq} {last_seq}\n".encode(), self.fsync)

    @staticmethod
    def _build(items: list[QueueItem], metas: list[dict]) -> UpstreamRequest:
        if len(items) == 1:
            return UpstreamRequest(items[0].seq, items[0].seq, items[0].payload, metas[0], 1)
        encoding = metas[0].get("encoding", "none")
        raw = b"".join(decompress(item.payload, encoding) for item in items)
        received = [m["received_at"] for m in metas if m.get("received_at")]
        meta = {
            "signal": metas[0].get("signal", "traces"),
            "gateway_id": metas[0].get("gateway_id"),
            "received_at": min(received) if received else None,
            "items": sum(m.get("items", 0) for m in metas),
            "raw_bytes": len(raw),
            "encoding": encoding,
            "digests": [d for m in metas for d in m.get("digests", [])],
        }
        return UpstreamRequest(items[0].seq, items[-1].seq, compress(raw, encoding), meta, len(items))


def _merge_key(meta: dict) -> tuple:
    # A damaged meta ("unknown" encoding) is never merged: its body cannot be decompressed.
    encoding = meta.get("encoding")
    return (meta.get("signal"), meta.get("gateway_id"), encoding if encoding != "unknown" else object())
