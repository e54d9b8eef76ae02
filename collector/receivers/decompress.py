"""Bounded decompression of request bodies (gzip, deflate, zstd).

The limit applies to the *decompressed* size: a 100 KB gzip bomb that would
expand to gigabytes stops at ``limit + 1`` bytes and raises
:class:`BodyTooLarge`, so it costs at most ``limit`` bytes of memory::

    body = decompress(raw, "gzip", limit=32 << 20)

A body that is not valid in the named encoding (or truncated) raises
:class:`BadEncoding`; an encoding we do not support raises
:class:`UnsupportedEncoding`.
"""

from __future__ import annotations

import io
import zlib

import zstandard


class BodyTooLarge(Exception):
    """The body, before or after decompression, exceeds the configured cap."""

    def __init__(self, limit: int, stage: str) -> None:
        super().__init__(f"request body exceeds {limit} bytes {stage}")
        self.limit = limit
        self.stage = stage


class BadEncoding(ValueError):
    """The body is not valid in its declared Content-Encoding."""


class UnsupportedEncoding(ValueError):
    """A Content-Encoding other than identity, gzip, deflate or zstd."""


SUPPORTED_ENCODINGS = ("identity", "gzip", "deflate", "zstd")


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    """zlib-family decompression of one or more concatenated members, capped at ``limit``."""
    out = bytearray()
    data = body
    while True:
        inflater = zlib.decompressobj(wbits)
        out += inflater.decompress(data, limit + 1 - len(out))
        if len(out) > limit or (inflater.unconsumed_tail and len(out) >= limit):
            raise BodyTooLarge(limit, "after decompression")
        if not inflater.eof:
            raise BadEncoding("compressed body is truncated")
        data = inflater.unused_data
        if not data.strip(b"\x00"):
            return bytes(out)


def _unzstd(body: bytes, limit: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
    out = reader.read(limit + 1)
    if len(out) > limit:
        raise BodyTooLarge(limit, "after decompression")
    # stream_reader stops quietly at a truncated frame; a second, now bounded,
    # pass with decompressobj tells a complete stream from a cut one.
    data = body
    while data:
        decoder = zstandard.ZstdDecompressor().decompressobj()
        decoder.decompress(data)
        if not decoder.eof:
            raise BadEncoding("zstd body is truncated")
        data = decoder.unused_data
    return out


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Return the decompressed body, at most ``limit`` bytes long."""
    name = (encoding or "identity").strip().lower()
    if len(body) > limit:
        raise BodyTooLarge(limit, "on the wire")
    try:
        if name in ("", "identity"):
            return body
        if name in ("gzip", "x-gzip"):
            return _inflate(body, 16 + zlib.MAX_WBITS, limit)
        if name == "deflate":
            # RFC 9110 "deflate" is zlib-wrapped, but many clients send raw deflate.
            try:
                return _inflate(body, zlib.MAX_WBITS, limit)
            except zlib.error:
                return _inflate(body, -zlib.MAX_WBITS, limit)
        if name == "zstd":
            return _unzstd(body, limit)
    except zlib.error as exc:
        raise BadEncoding(f"body is not valid {name}: {exc}") from exc
    except zstandard.ZstdError as exc:
        raise BadEncoding(f"body is not valid zstd: {exc}") from exc
    raise UnsupportedEncoding(
        f"unsupported Content-Encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
    )
