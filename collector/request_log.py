"""On-disk format for a sequence of OTLP export requests (a "request log").

A request log is what a gateway would have received, in the order it would
have received it: one record per OTLP export request, each with its signal,
the gateway's receive time and the serialized protobuf request. Bulk
backfills and the shipped sample data are request logs, so they enter the
database through the collector's own decode / validate / batch / write path
exactly like live traffic.

Usage::

    from collector.request_log import RequestLogWriter, read_request_log

    with RequestLogWriter("fleet.otlp.zst") as log:
        log.append("traces", received_at_unix_nano, request.SerializeToString())

    for record in read_request_log("fleet.otlp.zst"):
        record.signal                  # "traces", "metrics" or "logs"
        record.received_at_unix_nano   # int, gateway receive time
        record.payload                 # bytes: Export{Trace,Metrics}ServiceRequest

Layout (all integers little-endian)::

    header (uncompressed, 16 bytes)
        magic     8 bytes  b"FWRQLOG\\x00"
        version   u16      1
        flags     u16      bit 0: body is zstd-compressed (always set)
        reserved  u32      0
    body: one zstd stream (with zstd's own content checksum) holding
        record*   kind u8 (1 traces, 2 metrics, 3 logs) | received_at u64 |
                  length u32 | payload | crc32 u32
        trailer   kind u8 = 0xFF | record count u64 | crc32 u32

The crc32 of a record covers its kind, received_at, length and payload; the
trailer's covers kind and count. A file without its trailer was truncated.
Records are written in non-decreasing ``received_at`` order and the writer
refuses anything else. Every defect (wrong magic, unknown version, a bad
checksum, a truncated body) raises ``ValueError`` with the file name and the
record index; damage after the header comes after every intact record
before it (:class:`DamagedLogError`, with the record index and its byte
offset in the decompressed body).

The module imports nothing outside the standard library and ``zstandard``:
the collector runs on small gateways.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import BinaryIO, NamedTuple

import zstandard

__all__ = [
    "MAGIC",
    "VERSION",
    "SIGNALS",
    "RequestRecord",
    "RequestLogWriter",
    "RequestLogReader",
    "DamagedLogError",
    "read_request_log",
]

MAGIC = b"FWRQLOG\x00"
VERSION = 1
FLAG_ZSTD = 1
SIGNALS = ("traces", "metrics", "logs")

_HEADER = struct.Struct("<8sHHI")
_RECORD_HEAD = struct.Struct("<BQI")  # kind, received_at, length
_CRC = struct.Struct("<I")
_TRAILER = struct.Struct("<BQ")  # kind, count
_KIND_OF = {"traces": 1, "metrics": 2, "logs": 3}
_SIGNAL_OF = {1: "traces", 2: "metrics", 3: "logs"}
_KIND_END = 0xFF
_MAX_PAYLOAD = 1 << 30  # sanity bound: a corrupt length must not allocate GBs
_U64_MAX = (1 << 64) - 1


class RequestRecord(NamedTuple):
    """One received OTLP export request."""

    signal: str
    received_at_unix_nano: int
    payload: bytes


class RequestLogWriter:
    """Write a request log; use as a context manager.

    ``RequestLogWriter(path, level=10)`` opens ``path + ".tmp"`` and renames
    it to ``path`` when the ``with`` block ends without an exception (on an
    exception the partial file is removed, so a half-written log never
    appears under its final name). ``append(signal, received_at_unix_nano,
    payload)`` adds one record; ``received_at`` must not go backwards.
    ``count`` and ``bytes_in`` report what was written so far.

    The same records with the same ``level`` always produce the same bytes
    (for a given zstandard / libzstd version).
    """

    def __init__(self, path: str | os.PathLike[str], level: int = 10) -> None:
        self.path = os.fspath(path)
        self.level = level
        self.count = 0
        self.bytes_in = 0
        self._last_received_at = -1
        self._tmp_path = self.path + ".tmp"
        self._file: BinaryIO | None = None
        self._stream = None

    # -- context manager -------------------------------------------------
    def __enter__(self) -> RequestLogWriter:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open(self) -> None:
        if self._file is not None:
            raise ValueError(f"{self.path}: request log already open")
        self._file = open(self._tmp_path, "wb")
        self._file.write(_HEADER.pack(MAGIC, VERSION, FLAG_ZSTD, 0))
        compressor = zstandard.ZstdCompressor(
            level=self.level, write_checksum=True, write_content_size=False, threads=0
        )
        self._stream = compressor.stream_writer(self._file, closefd=False)

    def append(self, signal: str, received_at_unix_nano: int, payload: bytes) -> None:
        """Append one request. ``signal`` is "traces", "metrics" or "logs"."""
        if self._stream is None:
            raise ValueError(f"{self.path}: request log is not open")
        kind = _KIND_OF.get(signal)
        if kind is None:
            raise ValueError(f"signal must be one of {SIGNALS}, not {signal!r}")
        received_at = int(received_at_unix_nano)
        if not 0 <= received_at <= _U64_MAX:
            raise ValueError(f"received_at_unix_nano out of range: {received_at}")
        if received_at < self._last_received_at:
            raise ValueError(
                f"{self.path}: records must be appended in received_at order "
                f"({received_at} after {self._last_received_at})"
            )
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError("payload must be bytes")
        payload = bytes(payload)
        if len(payload) > _MAX_PAYLOAD:
            raise ValueError(f"payload too large: {len(payload)} bytes")
        head = _RECORD_HEAD.pack(kind, received_at, len(payload))
        crc = zlib.crc32(payload, zlib.crc32(head))
        self._stream.write(head)
        self._stream.write(payload)
        self._stream.write(_CRC.pack(crc))
        self._last_received_at = received_at
        self.count += 1
        self.bytes_in += len(payload)

    def close(self) -> None:
        """Write the trailer, finish the zstd stream and publish the file."""
        if self._stream is None:
            return
        trailer = _TRAILER.pack(_KIND_END, self.count)
        self._stream.write(trailer)
        self._stream.write(_CRC.pack(zlib.crc32(trailer)))
        self._stream.close()  # ends the (single) zstd frame
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._stream = None
        self._file = None
        os.replace(self._tmp_path, self.path)

    def abort(self) -> None:
        """Discard a log being written (its temporary file is removed)."""
        try:
            if self._stream is not None:
                self._stream.close()
        except Exception:  # noqa: BLE001 - best effort while failing
            pass
        if self._file is not None and not self._file.closed:
            self._file.close()
        self._stream = None
        self._file = None
        try:
            os.unlink(self._tmp_path)
        except FileNotFoundError:
            pass


class _Body:
    """Incremental zstd decompression of the body with exact-size reads."""

    _CHUNK = 1 << 16

    def __init__(self, f: BinaryIO, path: str) -> None:
        self._f = f
        self._path = path
        self._dobj = zstandard.ZstdDecompressor().decompressobj()
        self._buf = bytearray()
        self._pos = 0
        self._file_eof = False
        self.offset = 0  # bytes of decompressed body handed out so far

    def _fill(self, index: int, what: str) -> bool:
        if self._file_eof:
            return False
        if self._dobj.eof:
            return False
        chunk = self._f.read(self._CHUNK)
        if not chunk:
            self._file_eof = True
            return False
        try:
            out = self._dobj.decompress(chunk)
        except zstandard.ZstdError as exc:
            raise ValueError(
                f"{self._path}: corrupt compressed body at record {index} ({what}): {exc}"
            ) from exc
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += out
        return True

    def read(self, n: int, index: int, what: str) -> bytes:
        while len(self._buf) - self._pos < n:
            if not self._fill(index, what):
                raise ValueError(
                    f"{self._path}: truncated request log: end of data inside record {index} ({what})"
                )
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        self.offset += n
        return out

    def check_end(self) -> None:
        """After the trailer: the zstd frame must be complete and nothing may follow."""
        if len(self._buf) - self._pos:
            raise ValueError(f"{self._path}: unexpected data after the trailer")
        while not self._dobj.eof:
            if not self._fill(-1, "end of frame"):
                raise ValueError(f"{self._path}: truncated request log: compressed frame is incomplete")
            if len(self._buf) - self._pos:
                raise ValueError(f"{self._path}: unexpected data after the trailer")
        if self._dobj.unused_data or self._f.read(1):
            raise ValueError(f"{self._path}: unexpected bytes after the compressed body")


class DamagedLogError(ValueError):
    """A request log is damaged part-way; every record before ``index`` was read intact.

    ``index`` is the damaged record's position (0-based), ``offset`` the byte
    where it starts in the decompressed body.
    """

    def __init__(self, message: str, index: int, offset: int) -> None:
        super().__init__(message)
        self.index = index
        self.offset = offset


class RequestLogReader:
    """The records of one request log, in file (= received_at) order, with how far it has got.

    Usage::

        with RequestLogReader("fleet.otlp.zst") as log:   # ValueError at once if not a request log
            for record in log:
                ...
                log.bytes_read / log.size              # progress through the (compressed) file

    The header is checked when the reader is made, so a caller can refuse a
    file that is not a request log before it creates anything. A defect
    further in raises :class:`DamagedLogError` after every intact record
    before it has been yielded.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.records_read = 0
        self._f: BinaryIO | None = open(self.path, "rb")
        try:
            self.size = os.fstat(self._f.fileno()).st_size
            self._check_header(self._f.read(_HEADER.size))
        except BaseException:
            self.close()
            raise
        self._body = _Body(self._f, self.path)
        self._last_received_at = -1
        self._done = False

    def _check_header(self, header: bytes) -> None:
        path = self.path
        if len(header) < _HEADER.size:
            raise ValueError(f"{path}: not a request log (file shorter than its header)")
        magic, version, flags, _reserved = _HEADER.unpack(header)
        if magic != MAGIC:
            raise ValueError(f"{path}: not a request log (bad magic {magic!r})")
        if version != VERSION:
            raise ValueError(f"{path}: unsupported request log version {version} (expected {VERSION})")
        if flags != FLAG_ZSTD:
            raise ValueError(f"{path}: unsupported request log flags {flags:#x}")

    @property
    def bytes_read(self) -> int:
        """Bytes of the file consumed so far (the body is read in 64 KiB chunks)."""
        return self._f.tell() if self._f is not None else self.size

    def __enter__(self) -> RequestLogReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __iter__(self) -> RequestLogReader:
        return self

    def __next__(self) -> RequestRecord:
        if self._done or self._f is None:
            raise StopIteration
        index, offset = self.records_read, self._body.offset
        try:
            record = self._next_record(index)
        except ValueError as exc:
            self._done = True
            self.close()
            raise DamagedLogError(
                f"{exc} (the damage starts at byte {offset} of the decompressed body; "
                f"the {index} records before it are intact)", index, offset) from None
        if record is None:
            self._done = True
            self.close()
            raise StopIteration
        self.records_read += 1
        return record

    def _next_record(self, index: int) -> RequestRecord | None:
        """The next record, or None after a valid trailer; ValueError on any defect."""
        path, body = self.path, self._body
        kind_byte = body.read(1, index, "record kind")
        kind = kind_byte[0]
        if kind == _KIND_END:
            rest = body.read(_TRAILER.size - 1 + _CRC.size, index, "trailer")
            trailer = kind_byte + rest[: _TRAILER.size - 1]
            (crc,) = _CRC.unpack(rest[_TRAILER.size - 1 :])
            if zlib.crc32(trailer) != crc:
                raise ValueError(f"{path}: corrupt trailer (checksum mismatch)")
            _, count = _TRAILER.unpack(trailer)
            if count != index:
                raise ValueError(f"{path}: trailer says {count} records, file holds {index}")
            body.check_end()
            return None
        signal = _SIGNAL_OF.get(kind)
        if signal is None:
            raise ValueError(f"{path}: corrupt record {index}: unknown kind {kind}")
        head = kind_byte + body.read(_RECORD_HEAD.size - 1, index, "record header")
        _, received_at, length = _RECORD_HEAD.unpack(head)
        if length > _MAX_PAYLOAD:
            raise ValueError(f"{path}: corrupt record {index}: implausible length {length}")
        payload = body.read(length, index, "payload") if length else b""
        (crc,) = _CRC.unpack(body.read(_CRC.size, index, "checksum"))
        if zlib.crc32(payload, zlib.crc32(head)) != crc:
            raise ValueError(f"{path}: corrupt record {index}: checksum mismatch")
        if received_at < self._last_received_at:
            raise ValueError(f"{path}: record {index} is out of received_at order")
        self._last_received_at = received_at
        return RequestRecord(signal, received_at, payload)


def read_request_log(path: str | os.PathLike[str]) -> RequestLogReader:
    """The records of a request log in file (= received_at) order (see :class:`RequestLogReader`).

    Raises ``ValueError`` at once on a wrong magic, an unsupported version
    or a file shorter than its header, and :class:`DamagedLogError` (a
    ``ValueError``) on a bad checksum, records out of order or a truncated
    file, after yielding every record before the defect: a caller that must
    be all-or-nothing should consume the whole iterator before committing.
    """
    return RequestLogReader(path)
