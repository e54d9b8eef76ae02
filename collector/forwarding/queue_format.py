"""On-disk format of the persistent queue (collector/forwarding/persistent_queue.py).

Pure functions over bytes: encode records and headers, and scan a segment
file that may be torn or damaged. Nothing here touches the file system
except :func:`fsync_dir` and :func:`write_file_atomic`.

Layout (all integers little-endian)::

    segment file  segment-<id:012d>.fwq
        header   32 bytes
            magic       8 bytes  b"FWQUEUE\\x00"
            version     u16      1
            flags       u16      0
            segment_id  u64      the number in the file name
            first_seq   u64      sequence number of the first record
            crc32       u32      of the 28 header bytes before it
        record*
            len         u32      bytes after the crc: 12 + meta_len + len(payload)
            crc32       u32      of everything after itself (seq .. payload)
            seq         u64      strictly increasing, across segments too
            meta_len    u32
            meta        meta_len bytes
            payload     the rest of the record

    head file  head   (replaced atomically: head.tmp, fsync, rename, fsync dir)
        magic b"FWQHEAD\\x00" | version u16 | reserved u16 |
        acked_through u64 | next_seq u64 | crc32 u32 of the 28 bytes before it

A scan never raises for bad bytes: it returns the good records and where
the damage is, and, after a damaged stretch, finds the next good record by
its sequence number (the records after a flipped bit are not lost).
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

MAGIC = b"FWQUEUE\x00"
HEAD_MAGIC = b"FWQHEAD\x00"
VERSION = 1

_HEADER = struct.Struct("<8sHHQQ")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size + _CRC.size  # 32
_LEN_CRC = struct.Struct("<II")
_SEQ_META = struct.Struct("<QI")
_RECORD_HEAD = struct.Struct("<IIQI")  # len, crc, seq, meta_len
RECORD_OVERHEAD = _RECORD_HEAD.size  # 20 bytes on top of meta + payload
MAX_RECORD = (1 << 32) - 1 - _SEQ_META.size  # meta + payload must fit the u32 length
_HEAD = struct.Struct("<8sHHQQ")
HEAD_SIZE = _HEAD.size + _CRC.size  # 32
_SEQ = struct.Struct("<Q")

# After a damaged stretch, look for the next record among this many following
# sequence numbers (one bit flip costs one record; a zeroed 4 KiB page a few
# small ones; real records are 50 KB or more). Each costs one pass of
# bytes.find over the rest of the file, and only when there is damage.
RESYNC_SEQS = 64
_RESYNC_TRIES = 1000  # candidate positions checked per sequence number

fdatasync = getattr(os, "fdatasync", os.fsync)


def encode_header(segment_id: int, first_seq: int) -> bytes:
    body = _HEADER.pack(MAGIC, VERSION, 0, segment_id, first_seq)
    return body + _CRC.pack(zlib.crc32(body))


def parse_header(data: bytes, segment_id: int) -> tuple[int | None, str | None]:
    """Return ``(first_seq, None)`` for a good header, ``(None, reason)`` otherwise."""
    if len(data) < HEADER_SIZE:
        return None, f"file shorter than its {HEADER_SIZE}-byte header"
    magic, version, _flags, seg_id, first_seq = _HEADER.unpack_from(data)
    if magic != MAGIC:
        return None, "bad magic"
    (crc,) = _CRC.unpack_from(data, _HEADER.size)
    if crc != zlib.crc32(memoryview(data)[: _HEADER.size]):
        return None, "header checksum mismatch"
    if version != VERSION:
        return None, f"unknown format version {version}"
    if seg_id != segment_id:
        return None, f"header names segment {seg_id}"
    return first_seq, None


def encode_records(items: Sequence[tuple[bytes, bytes]], first_seq: int) -> tuple[list[bytes], list[int], list[int]]:
    """Buffers to write (no payload is copied), record sizes and meta lengths."""
    buffers: list[bytes] = []
    sizes: list[int] = []
    meta_lens: list[int] = []
    for index, (payload, meta) in enumerate(items):
        tail = _SEQ_META.pack(first_seq + index, len(meta))
        crc = zlib.crc32(payload, zlib.crc32(meta, zlib.crc32(tail)))
        length = _SEQ_META.size + len(meta) + len(payload)
        buffers.append(_LEN_CRC.pack(length, crc) + tail)
        if meta:
            buffers.append(meta)
        buffers.append(payload)
        sizes.append(RECORD_OVERHEAD + len(meta) + len(payload))
        meta_lens.append(len(meta))
    return buffers, sizes, meta_lens


def encode_head(acked_through: int, next_seq: int) -> bytes:
    body = _HEAD.pack(HEAD_MAGIC, VERSION, 0, acked_through, next_seq)
    return body + _CRC.pack(zlib.crc32(body))


def parse_head(data: bytes) -> tuple[int, int] | None:
    """``(acked_through, next_seq)``, or None if the bytes are not a valid head file."""
    if len(data) != HEAD_SIZE:
        return None
    magic, version, _reserved, acked_through, next_seq = _HEAD.unpack_from(data)
    (crc,) = _CRC.unpack_from(data, _HEAD.size)
    if magic != HEAD_MAGIC or version != VERSION or crc != zlib.crc32(data[: _HEAD.size]):
        return None
    return acked_through, next_seq


@dataclass
class Damage:
    """A stretch of a segment that holds no readable record."""

    offset: int
    end: int  # where the next good record starts, or the file size
    reason: str
    lost_seqs: int | None  # sequence numbers skipped when known (None at the tail)


@dataclass
class SegmentScan:
    """What :func:`scan_segment` found; records are ``(offset, seq, size, meta_len)``."""

    size: int
    first_seq: int | None  # from a good header
    header_error: str | None
    records: list[tuple[int, int, int, int]] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    head_bytes: bytes = field(default=b"", repr=False)

    @property
    def torn_tail(self) -> Damage | None:
        """The damage if the only defect is a stretch running to the end of the file."""
        if self.header_error is None and len(self.damage) == 1 and self.damage[0].end == self.size:
            return self.damage[0]
        return None

    @property
    def blank(self) -> bool:
        """A file cut off or zero-filled before its first record was complete (a torn create)."""
        cut = self.size < HEADER_SIZE or not any(self.head_bytes)
        return self.header_error is not None and not self.records and cut


def _record_at(data: bytes, view: memoryview, pos: int, min_seq: int) -> tuple[int, int, int] | str:
    """``(seq, size, meta_len)`` of a valid record at ``pos``, or why there is none."""
    if len(data) - pos < RECORD_OVERHEAD:
        return "truncated record header"
    length, crc, seq, meta_len = _RECORD_HEAD.unpack_from(data, pos)
    if length < _SEQ_META.size or _SEQ_META.size + meta_len > length:
        return "bad record length"
    end = pos + 8 + length
    if end > len(data):
        return "record runs past the end of the file"
    if zlib.crc32(view[pos + 8 : end]) != crc:
        return "record checksum mismatch"
    if seq < min_seq:
        return "sequence number out of order"
    return seq, 8 + length, meta_len


def _resync(data: bytes, view: memoryview, pos: int, min_seq: int) -> tuple[int, int] | None:
    """Offset and seq of the first good record after ``pos``, found by its sequence number."""
    for seq in range(min_seq, min_seq + RESYNC_SEQS):
        pattern = _SEQ.pack(seq)
        hit = data.find(pattern, pos + 9)
        tries = 0
        while hit != -1 and tries < _RESYNC_TRIES:
            found = _record_at(data, view, hit - 8, seq)
            if not isinstance(found, str) and found[0] == seq:
                return hit - 8, seq
            hit = data.find(pattern, hit + 1)
            tries += 1
    return None


def scan_segment(data: bytes, segment_id: int, min_seq: int) -> SegmentScan:
    """Parse a whole segment file; ``min_seq`` is one past the previous segment's last seq."""
    first_seq, header_error = parse_header(data, segment_id)
    scan = SegmentScan(size=len(data), first_seq=first_seq, header_error=header_error,
                       head_bytes=data[:HEADER_SIZE])
    view = memoryview(data)
    expect = max(min_seq, first_seq or 0)
    pos = HEADER_SIZE
    while pos < len(data):
        found = _record_at(data, view, pos, expect)
        if not isinstance(found, str):
            seq, size, meta_len = found
            scan.records.append((pos, seq, size, meta_len))
            expect = seq + 1
            pos += size
            continue
        hit = _resync(data, view, pos, expect)
        if hit is None:
            scan.damage.append(Damage(pos, len(data), found, None))
            break
        scan.damage.append(Damage(pos, hit[0], found, hit[1] - expect))
        pos = hit[0]
    return scan


