"""The gateway's durable FIFO of upstream requests: segment files, checksums, a disk budget.

Usage::

    queue = PersistentQueue("/var/lib/fleetwatch/queue", max_bytes=2 << 30,
                            on_drop=lambda items, nbytes: drops.inc(items))
    report = queue.open()              # never raises for bad bytes on disk
    for seq, meta in queue.iter_meta(): ...   # rebuild the dedup window

    seqs = queue.append_many([(payload, meta), ...])   # durable when it returns
    batch = queue.peek(max_items=16, max_bytes=4 << 20)  # oldest first
    send(batch)
    queue.ack(batch[-1].seq)           # delivered: never handed out again
    queue.close()                      # keeps everything not acknowledged

Guarantees (docs/persistent-queue.md has the format and the reasoning):

- With ``fsync=True`` (the default) an append returns only after its records
  are fdatasync'ed, and the directory is fsync'ed when a segment is created;
  after ``kill -9`` or a power cut every item whose append returned and that
  was not acknowledged comes back, in order. A batch is one write and one
  fdatasync (group commit). With ``fsync=False`` appends survive ``kill -9``
  but not a power cut; :meth:`close` still syncs.
- ``ack`` persists the head atomically (temp file, fsync, rename, fsync dir)
  before deleting consumed segments: an acknowledged item is never handed
  out again, except the last ``ack``'s items if the process died inside it
  (at-least-once).
- :meth:`open` truncates a torn tail of the newest segment (a write cut off
  by a crash), quarantines a damaged segment into ``quarantine/`` while
  keeping every record in it that still checks out (rewritten in place),
  and falls back to the oldest item when the head file is missing or bad.
  Everything is counted in :meth:`stats` and logged once per event on the
  ``fleetwatch.queue`` logger.
- ``max_bytes`` bounds the segment files. An append that would pass it
  first deletes the oldest segments, counts the unacknowledged items in them
  as dropped and calls ``on_drop(items, payload_and_meta_bytes)``. Segments
  are at most ``max_bytes / 16`` (and ``segment_bytes``; a batch larger than
  that gets a segment of its own), so one drop loses about a sixteenth of
  the budget at most.
- One writer thread and one reader thread may call concurrently; the fsync
  of an append runs without the lock that ``peek`` and ``ack`` take.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from collector.forwarding import queue_format as fmt
from collector.forwarding.queue_recovery import (DirectoryLock, QueueInUseError, RecoveryReport, SegmentIndex, recover,
                                      segment_path)

__all__ = ["PersistentQueue", "QueueItem", "QueueStats", "RecoveryReport", "QueueInUseError"]

log = logging.getLogger("fleetwatch.queue")

MIN_BYTES = 4096
_DROP_LOG_INTERVAL = 60.0


class QueueItem(NamedTuple):
    """One queued upstream request."""

    seq: int
    payload: bytes
    meta: bytes


@dataclass
class QueueStats:
    """Counters since :meth:`PersistentQueue.open` (``items`` and ``bytes`` are current)."""

    items: int  # queued, not acknowledged
    bytes: int  # size of the segment files
    segments: int
    dropped_items: int  # removed unacknowledged by the disk budget
    dropped_bytes: int  # their payload + meta bytes
    quarantined_segments: int
    torn_records: int
    corrupt_items: int  # records lost to damage (found at open or at read)
    appended: int
    acked: int
    acked_through: int
    next_seq: int


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {value}")
    return value


class PersistentQueue:
    """A durable FIFO of ``(payload, meta)`` items in segment files under ``directory``.

    ``open()`` before use (or ``with PersistentQueue(...) as q``, which opens
    and closes; ``q.recovery`` is the :class:`RecoveryReport`). Sequence
    numbers start at 1 and strictly increase, across segments and restarts.
    ``peek`` hands out the oldest unacknowledged items without removing them;
    ``ack(seq)`` removes everything up to and including ``seq``.
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int, segment_bytes: int = 32 << 20,
                 fsync: bool = True, on_drop: Callable[[int, int], None] | None = None) -> None:
        self.max_bytes = _check_int("max_bytes", max_bytes, MIN_BYTES)
        self.segment_bytes = _check_int("segment_bytes", segment_bytes, MIN_BYTES)
        if not isinstance(fsync, bool):
            raise ValueError(f"fsync: expected True or False, got {fsync!r}")
        if on_drop is not None and not callable(on_drop):
            raise ValueError("on_drop: expected a callable(items, bytes)")
        self.directory = Path(directory)
        self.fsync = fsync
        # Dropping one segment must not throw away a large share of the budget.
        self.segment_limit = min(segment_bytes, max(max_bytes // 16, MIN_BYTES))
        self._on_drop = on_drop
        self._lock = threading.Lock()  # in-memory state; never held during an fsync
        self._write_lock = threading.Lock()  # one append at a time
        self._ack_lock = threading.Lock()  # one head write at a time
        self._segments: list[SegmentIndex] = []
        self._active: SegmentIndex | None = None  # segment appended to, with its write fd
        self._write_fd: int | None = None
        self._dir_lock = DirectoryLock(self.directory / "lock")
        self._state = "new"
        self._acked_through = 0
        self._published = 0  # highest seq visible to readers
        self._next_seq = 1
        self._next_segment_id = 1
        self._disk_bytes = 0
        self._items = 0
        self._counts = dict.fromkeys(("dropped_items", "dropped_bytes", "quarantined_segments", "torn_records",
                                      "corrupt_items", "appended", "acked"), 0)
        self._drop_logged_at = float("-inf")
        self._drops_unlogged = [0, 0]
        self.recovery: RecoveryReport | None = None

    # -- life cycle --------------------------------------------------------
    def __enter__(self) -> PersistentQueue:
        if self._state == "new":
            self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> RecoveryReport:
        """Scan and verify every segment, repair what a crash left, restore the head."""
        if self._state != "new":
            raise ValueError("PersistentQueue.open() may be called once")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._dir_lock.acquire()
        try:
            found = recover(self.directory, self.fsync)
        except BaseException:
            self._dir_lock.release()
            raise
        with self._lock:
            self._segments = found.segments
            self._acked_through = found.acked_through
            self._published = max([found.acked_through] + [s.seqs[-1] for s in found.segments if s.seqs])
            self._next_seq = found.next_seq
            self._next_segment_id = found.next_segment_id
            self._disk_bytes = found.report.bytes
            self._items = found.report.items
            for name in ("torn_records", "corrupt_items"):
                self._counts[name] = getattr(found.report, name)
            self._counts["quarantined_segments"] = len(found.report.quarantined)
            self._state = "open"
        self.recovery = found.report
        return found.report

    def close(self) -> None:
        """Sync and close files. Never deletes an unacknowledged item."""
        with self._ack_lock, self._write_lock, self._lock:
            if self._state != "open":
                self._state = "closed"
                return
            self._state = "closed"
            try:
                if self._write_fd is not None:
                    os.close(self._write_fd)
                    self._write_fd = None
                if not self.fsync:  # a clean stop keeps the backlog even without per-append fsync
                    for path in [s.path for s in self._segments] + [str(self.directory / "head")]:
                        fd = os.open(path, os.O_RDONLY)
                        try:
                            os.fsync(fd)
                        finally:
                            os.close(fd)
                    fmt.fsync_dir(self.directory)
            finally:
                self._dir_lock.release()

    def _check_open(self) -> None:
        if self._state != "open":
            raise ValueError("the queue is closed" if self._state == "closed" else "call open() first")

    # -- writer ------------------------------------------------------------
    def append(self, payload: bytes, meta: bytes = b"") -> int:
        """Append one item; durable when this returns. Returns its sequence number."""
        return self.append_many([(payload, meta)])[0]

    @staticmethod
    def largest_item(max_bytes: int) -> int:
        """Payload plus meta bytes of the largest item a queue with this budget can hold."""
        return min(fmt.MAX_RECORD, max_bytes - fmt.HEADER_SIZE - fmt.RECORD_OVERHEAD)

    def append_many(self, items: list[tuple[bytes, bytes]]) -> list[int]:
        """Append ``(payload, meta)`` items with one write and one fsync; return their sequence numbers.

        Raises ValueError if an item, or the whole batch, is larger than the
        budget (``max_bytes`` less a 32-byte segment header).
        """
        batch: list[tuple[bytes, bytes]] = []
        for payload, meta in items:
            if not isinstance(payload, (bytes, bytearray, memoryview)) or not isinstance(
                    meta, (bytes, bytearray, memoryview)):
                raise TypeError("payload and meta must be bytes")
            if len(payload) + len(meta) > self.largest_item(self.max_bytes):
                raise ValueError(f"item of {len(payload) + len(meta)} bytes is larger than the queue's whole "
                                 f"budget (max_bytes={self.max_bytes})")
            batch.append((payload, meta))
        if not batch:
            self._check_open()
            return []
        need = sum(fmt.RECORD_OVERHEAD + len(p) + len(m) for p, m in batch)
        if fmt.HEADER_SIZE + need > self.max_bytes:
            raise ValueError(f"batch of {need} bytes is larger than the queue's budget (max_bytes="
                             f"{self.max_bytes}); append fewer items at a time")
        dropped: list[tuple[SegmentIndex, int, int]] = []
        try:
            with self._write_lock:
                first_seq = self._append_locked(batch, need, dropped)
        finally:
            self._report_drops(dropped)  # also when the write failed: the drop happened
        return list(range(first_seq, first_seq + len(batch)))

    def _append_locked(self, batch: list[tuple[bytes, bytes]], need: int,
                       dropped: list[tuple[SegmentIndex, int, int]]) -> int:
        """Reserve seqs, write, sync, publish (write lock held; the state lock only for bookkeeping)."""
        with self._lock:
            self._check_open()
            active = self._active
            roll = active is None or active.size + need > self.segment_limit
            roll = self._make_room(need, roll, dropped)
            first_seq = self._next_seq
            self._next_seq += len(batch)
            segment_id = self._next_segment_id if roll else 0
            if roll:
                self._next_segment_id += 1
        try:
            buffers, sizes, meta_lens = fmt.encode_records(batch, first_seq)
            if roll:
                segment, fd = self._create_segment(segment_id, first_seq, buffers)
                offset = fmt.HEADER_SIZE
            else:
                segment, fd, offset = active, self._write_fd, active.size
                self._write(fd, buffers, offset)
        finally:
            self._remove_files(dropped)
        with self._lock:
            if roll:
                if self._write_fd is not None:
                    os.close(self._write_fd)
                self._segments.append(segment)
                self._active, self._write_fd = segment, fd
                self._disk_bytes += fmt.HEADER_SIZE
            for index, size in enumerate(sizes):
                segment.add(offset, first_seq + index, size, meta_lens[index])
                offset += size
            segment.size = offset
            self._disk_bytes += need
            self._items += len(batch)
            self._counts["appended"] += len(batch)
            self._published = first_seq + len(batch) - 1
            consumed = self._take_consumed() if roll else []
        self._remove_files(consumed)
        return first_seq

    def _make_room(self, need: int, roll: bool, dropped: list[tuple[SegmentIndex, int, int]]) -> bool:
        """Remove the oldest segments into ``dropped`` until ``need`` more bytes fit (lock held); returns ``roll``."""
        while self._segments and self._disk_bytes + need + (fmt.HEADER_SIZE if roll else 0) > self.max_bytes:
            if not roll and len(self._segments) == 1:
                roll = True  # the active segment is the only one left: start a new one and drop it
                continue
            segment = self._segments.pop(0)
            if segment is self._active:
                self._active = None
                if self._write_fd is not None:
                    os.close(self._write_fd)
                    self._write_fd = None
            count, nbytes = segment.unacked(self._acked_through)
            self._disk_bytes -= segment.size
            self._items -= count
            self._counts["dropped_items"] += count
            self._counts["dropped_bytes"] += nbytes
            dropped.append((segment, count, nbytes))
        return roll

    def _create_segment(self, segment_id: int, first_seq: int, buffers: list[bytes]) -> tuple[SegmentIndex, int]:
        path = segment_path(self.directory, segment_id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fmt.write_all(fd, [fmt.encode_header(segment_id, first_seq), *buffers], 0)
            if self.fsync:
                fmt.fdatasync(fd)
                fmt.fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            _unlink_quietly(path)
            raise
        return SegmentIndex(segment_id, path, fmt.HEADER_SIZE), fd

    def _write(self, fd: int, buffers: list[bytes], offset: int) -> None:
        try:
            fmt.write_all(fd, buffers, offset)
            if self.fsync:
                fmt.fdatasync(fd)
        except BaseException:
            # Cut the partial write off and never write to this file again:
            # after a failed fsync the page cache cannot be trusted.
            try:
                os.ftruncate(fd, offset)
            except OSError:
                pass
            with self._lock:
                self._active = None
            raise

    def _report_drops(self, dropped: list[tuple[SegmentIndex, int, int]]) -> None:
        items = sum(count for _, count, _ in dropped)
        nbytes = sum(n for _, _, n in dropped)
        if not items:
            return
        if self._on_drop is not None:
            try:
                self._on_drop(items, nbytes)
            except Exception:
                log.exception("queue on_drop callback failed")
            return
        with self._lock:
            self._drops_unlogged[0] += items
            self._drops_unlogged[1] += nbytes
            now = time.monotonic()
            if now - self._drop_logged_at < _DROP_LOG_INTERVAL:
                return
            summary, self._drop_logged_at, self._drops_unlogged = self._drops_unlogged, now, [0, 0]
        log.warning("queue over its %d-byte budget: dropped the oldest %d items (%d bytes); "
                    "pass on_drop to count them", self.max_bytes, *summary)

    # -- reader ------------------------------------------------------------
    def peek(self, max_items: int, max_bytes: int) -> list[QueueItem]:
        """The oldest unacknowledged items, not removed: at most ``max_items`` and ``max_bytes`` of payload.

        Always at least one item when the queue is not empty, even a larger
        one. Reads happen outside the lock, so an append is not held up.
        """
        _check_int("max_items", max_items, 1)
        _check_int("max_bytes", max_bytes, 0)
        while True:
            plan: list[tuple[SegmentIndex, int, int, int, int]] = []  # segment, seq, offset, size, meta_len
            total = 0
            with self._lock:
                self._check_open()
                for segment in self._segments:
                    for index in range(bisect_right(segment.seqs, self._acked_through), len(segment.seqs)):
                        size, meta_len = segment.sizes[index], segment.meta_lens[index]
                        payload_len = size - fmt.RECORD_OVERHEAD - meta_len
                        if len(plan) >= max_items or (plan and total + payload_len > max_bytes):
                            break
                        plan.append((segment, segment.seqs[index], segment.offsets[index], size, meta_len))
                        total += payload_len
                    else:
                        continue
                    break
            records, problem = fmt.read_records([(s.path, seq, o, n, m) for s, seq, o, n, m in plan])
            items = [QueueItem(*record) for record in records]
            if problem is None:
                return items
            # Forget the record and plan again (rare: damage, or a race with a drop or an ack).
            kind, index = problem
            segment, seq = plan[index][0], plan[index][1]
            with self._lock:
                listed = any(s is segment for s in self._segments)
            if kind == "damaged" or listed:  # a file deleted behind our back counts as damage
                self._discard(segment, seq)

    def _discard(self, segment: SegmentIndex, seq: int) -> None:
        """Forget a record that no longer matches its checksum (bit rot after open)."""
        with self._lock:
            index = bisect_right(segment.seqs, seq) - 1
            if index < 0 or segment.seqs[index] != seq:
                return  # already gone
            for column in (segment.seqs, segment.offsets, segment.sizes, segment.meta_lens):
                del column[index]
            if seq > self._acked_through:
                self._items -= 1
                self._counts["corrupt_items"] += 1
            if not segment.bad_logged:
                segment.bad_logged = True
                log.error("queue segment %s: record %d no longer matches its checksum; skipped "
                          "(more damage in this segment is counted, not logged)", segment.path, seq)

    def ack(self, through_seq: int) -> None:
        """Everything up to and including ``through_seq`` was delivered: persist the head, free segments."""
        _check_int("through_seq", through_seq, 0)
        with self._ack_lock:
            with self._lock:
                self._check_open()
                if through_seq > self._published:
                    raise ValueError(f"ack({through_seq}): nothing was appended past seq {self._published}")
                if through_seq <= self._acked_through:
                    return
                count = 0
                for segment in self._segments:
                    count += (bisect_right(segment.seqs, through_seq)
                              - bisect_right(segment.seqs, self._acked_through))
                self._acked_through = through_seq
                self._items -= count
                self._counts["acked"] += count
                head = fmt.encode_head(through_seq, self._next_seq)
            self.write_head(head)
            with self._lock:
                consumed = self._take_consumed()
            self._remove_files(consumed)

    def write_head(self, head: bytes) -> None:
        """Replace the head file atomically (temp file, fsync, rename, fsync dir)."""
        fmt.write_file_atomic(str(self.directory / "head"), head, self.fsync)

    def _take_consumed(self) -> list[tuple[SegmentIndex, int, int]]:
        """Unlink-ready segments with nothing left to deliver (lock held); the newest always stays."""
        consumed = []
        while len(self._segments) > 1 and (not self._segments[0].seqs
                                           or self._segments[0].seqs[-1] <= self._acked_through):
            segment = self._segments.pop(0)
            self._disk_bytes -= segment.size
            consumed.append((segment, 0, 0))
        return consumed

    @staticmethod
    def _remove_files(segments: list[tuple[SegmentIndex, int, int]]) -> None:
        for segment, _, _ in segments:
            _unlink_quietly(segment.path)

    def iter_meta(self) -> Iterator[tuple[int, bytes]]:
        """``(seq, meta)`` of every item queued when called, oldest first (reads only the metas)."""
        with self._lock:
            self._check_open()
            snapshot = []
            for segment in self._segments:
                start = bisect_right(segment.seqs, self._acked_through)
                if start < len(segment.seqs):
                    snapshot.append((segment.path, segment.seqs[start:], segment.offsets[start:],
                                     segment.meta_lens[start:]))
        for path, seqs, offsets, meta_lens in snapshot:
            yield from fmt.read_metas(path, seqs, offsets, meta_lens)

    def stats(self) -> QueueStats:
        with self._lock:
            return QueueStats(items=self._items, bytes=self._disk_bytes, segments=len(self._segments),
                              acked_through=self._acked_through, next_seq=self._next_seq, **self._counts)

    def __len__(self) -> int:
        return self._items


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
