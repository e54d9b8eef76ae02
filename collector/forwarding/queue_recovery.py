"""Start-up of the persistent queue: scan, verify, repair, quarantine, restore the head.

:func:`recover` is called by :meth:`collector.forwarding.persistent_queue.PersistentQueue.open`
and never raises because of bad bytes on disk (only for errors of the file
system itself, such as a directory it may not write). Per segment file, in
order of segment id:

- no damage: indexed as it is;
- the newest segment with a torn tail (the only defect is a stretch running
  to the end of the file: a write cut off by a crash): truncated after its
  last good record, counted in ``torn_records``. A newest segment cut off or
  zero-filled before its first record was whole (a torn create) is removed;
- any other damage (a bad checksum or length anywhere, a bad header, an
  unknown version, an unreadable file): the file goes to ``quarantine/``
  (a hard link, or a copy) and is replaced by a rewrite that keeps every
  record that still checks out and is not yet acknowledged (``salvaged``);
  the queue goes on with the next segment.

Then the head: the acknowledged position from ``head`` if it is valid,
otherwise the oldest remaining item (at-least-once, ``head_fallback``).
Fully acknowledged segments are deleted except the newest, and the head
file is rewritten with the next sequence number, so sequence numbers keep
increasing even when every segment is gone. One log line per event.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from collector.forwarding import queue_format as fmt

try:
    import fcntl
except ImportError:  # not on POSIX: no protection against a second process
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("fleetwatch.queue")

_SEGMENT_NAME = re.compile(r"^segment-(\d+)\.fwq$")


class QueueInUseError(RuntimeError):
    """Another process (or another PersistentQueue object) has the queue directory open."""


class DirectoryLock:
    """An exclusive ``flock`` on ``<directory>/lock``; the kernel releases it when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise QueueInUseError(f"{self.path.parent}: the queue is open in another process or object") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def segment_path(directory: Path, segment_id: int) -> str:
    return str(directory / f"segment-{segment_id:012d}.fwq")


@dataclass
class RecoveryReport:
    """What :meth:`PersistentQueue.open` found on disk and did about it."""

    items: int = 0
    bytes: int = 0
    segments: int = 0
    acked_through: int = 0
    next_seq: int = 1
    head_fallback: str | None = None  # why the head file was not used: "missing" or "corrupt"
    torn_records: int = 0
    torn_bytes: int = 0
    quarantined: list[str] = field(default_factory=list)  # paths under quarantine/
    salvaged_items: int = 0  # records kept from quarantined segments
    corrupt_items: int = 0  # records lost to damage (at least one per damaged stretch)
    removed_segments: int = 0  # fully acknowledged segments deleted

    @property
    def clean(self) -> bool:
        """Nothing was repaired (a missing head on a fresh directory is not a repair)."""
        return not (self.head_fallback or self.torn_records or self.quarantined)


class SegmentIndex:
    """In-memory index of one segment file: per record its seq, offset, size and meta length."""

    __slots__ = ("id", "path", "size", "seqs", "offsets", "sizes", "meta_lens", "bad_logged")

    def __init__(self, segment_id: int, path: str, size: int) -> None:
        self.id = segment_id
        self.path = path
        self.size = size
        self.seqs = array("Q")
        self.offsets = array("Q")
        self.sizes = array("Q")  # whole record, RECORD_OVERHEAD included
        self.meta_lens = array("Q")
        self.bad_logged = False

    def add(self, offset: int, seq: int, size: int, meta_len: int) -> None:
        self.seqs.append(seq)
        self.offsets.append(offset)
        self.sizes.append(size)
        self.meta_lens.append(meta_len)

    def unacked(self, acked_through: int) -> tuple[int, int]:
        """Count of records after ``acked_through`` and their payload + meta bytes."""
        start = bisect_right(self.seqs, acked_through)
        count = len(self.seqs) - start
        return count, sum(self.sizes[start:]) - count * fmt.RECORD_OVERHEAD


@dataclass
class Recovered:
    segments: list[SegmentIndex]
    acked_through: int
    next_seq: int
    next_segment_id: int
    report: RecoveryReport


def _index(segment_id: int, path: str, size: int, records: list[tuple[int, int, int, int]]) -> SegmentIndex:
    segment = SegmentIndex(segment_id, path, size)
    for offset, seq, rec_size, meta_len in records:
        segment.add(offset, seq, rec_size, meta_len)
    return segment


def _read_head(directory: Path) -> tuple[str, int, int]:
    """``("ok", acked_through, next_seq)``, ``("missing", 0, 1)`` or ``("corrupt", 0, 1)``."""
    try:
        data = (directory / "head").read_bytes()
    except FileNotFoundError:
        return "missing", 0, 1
    except OSError:
        return "corrupt", 0, 1
    parsed = fmt.parse_head(data)
    return ("ok", *parsed) if parsed else ("corrupt", 0, 1)