def write_all(fd: int, buffers: Sequence[bytes], offset: int) -> int:
    """Write ``buffers`` at ``offset`` (vectored, retrying short writes); return the bytes written."""
    written = 0
    for start in range(0, len(buffers), 512):  # stay under IOV_MAX
        chunk = buffers[start : start + 512]
        want = sum(len(b) for b in chunk)
        done = os.pwritev(fd, chunk, offset + written) if hasattr(os, "pwritev") else 0
        if done < want:
            rest = memoryview(b"".join(chunk))[done:]
            while rest:
                n = os.pwrite(fd, rest, offset + written + done)
                done += n
                rest = rest[n:]
        written += want
    return written


def read_records(plan: Sequence[tuple[str, int, int, int, int]]
                 ) -> tuple[list[tuple[int, bytes, bytes]], tuple[str, int] | None]:
    """Read and verify ``(path, seq, offset, size, meta_len)`` records in order into ``(seq, payload, meta)``.

    Stops at the first record that does not check out (``("damaged", i)``)
    or whose file is gone (``("gone", i)``), ``i`` being its index in ``plan``.
    """
    out: list[tuple[int, bytes, bytes]] = []
    fd, fd_path = None, None
    try:
        for index, (path, seq, offset, size, meta_len) in enumerate(plan):
            if fd_path != path:
                if fd is not None:
                    os.close(fd)
                    fd = None
                try:
                    fd, fd_path = os.open(path, os.O_RDONLY), path
                except FileNotFoundError:
                    return out, ("gone", index)
            head = os.pread(fd, RECORD_OVERHEAD + meta_len, offset)
            payload = os.pread(fd, size - len(head), offset + len(head)) if len(head) == (
                RECORD_OVERHEAD + meta_len) else b""
            if len(head) + len(payload) == size:
                length, crc, found_seq, found_meta_len = _RECORD_HEAD.unpack_from(head)
                if (length == size - 8 and found_seq == seq and found_meta_len == meta_len
                        and zlib.crc32(payload, zlib.crc32(memoryview(head)[8:])) == crc):
                    out.append((seq, payload, head[RECORD_OVERHEAD:]))
                    continue
            return out, ("damaged", index)
        return out, None
    finally:
        if fd is not None:
            os.close(fd)


def read_metas(path: str, seqs: Sequence[int], offsets: Sequence[int],
               meta_lens: Sequence[int]) -> Iterator[tuple[int, bytes]]:
    """``(seq, meta)`` of the given records, reading only their heads; nothing if the file is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        for seq, offset, meta_len in zip(seqs, offsets, meta_lens):
            data = os.pread(fd, RECORD_OVERHEAD + meta_len, offset)
            if len(data) == RECORD_OVERHEAD + meta_len and _SEQ.unpack_from(data, 8)[0] == seq:
                yield seq, data[RECORD_OVERHEAD:]
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a create, rename or delete in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise  # EIO: the rename may not be durable, say so
    finally:
        os.close(fd)


def write_file_atomic(path: str, data: bytes, sync: bool) -> None:
    """Replace ``path`` with ``data``: write ``path.tmp``, fsync, rename, fsync the directory."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, [data], 0)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(os.path.dirname(path) or ".")
