"""The decoded-size estimate: C and Python agree, it covers what the decoders build, and broken framing raises.

The pipeline admits a request by this estimate before decoding it, so it
must see the rows a resource or scope is repeated into (a 1 MiB service.name
over 1,900 spans is 1,900 MiB of rows), agree between the two
implementations, and never call a body broken that the decoders accept.
"""

from __future__ import annotations

import random

import pytest

from bench.otlp_shapes import realistic_trace_request
from collector.decoding.decoded_size import ROW_OVERHEAD, decoded_size_python
from collector.decoding.metric_decode import decode_metrics
from collector.decoding.trace_decode import decode_traces_python
from bench.otlp_shapes import heavy_resource_request
from tests.otlp_requests import gauge_request, histogram_request
from tests.protobuf_wire import encode, gen_request, ld, tag, varint

_SIGNAL_CODES = {"traces": 0, "metrics": 1}


@pytest.fixture(scope="module")
def c_size(speedups):
    return lambda signal, data: speedups.decoded_size(data, _SIGNAL_CODES[signal])


def both(c_size, signal: str, data: bytes) -> int | None:
    """Both estimates, equal (returned), or both ValueError (None)."""
    results = []
    for size in (decoded_size_python, c_size):
        try:
            results.append(size(signal, data))
        except ValueError:
            results.append(None)
    assert results[0] == results[1], f"python {results[0]} != C {results[1]} for {data[:60].hex()}"
    return results[0]


def text_bytes(decoded: dict) -> int:
    """Bytes of text the decoder built (the data buffer of every string column)."""
    return sum(len(v[1]) for v in decoded.values() if isinstance(v, tuple) and len(v) == 3)


def test_a_repeated_resource_counts_once_per_row(c_size):
    data = heavy_resource_request(1900)
    assert len(data) < 1.2 * (1 << 20)
    size = both(c_size, "traces", data)
    assert size > 1900 * (1 << 20)
    small = both(c_size, "traces", heavy_resource_request(1900, value_bytes=10))
    assert 1900 * ROW_OVERHEAD < small < 1900 * (ROW_OVERHEAD + 200)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_estimate_covers_the_decoded_rows(c_size, seed):
    data = realistic_trace_request(512, seed=seed)
    size = both(c_size, "traces", data)
    decoded = decode_traces_python(data)
    assert text_bytes(decoded) + 100 * decoded["count"] <= size <= 3 * len(data) + 512 * ROW_OVERHEAD


def test_random_and_noisy_requests_agree(c_size):
    rng = random.Random(20261201)
    for _ in range(300):
        fields = gen_request(rng)
        for noise in (None, random.Random(rng.getrandbits(32))):  # unknown fields and groups, split messages
            data = encode(fields, noise)
            assert both(c_size, "traces", data) is not None


def test_metrics_points_carry_their_resource_scope_and_metric(c_size):
    for data, points in ((gauge_request(50), 50), (histogram_request(), 1)):
        size = both(c_size, "metrics", data)
        assert size >= points * ROW_OVERHEAD
        decoded = decode_metrics(data)
        assert decoded["count"] == points
    heavy = gauge_request(300, name="m" * 100_000)
    assert both(c_size, "metrics", heavy) > 300 * 100_000


BROKEN = [
    b"\x0a\x05abc",  # length past the end
    b"\x0a" + b"\xff" * 10 + b"\x01",  # length varint too long
    b"\x88\x80\x80\x80\x80\x00\x01",  # tag of 6 bytes
    b"\xf8\xff\xff\xff\x1f\x01",  # tag above 2^32
    b"\x00\x01",  # field number 0
    tag(9, 0) + b"\xff\xff",  # truncated varint
    tag(9, 1) + b"1234567",  # truncated fixed64
    tag(9, 6),  # invalid wire type
    tag(9, 4),  # end group outside a group
    tag(9, 3) + tag(10, 4),  # mismatched end group
    tag(9, 3) + tag(1, 0) + b"\x01",  # unterminated group
    ld(1, ld(2, ld(2, b"") + b"\x12\x05ab")),  # a span's length past its scope's end
]


@pytest.mark.parametrize("data", BROKEN, ids=range(len(BROKEN)))
def test_broken_framing_raises_and_the_decoder_agrees(c_size, data):
    assert both(c_size, "traces", data) is None
    with pytest.raises(ValueError):
        decode_traces_python(data)


@pytest.mark.parametrize("signal, good, decode", [
    ("traces", realistic_trace_request(4), decode_traces_python),
    ("metrics", gauge_request(3) + histogram_request(), decode_metrics),  # two requests in one body merge into one
])  # fmt: skip
def test_damaged_requests_agree_and_only_break_what_the_decoder_refuses(c_size, signal, good, decode):
    rng = random.Random(5)
    for _ in range(1500):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        data = bytes(data[: rng.randint(1, len(data))])
        if both(c_size, signal, data) is None:
            with pytest.raises(ValueError):
                decode(data)


def test_groups_nest_up_to_upbs_limit(c_size):
    def groups(n):
        return b"".join(tag(99, 3) for _ in range(n)) + b"".join(tag(99, 4) for _ in range(n))

    assert both(c_size, "traces", groups(100)) == 0
    assert both(c_size, "traces", groups(101)) is None
    assert both(c_size, "traces", ld(1, ld(2, ld(2, varint(0)) + groups(3)))) is not None