def _segment_files(directory: Path) -> list[tuple[int, str]]:
    found = []
    for entry in os.scandir(directory):
        match = _SEGMENT_NAME.match(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            found.append((int(match.group(1)), entry.path))
        elif entry.name == "head.tmp" or (entry.name.startswith("segment-") and entry.name.endswith(".fwq.tmp")):
            os.unlink(entry.path)  # a temp file a crash left behind; the original is intact
    return sorted(found)


def _truncate(path: str, size: int, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _quarantine(directory: Path, path: str, segment_id: int, data: bytes | None, scan: fmt.SegmentScan | None,
                acked: int | None, sync: bool, report: RecoveryReport) -> SegmentIndex | None:
    """Keep a copy of the damaged file in quarantine/ and rewrite it with its good, unacknowledged records."""
    keep = [r for r in scan.records if acked is None or r[1] > acked] if scan else []
    if scan is None:
        lost, reason, where = 1, "unreadable", 0
    else:
        lost = sum(d.lost_seqs if d.lost_seqs is not None else 1 for d in scan.damage)
        reason = scan.header_error or scan.damage[0].reason
        where = 0 if scan.header_error else scan.damage[0].offset
    qdir = directory / "quarantine"
    target = str(qdir / f"{os.path.basename(path)}.{time.time_ns()}")
    segment = None
    try:
        qdir.mkdir(exist_ok=True)
        if keep:
            tmp = path + ".tmp"
            segment = SegmentIndex(segment_id, path, fmt.HEADER_SIZE)
            view = memoryview(data)
            buffers = [fmt.encode_header(segment_id, keep[0][1])]
            for offset, seq, size, meta_len in keep:
                buffers.append(view[offset:offset + size])
                segment.add(segment.size, seq, size, meta_len)
                segment.size += size
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                fmt.write_all(fd, buffers, 0)
                if sync:
                    fmt.fdatasync(fd)
            finally:
                os.close(fd)
            try:
                os.link(path, target)
            except OSError:  # a file system without hard links (FAT on an SD card)
                shutil.copyfile(path, target)
                if sync:
                    with open(target, "rb+") as copy:
                        os.fsync(copy.fileno())
            if sync:
                fmt.fsync_dir(qdir)
            os.replace(tmp, path)
        else:
            os.replace(path, target)
            if sync:
                fmt.fsync_dir(qdir)
        if sync:
            fmt.fsync_dir(directory)
    except OSError as exc:
        # Cannot repair (read-only or full file system): serve the good records
        # from the file as it is and try again at the next start.
        log.error("queue segment %s: %s at byte %d, and quarantining it failed (%s); "
                  "serving its %d good records in place", path, reason, where, exc, len(keep))
        report.corrupt_items += lost
        if keep:
            return _index(segment_id, path, scan.size, keep)
        return None
    report.quarantined.append(target)
    report.salvaged_items += len(keep)
    report.corrupt_items += lost
    log.error("queue segment %s: %s at byte %d; moved to %s, kept %d records, lost %s",
              path, reason, where, target, len(keep),
              lost if scan and all(d.lost_seqs is not None for d in scan.damage) else f"at least {lost}")
    return segment


def recover(directory: Path, sync: bool) -> Recovered:
    """Scan ``directory`` and bring it to a consistent state (see the module docstring)."""
    report = RecoveryReport()
    head_state, head_acked, head_next = _read_head(directory)
    acked_known = head_acked if head_state == "ok" else None
    files = _segment_files(directory)
    segments: list[SegmentIndex] = []
    prev_last = 0
    seq_floor = head_next
    for position, (segment_id, path) in enumerate(files):
        newest = position == len(files) - 1
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError:
            _quarantine(directory, path, segment_id, None, None, acked_known, sync, report)
            continue
        scan = fmt.scan_segment(data, segment_id, prev_last + 1)
        seq_floor = max([seq_floor, scan.first_seq or 0] + [r[1] + 1 for r in scan.records[-1:]])
        tail = scan.torn_tail
        if newest and scan.blank:
            os.unlink(path)
            if scan.size:
                report.torn_records += 1
                report.torn_bytes += scan.size
                log.warning("queue segment %s: cut off before its first record (%d bytes); removed",
                            path, scan.size)
            continue
        if scan.header_error is None and not scan.damage:
            segment = _index(segment_id, path, scan.size, scan.records)
        elif newest and tail is not None:
            report.torn_records += 1
            report.torn_bytes += scan.size - tail.offset
            log.warning("queue segment %s: torn write at the end (%s, %d bytes); truncated after the last "
                        "whole record", path, tail.reason, scan.size - tail.offset)
            try:
                if scan.records:
                    _truncate(path, tail.offset, sync)
                else:
                    os.unlink(path)
            except OSError as exc:
                log.error("queue segment %s: cannot truncate (%s); serving the whole records in place", path, exc)
            if not scan.records:
                continue
            segment = _index(segment_id, path, tail.offset, scan.records)
        else:
            segment = _quarantine(directory, path, segment_id, data, scan, acked_known, sync, report)
            if segment is None:
                continue
        segments.append(segment)
        if segment.seqs:
            prev_last = segment.seqs[-1]

    oldest = next((s.seqs[0] for s in segments if s.seqs), None)
    if acked_known is not None:
        acked = acked_known
    else:
        acked = oldest - 1 if oldest is not None else 0
        if head_state == "corrupt" or files:
            report.head_fallback = head_state
            log.warning("queue head file %s; delivering again from the oldest item (seq %s)",
                        head_state, oldest)
    while len(segments) > 1 and (not segments[0].seqs or segments[0].seqs[-1] <= acked):
        os.unlink(segments.pop(0).path)
        report.removed_segments += 1
    next_seq = max(seq_floor, acked + 1, prev_last + 1)
    fmt.write_file_atomic(str(directory / "head"), fmt.encode_head(acked, next_seq), sync)

    report.acked_through, report.next_seq = acked, next_seq
    report.segments = len(segments)
    report.bytes = sum(s.size for s in segments)
    report.items = sum(s.unacked(acked)[0] for s in segments)
    next_id = (files[-1][0] + 1) if files else 1
    log.info("queue %s opened: %d items, %d bytes in %d segments, next seq %d%s", directory, report.items,
             report.bytes, report.segments, next_seq, "" if report.clean else " (repaired, see above)")
    return Recovered(segments, acked, next_seq, next_id, report)
