"""Differential tests: collector.decoding._speedups (C) against decode_traces_python (upb).

Both decoders must return equal dicts, or both raise ValueError, for every
input. Besides hand-written cases with exact expected values, a seeded
wire-level generator builds requests and re-encodes each one with noise that
must not change its meaning (unknown fields, overlong varints, reordered
fields, singular sub-messages split into merged occurrences): all four
results must be equal.

The C extension is built in place when missing or older than its source.
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.c_extension import load_speedups  # noqa: E402

_speedups = load_speedups()[0]  # some tests call its private helpers directly

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import (  # noqa: E402
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status  # noqa: E402

import pyarrow as pa  # noqa: E402

from bench.otlp_shapes import realistic_trace_request  # noqa: E402
from collector.decoding import arrow_batches, trace_decode  # noqa: E402
from collector.decoding.arrow_batches import TableBuilder, wrap_column  # noqa: E402
from collector.store.schema import arrow_schema  # noqa: E402
from collector.decoding.trace_decode import decode_traces_python  # noqa: E402
from tests.protobuf_wire import (  # noqa: E402
    B,
    D,
    M,
    RES_KEYS,
    TRICKY,
    V,
    encode,
    gen_attrs,
    gen_request,
    gen_span,
    ld,
    tag,
    unknown_field,
)


def both(c_decode, data: bytes):
    """Decode with both; equal dicts (returned) or both ValueError (returns None)."""
    py_exc = c_exc = None
    try:
        py = decode_traces_python(data)
    except ValueError as exc:
        py_exc = exc
    try:
        c = c_decode(data)
    except ValueError as exc:
        c_exc = exc
    assert (py_exc is None) == (c_exc is None), f"python: {py_exc!r}  C: {c_exc!r}  data: {data[:80].hex()}"
    if py_exc is not None:
        return None
    if py != c:
        diff = {k: (py[k], c.get(k)) for k in py if py[k] != c.get(k)}
        raise AssertionError(f"results differ: {str(diff)[:3000]}")
    return py


def ok(c_decode, data: bytes) -> dict:
    out = both(c_decode, data)
    assert out is not None, "both decoders raised on a valid request"
    check_layout(out)
    return out


def decoded(c_decode, data: bytes) -> dict:
    """ok(), with every nullable column as a list of values (the pre-Arrow representation)."""
    return lists(ok(c_decode, data))


def bad(c_decode, data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_traces_python(data)
    with pytest.raises(ValueError):
        c_decode(data)


def u64s(buf: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(buf) // 8}Q", buf))


# ---------------------------------------------------------------- the Arrow buffer contract

FIXED = {"trace_id_hi": 8, "trace_id_lo": 8, "span_id": 8, "parent_span_id": 8, "start_time": 8, "duration_ns": 8,
         "kind": 1, "status_code": 1, "flags": 4, "dropped_attributes_count": 4, "dropped_events_count": 4,
         "dropped_links_count": 4}  # fmt: skip
FLOATS = {"prediction_score", "prediction_value", "label_value"}
BOOLS = {"cold_start"}
TEXT = {"name", "trace_state", "status_message", "scope_name", "scope_version", "resource_attributes",
        "scope_attributes", "attributes", "events", "links", "service_name", "device_id", "site", "region",
        "device_class", "firmware_version", "model_name", "model_version", "inference_mode", "request_id",
        "prediction_label", "label"}  # fmt: skip
#: resource and scope columns: one entry per run (a scope's accepted spans), not per row
SHARED = {"scope_name", "scope_version", "resource_attributes", "scope_attributes", "service_name", "device_id",
          "site", "region", "device_class", "firmware_version"}  # fmt: skip


def runs(out: dict) -> list[int]:
    return list(struct.unpack(f"<{len(out['shared_runs']) // 4}i", out["shared_runs"]))


def entries(out: dict, name: str) -> int:
    """Values a column holds: one per run for the shared columns, one per row for the others."""
    return len(runs(out)) if name in SHARED else out["count"]


def bit(bitmap: bytes | None, i: int) -> bool:
    return bitmap is None or bool(bitmap[i >> 3] >> (i & 7) & 1)


def check_layout(out: dict, only: str | None = None) -> None:
    """Every column (or only one) has the documented Arrow layout (sizes, offsets, bitmaps, zeroed null rows)."""
    if only is None:
        assert set(out) == ({"count", "rejected", "reject_reasons", "first_error", "shared_runs"} | set(FIXED) | FLOATS
                            | BOOLS | TEXT)  # fmt: skip
        for name, size in FIXED.items():
            assert type(out[name]) is bytes and len(out[name]) == out["count"] * size, name
        assert type(out["shared_runs"]) is bytes and all(k > 0 for k in runs(out)) and sum(runs(out)) == out["count"]
    for name in [only] if only else FLOATS | BOOLS | TEXT:
        n = entries(out, name)
        value = out[name]
        assert type(value) is tuple and len(value) == (3 if name in TEXT else 2), name
        assert all(type(b) is bytes for b in value[:-1]), name
        validity = value[-1]
        if validity is not None:
            assert type(validity) is bytes and len(validity) == (n + 7) // 8, name
            assert not any(validity[-1] >> k & 1 for k in range(n % 8 or 8, 8)), f"{name}: padding bits set"
            assert not all(bit(validity, i) for i in range(n)), f"{name}: a validity bitmap without nulls"
        if name in TEXT:
            offsets, data, _ = value
            assert len(offsets) == 4 * (n + 1), name
            offs = struct.unpack(f"<{n + 1}i", offsets)
            assert offs[0] == 0 and offs[-1] == len(data), name
            assert all(a <= b for a, b in zip(offs, offs[1:])), name
            assert all(offs[i] == offs[i + 1] for i in range(n) if not bit(validity, i)), f"{name}: text in a null row"
            data.decode("utf-8")
        elif name in FLOATS:
            values = value[0]
            assert len(values) == 8 * n, name
            assert all(values[8 * i:8 * i + 8] == bytes(8) for i in range(n) if not bit(validity, i)), name
        else:
            values = value[0]
            assert len(values) == (n + 7) // 8, name
            assert not any(bit(values, i) for i in range(n, len(values) * 8)), f"{name}: padding bits set"
            assert not any(bit(values, i) for i in range(n) if not bit(validity, i)), f"{name}: true in a null row"


def column(out: dict, name: str) -> list:
    """The values of a nullable column, one per row: str / float / bool, None for null."""
    n, value = entries(out, name), out[name]
    validity = value[-1]
    if name in TEXT:
        offs = struct.unpack(f"<{n + 1}i", value[0])
        texts = [value[1][offs[i]:offs[i + 1]].decode() if bit(validity, i) else None for i in range(n)]
        return [text for text, k in zip(texts, runs(out)) for _ in range(k)] if name in SHARED else texts
    if name in FLOATS:
        xs = struct.unpack(f"<{n}d", value[0])
        return [xs[i] if bit(validity, i) else None for i in range(n)]
    return [bit(value[0], i) if bit(validity, i) else None for i in range(n)]


def lists(out: dict) -> dict:
    return {name: column(out, name) if name in TEXT | FLOATS | BOOLS else value for name, value in out.items()}


# ---------------------------------------------------------------- builders

TID = bytes(range(1, 17))
SID = bytes(range(1, 9))


def av(value) -> AnyValue:
    if isinstance(value, AnyValue):
        return value
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[av(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=av(v)) for k, v in value.items()]))
    return AnyValue(string_value=value)


def kvs(pairs) -> list[KeyValue]:
    return [KeyValue(key=k, value=av(v)) for k, v in pairs]


def span(**kw) -> Span:
    base = dict(trace_id=TID, span_id=SID, name="op", start_time_unix_nano=1_000, end_time_unix_nano=3_500)
    base.update(kw)
    return Span(**base)


def request(spans, resource_attrs=(), scope=None) -> bytes:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=kvs(resource_attrs)),
                scope_spans=[ScopeSpans(scope=scope or InstrumentationScope(), spans=spans)],
            )
        ]
    ).SerializeToString()


def attrs_of(c_decode, *pairs, **span_kw) -> str | None:
    out = decoded(c_decode, request([span(attributes=kvs(pairs), **span_kw)]))
    return out["attributes"][0]


# ---------------------------------------------------------------- (a) realistic


@pytest.mark.parametrize("seed,device", [(0, 0), (1, 7), (2, 42)])
def test_realistic_requests_equal(c_decode, seed, device):
    data = realistic_trace_request(512, seed=seed, device=device)
    out = decoded(c_decode, data)
    req = ExportTraceServiceRequest.FromString(data)
    spans = list(req.resource_spans[0].scope_spans[0].spans)
    assert out["count"] == 512 and out["rejected"] == 0 and out["first_error"] is None
    hi, lo = u64s(out["trace_id_hi"]), u64s(out["trace_id_lo"])
    assert [f"{h:016x}{l:016x}" for h, l in zip(hi, lo)] == [s.trace_id.hex() for s in spans]
    assert [f"{v:016x}" for v in u64s(out["span_id"])] == [s.span_id.hex() for s in spans]
    assert u64s(out["parent_span_id"]) == [0] * 512
    assert u64s(out["start_time"]) == [s.start_time_unix_nano for s in spans]
    assert u64s(out["duration_ns"]) == [s.end_time_unix_nano - s.start_time_unix_nano for s in spans]
    assert set(out["kind"]) == {1} and set(out["status_code"]) <= {0, 2}
    assert out["service_name"][0] == "edge-inference" and out["device_id"][0] == f"dev-{device:05d}"
    assert all(isinstance(x, float) for x in out["prediction_score"])
    assert all(isinstance(x, bool) for x in out["cold_start"])
    assert out["request_id"] == [s.attributes[3].value.string_value for s in spans]
    first = json.loads(out["attributes"][0])
    assert list(first) == ["ml.feature.brightness", "ml.feature.temperature", "ml.feature.motion", "ml.feature.scene"]
    assert json.loads(out["resource_attributes"][0])["host.name"] == f"edge-{device:05d}.fleet.local"
    errors = [i for i, s in enumerate(spans) if s.status.code == 2]
    assert errors and all(out["status_message"][i] for i in errors)


def test_columns_wrap_in_pyarrow_without_copy(c_decode):
    out = c_decode(realistic_trace_request(64))
    arr = pa.Array.from_buffers(pa.uint64(), 64, [None, pa.py_buffer(out["span_id"])])
    assert arr.to_pylist() == u64s(out["span_id"])
    kinds = pa.Array.from_buffers(pa.uint8(), 64, [None, pa.py_buffer(out["kind"])])
    assert kinds.to_pylist() == [1] * 64
    offsets, data, validity = out["status_message"]
    messages = wrap_column(pa.string(), 64, out["status_message"])
    assert messages.buffers()[1].address == pa.py_buffer(offsets).address  # the decoder's bytes, not a copy
    assert messages.buffers()[2].address == pa.py_buffer(data).address
    assert messages.to_pylist() == column(out, "status_message") and messages.null_count > 0


def test_dispatch_and_pure_python_switch(c_decode):
    assert trace_decode.SPEEDUPS_AVAILABLE is True
    data = realistic_trace_request(8)
    assert trace_decode.decode_traces(data) == decode_traces_python(data)
    code = ("import collector.decoding.trace_decode as t, collector.decoding.arrow_batches as a; "
            "print(t.SPEEDUPS_AVAILABLE, a._concat_column)")
    env = dict(os.environ, FLEETWATCH_PURE_PYTHON="1", PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert res.stdout.strip() == "False None", res.stderr


def test_accepts_bytes_like_and_rejects_str(c_decode):
    data = realistic_trace_request(4)
    assert c_decode(bytearray(data)) == c_decode(memoryview(data)) == decode_traces_python(data)
    with pytest.raises(TypeError):
        c_decode("not bytes")


# ---------------------------------------------------------------- (b) edge cases


def test_every_anyvalue_type(c_decode):
    text = attrs_of(
        c_decode,
        ("s", "x"), ("t", True), ("f", False), ("i", 0), ("neg", -1), ("max", 2**63 - 1), ("min", -(2**63)),
        ("d1", 1.0), ("big", 1e16), ("mid", 1e15), ("small", 1e-5), ("tenth", 0.1), ("nz", -0.0), ("tiny", 5e-324),
        ("nan", math.nan), ("inf", math.inf), ("ninf", -math.inf), ("b", b"\x00\xff"), ("b0", b""),
        ("arr", [1, "a", [True, None]]), ("kvl", {"k": {"x": None}, "e": []}), ("none", None),
    )  # fmt: skip
    assert text == (
        '{"s":"x","t":true,"f":false,"i":0,"neg":-1,"max":9223372036854775807,"min":-9223372036854775808,'
        '"d1":1.0,"big":1e+16,"mid":1000000000000000.0,"small":1e-05,"tenth":0.1,"nz":-0.0,"tiny":5e-324,'
        '"nan":"NaN","inf":"Infinity","ninf":"-Infinity","b":"AP8=","b0":"",'
        '"arr":[1,"a",[true,null]],"kvl":{"k":{"x":null},"e":[]},"none":null}'
    )


def test_string_value_strindex_is_null(c_decode):
    assert attrs_of(c_decode, ("k", AnyValue(string_value_strindex=3))) == '{"k":null}'


@pytest.mark.parametrize(
    "text",
    ["", "plain", 'q"uote', "back\\slash", "\n\r\t\b\f", "\x00\x01\x1f\x7f", "é日本😀", "\u2028\u2029", "x" * 100 + '"'],
)
def test_string_escaping_matches_json_dumps(c_decode, text):
    out = decoded(c_decode, request([span(name=text, attributes=kvs([(text, text)]))]))
    esc = json.dumps(text, ensure_ascii=False)
    assert out["attributes"][0] == "{" + esc + ":" + esc + "}"
    assert out["name"][0] == (text or None)


def test_missing_fields_give_none_and_zero(c_decode):
    data = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span(name="")])])]
    ).SerializeToString()
    out = decoded(c_decode, data)
    assert out["count"] == 1
    for col in ("name", "trace_state", "status_message", "scope_name", "scope_version", "resource_attributes",
                "scope_attributes", "attributes", "events", "links", "service_name", "model_name",
                "prediction_score", "cold_start"):  # fmt: skip
        assert out[col] == [None], col
    assert out["flags"] == bytes(4) and out["status_code"] == b"\x00"


def test_ids_times_kind_status_flags(c_decode):
    s = span(
        parent_span_id=bytes([0xFF] * 8), kind=-1, flags=0xFFFFFFFF, trace_state="a=b",
        status=Status(code=2, message="boom"), dropped_attributes_count=1, dropped_events_count=2,
        dropped_links_count=3, start_time_unix_nano=2**63 + 5, end_time_unix_nano=2**64 - 1,
    )  # fmt: skip
    out = decoded(c_decode, request([s]))
    assert u64s(out["trace_id_hi"]) == [0x0102030405060708] and u64s(out["trace_id_lo"]) == [0x090A0B0C0D0E0F10]
    assert u64s(out["span_id"]) == [0x0102030405060708] and u64s(out["parent_span_id"]) == [2**64 - 1]
    assert u64s(out["start_time"]) == [2**63 + 5] and u64s(out["duration_ns"]) == [2**63 - 6]
    assert out["kind"] == b"\xff" and out["status_code"] == b"\x02" and out["flags"] == b"\xff" * 4
    assert [out["trace_state"], out["status_message"]] == [["a=b"], ["boom"]]
    assert (out["dropped_attributes_count"], out["dropped_events_count"], out["dropped_links_count"]) == (
        struct.pack("<I", 1), struct.pack("<I", 2), struct.pack("<I", 3))  # fmt: skip


def test_events_and_links_json(c_decode):
    s = span(
        events=[
            Span.Event(time_unix_nano=5, name="e1"),
            Span.Event(time_unix_nano=2**64 - 1, name='q"', attributes=kvs([("a", 1)]), dropped_attributes_count=2),
        ],
        links=[
            Span.Link(trace_id=TID, span_id=SID),
            Span.Link(trace_id=b"\xab", span_id=b"", trace_state="k=v", attributes=kvs([("x", [1.5])]), flags=257,
                      dropped_attributes_count=4),
        ],
    )  # fmt: skip
    out = decoded(c_decode, request([s]))
    assert out["events"][0] == (
        '[{"time_unix_nano":5,"name":"e1"},'
        '{"time_unix_nano":18446744073709551615,"name":"q\\"","attributes":{"a":1},"dropped_attributes_count":2}]'
    )
    assert out["links"][0] == (
        '[{"trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708"},'
        '{"trace_id":"ab","span_id":"","trace_state":"k=v","attributes":{"x":[1.5]},"flags":257,'
        '"dropped_attributes_count":4}]'
    )


def test_multiple_resources_and_scopes(c_decode):
    def rs(name, scopes):
        return ResourceSpans(
            resource=Resource(attributes=kvs([("service.name", name), ("other", 1)])),
            scope_spans=[
                ScopeSpans(scope=InstrumentationScope(name=sn, version="v" + sn, attributes=kvs([("sa", sn)])),
                           spans=[span(name=f"{name}/{sn}/{i}") for i in range(n)])
                for sn, n in scopes
            ],
        )  # fmt: skip

    data = ExportTraceServiceRequest(
        resource_spans=[rs("a", [("s1", 2), ("s2", 0), ("s3", 1)]), rs("b", []), rs("c", [("s4", 3)])]
    ).SerializeToString()
    out = decoded(c_decode, data)
    assert out["count"] == 6
    assert out["name"] == ["a/s1/0", "a/s1/1", "a/s3/0", "c/s4/0", "c/s4/1", "c/s4/2"]
    assert out["service_name"] == ["a", "a", "a", "c", "c", "c"]
    assert out["scope_name"] == ["s1", "s1", "s3", "s4", "s4", "s4"]
    assert out["scope_version"] == ["vs1", "vs1", "vs3", "vs4", "vs4", "vs4"]
    assert out["scope_attributes"] == ['{"sa":"s1"}'] * 2 + ['{"sa":"s3"}'] + ['{"sa":"s4"}'] * 3
    assert out["resource_attributes"] == ['{"other":1}'] * 6


def test_promotion_types_and_duplicates(c_decode):
    out = decoded(
        c_decode,
        request(
            [
                span(attributes=kvs([
                    ("ml.model.name", "m1"), ("ml.prediction.score", 0.25), ("ml.prediction.value", 7),
                    ("ml.inference.cold_start", True), ("ml.label", ""), ("ml.label.value", -2.5),
                ])),
                span(attributes=kvs([
                    ("ml.model.name", 3), ("ml.prediction.score", "high"), ("ml.inference.cold_start", 1),
                    ("ml.request.id", "r1"), ("ml.request.id", "r2"), ("ml.prediction.label", "cat"),
                    ("ml.prediction.label", 9), ("ml.model.version", [1]),
                ])),
            ],
            resource_attrs=[("service.name", "svc"), ("device.id", 5), ("fleet.site", "s"), ("fleet.site", "t")],
        ),
    )  # fmt: skip
    assert out["model_name"] == ["m1", None]
    assert out["prediction_score"] == [0.25, None] and out["prediction_value"] == [7.0, None]
    assert isinstance(out["prediction_value"][0], float)
    assert out["cold_start"] == [True, None] and out["label"] == ["", None] and out["label_value"] == [-2.5, None]
    assert out["request_id"] == [None, "r2"] and out["prediction_label"] == [None, None]
    assert out["attributes"] == [
        None,
        '{"ml.model.name":3,"ml.prediction.score":"high","ml.inference.cold_start":1,"ml.request.id":"r1",'
        '"ml.prediction.label":"cat","ml.prediction.label":9,"ml.model.version":[1]}',
    ]
    assert out["service_name"] == ["svc"] * 2 and out["device_id"] == [None] * 2 and out["site"] == ["t"] * 2
    assert out["resource_attributes"] == ['{"device.id":5,"fleet.site":"s"}'] * 2


# ---------------------------------------------------------------- (c) rejections


@pytest.mark.parametrize(
    "kw,reason,detail",
    [
        (dict(trace_id=b""), "invalid_trace_id", "trace_id must be 16 bytes, got 0"),
        (dict(trace_id=bytes(17)), "invalid_trace_id", "trace_id must be 16 bytes, got 17"),
        (dict(trace_id=bytes(16)), "invalid_trace_id", "trace_id must not be all zero"),
        (dict(span_id=b"\x01" * 7), "invalid_span_id", "span_id must be 8 bytes, got 7"),
        (dict(span_id=bytes(8)), "invalid_span_id", "span_id must not be all zero"),
        (dict(parent_span_id=b"\x01" * 4), "invalid_parent_span_id", "parent_span_id must be empty or 8 bytes, got 4"),
        (dict(start_time_unix_nano=0), "missing_timestamp", "start_time_unix_nano is 0"),
        (dict(end_time_unix_nano=0), "missing_timestamp", "end_time_unix_nano is 0"),
        (dict(end_time_unix_nano=999), "end_before_start", "end_time_unix_nano 999 is before start_time_unix_nano 1000"),
        (dict(trace_id=b"", span_id=b"", start_time_unix_nano=0), "invalid_trace_id", "trace_id must be 16 bytes, got 0"),
    ],
)
def test_rejected_span_reasons(c_decode, kw, reason, detail):
    scopes = [ScopeSpans(spans=[span(name="keep")]), ScopeSpans(spans=[span(), span(), span(), span(name="bad", **kw)])]
    data = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=scopes)]).SerializeToString()
    out = decoded(c_decode, data)
    assert out["count"] == 4 and out["rejected"] == 1 and out["reject_reasons"] == {reason: 1}
    assert out["first_error"] == f"span 3 in resource_spans[0].scope_spans[1]: {detail}"
    assert "bad" not in out["name"] and len(out["span_id"]) == 32


def test_rejections_counted_per_reason(c_decode):
    spans = [span(trace_id=b""), span(span_id=b""), span(trace_id=b""), span(), span(end_time_unix_nano=1)]
    out = decoded(c_decode, request(spans))
    assert out["count"] == 1 and out["rejected"] == 4
    assert out["reject_reasons"] == {"invalid_trace_id": 2, "invalid_span_id": 1, "end_before_start": 1}
    assert out["first_error"].startswith("span 0 in resource_spans[0].scope_spans[0]: trace_id")


def test_generator_encoding_matches_protobuf():
    rng = random.Random(7)
    for _ in range(50):
        data = encode(gen_request(rng))
        assert ExportTraceServiceRequest.FromString(data).SerializeToString() is not None


def test_random_requests_with_noise_are_equal(c_decode):
    rng = random.Random(20261123)
    seen_reject = seen_nested = 0
    for i in range(400):
        fields = gen_request(rng)
        clean = encode(fields)
        out = ok(c_decode, clean)
        seen_reject += out["rejected"] > 0
        seen_nested += any(a and ("[" in a or "{" in a[1:]) for a in column(out, "attributes"))
        for _ in range(2):
            noisy = encode(fields, random.Random(rng.getrandbits(32)))
            assert ok(c_decode, noisy) == out, f"request {i}: noise changed the result"
    assert seen_reject > 20 and seen_nested > 20  # the generator reaches the interesting paths


def test_unknown_fields_in_every_message_are_skipped(c_decode):
    rng = random.Random(3)
    fields = gen_request(rng)
    while not fields:
        fields = gen_request(rng)

    def salt(fs, sub_rng):  # an unknown field in every message, every time
        out = []
        for f in fs:
            if f[0] == "m":
                out.append(M(f[1], salt(f[2], sub_rng), f[3], f[4]))
            else:
                out.append(f)
        return out + [("raw", None, unknown_field(sub_rng))]

    def enc(fs):
        parts = []
        for f in fs:
            if f[0] == "raw":
                parts.append(f[2])
            elif f[0] == "m":
                parts.append(ld(f[1], enc(f[2])))
            else:
                parts.append(encode([f]))
        return b"".join(parts)

    assert ok(c_decode, enc(salt(fields, random.Random(4)))) == ok(c_decode, encode(fields))


# ---------------------------------------------------------------- oneof, merge, nesting


def test_merged_and_overridden_submessages(c_decode):
    kv_fields = [
        B(1, "arr"), M(2, [M(5, [M(1, [V(3, 1)])]), M(5, [M(1, [V(3, 2)])])], shuffle=False),  # merged array
    ]
    kv2 = [B(1, "dropped"), M(2, [M(5, [M(1, [V(3, 1)])]), B(1, "s"), M(5, [M(1, [V(3, 2)])])], shuffle=False)]
    kv3 = [B(1, "val2x"), M(2, [B(1, "x")]), M(2, [V(3, 7)])]  # KeyValue.value sent twice -> int wins
    sp = [B(1, TID), B(2, SID), D(7, 1), D(8, 2), M(9, kv_fields), M(9, kv2), M(9, kv3),
          M(15, [B(2, "m")]), M(15, [V(3, 2)])]  # fmt: skip
    res = [M(1, [B(1, "service.name"), M(2, [B(1, "a")])]), M(1, [B(1, "device.id"), M(2, [B(1, "d")])])]
    data = encode([M(1, [M(2, [M(2, sp), M(1, [B(1, "sc")])]), M(1, res[:1]), M(1, res[1:])])])
    out = decoded(c_decode, data)
    assert out["attributes"] == ['{"arr":[1,2],"dropped":[2],"val2x":7}']
    assert out["status_message"] == ["m"] and out["status_code"] == b"\x02"
    assert out["service_name"] == ["a"] and out["device_id"] == ["d"] and out["scope_name"] == ["sc"]


def _nested_value(levels: int, kvlist: bool = False, inner: list | None = None) -> list:
    value = inner or [V(3, 1)]
    for _ in range(levels):
        value = [M(6, [M(1, [B(1, "k"), M(2, value)])])] if kvlist else [M(5, [M(1, value)])]
    return value


def _with_value(value, where="span") -> bytes:
    kv = M(9 if where == "span" else 1, [B(1, "deep"), M(2, value)])
    if where == "span":
        return encode([M(1, [M(2, [M(2, [B(1, TID), B(2, SID), D(7, 1), D(8, 2), kv])])])])
    return encode([M(1, [M(1, [kv])])])


@pytest.mark.parametrize("kvlist", [False, True])
@pytest.mark.parametrize("where", ["span", "resource"])
def test_value_nesting_limit(c_decode, kvlist, where):
    out = ok(c_decode, _with_value(_nested_value(32 if not kvlist else 30, kvlist), where))
    assert out is not None
    if not kvlist:
        bad(c_decode, _with_value(_nested_value(33, kvlist), where))
    bad(c_decode, _with_value(_nested_value(60, kvlist), where))


@pytest.mark.parametrize("kvlist", [False, True])
@pytest.mark.parametrize("where", ["span", "resource"])
def test_wrong_wire_type_deep_in_a_value(c_decode, kvlist, where):
    # upb's unknown-field discard stops 64 messages below the request (about 29 arrays under a
    # span): the reference decoder must still refuse a known field with a wrong wire type there
    deepest = 32 if not kvlist else 30
    for levels in (0, 5, 23, 24, 25, 28, 29, 30, deepest):
        bad(c_decode, _with_value(_nested_value(levels, kvlist, inner=[V(1, 5)]), where))  # string_value as varint
        ok(c_decode, _with_value(_nested_value(levels, kvlist, inner=[V(77, 5), V(3, 1)]), where))  # unknown field


def test_nesting_limit_applies_to_rejected_spans_too(c_decode):
    kv = M(9, [B(1, "deep"), M(2, _nested_value(33))])
    bad(c_decode, encode([M(1, [M(2, [M(2, [B(1, b""), kv])])])]))


def test_dropped_oneof_member_is_validated_but_not_limited(c_decode):
    deep = _nested_value(40)  # 40 arrays, then overridden by a string: upb parses it, then drops it
    out = decoded(c_decode, _with_value(deep + [B(1, "kept")]))
    assert out["attributes"] == ['{"deep":"kept"}']
    bad(c_decode, _with_value([M(5, [M(1, [B(1, b"\xff")])]), B(1, "kept")]))  # bad UTF-8 inside it


def test_dropped_oneof_member_keeps_upb_rules(c_decode):
    # a known field with the wrong wire type inside a dropped member is just an unknown field for upb
    out = decoded(c_decode, _with_value([M(5, [M(1, [V(1, 5)])]), B(1, "kept")]))
    assert out["attributes"] == ['{"deep":"kept"}']
    bad(c_decode, _with_value([B(1, "first"), M(5, [M(1, [V(1, 5)])])]))  # in the kept member it is an error
    # upb's limit of 100 nested messages still holds there: the span's AnyValue is at depth 5
    assert decoded(c_decode, _with_value(_nested_value(47) + [B(1, "kept")]))["attributes"] == ['{"deep":"kept"}']
    bad(c_decode, _with_value(_nested_value(48) + [B(1, "kept")]))


def test_group_nesting_limit(c_decode):
    def groups(n):
        return b"".join(tag(99, 3) for _ in range(n)) + b"".join(tag(99, 4) for _ in range(n))

    ok(c_decode, groups(100))  # at the request level: 100 nested groups is upb's limit
    bad(c_decode, groups(101))
    ok(c_decode, ld(1, groups(99)))
    bad(c_decode, ld(1, groups(100)))


# ---------------------------------------------------------------- (d) malformed input


def test_wire_errors_raise_value_error(c_decode):
    good = encode([M(1, [M(2, [M(2, [B(1, TID), B(2, SID), D(7, 1), D(8, 2)])])])])
    ok(c_decode, good)
    cases = [
        b"\x0a\x05abc",  # length past the end
        b"\x0a" + b"\xff" * 10 + b"\x01",  # length varint too long
        b"\x0a\x81\x80\x80\x80\x80\x00" + b"x",  # length: 6-byte varint
        b"\x88\x80\x80\x80\x80\x00\x01",  # tag: 6 bytes
        b"\xf8\xff\xff\xff\x1f\x01",  # tag above 2^32
        b"\x00\x01",  # field number 0
        tag(9, 0) + b"\xff" * 10 + b"\x01",  # varint of 11 bytes
        tag(9, 0) + b"\xff\xff",  # truncated varint
        tag(9, 1) + b"1234567",  # truncated fixed64
        tag(9, 5) + b"123",  # truncated fixed32
        tag(9, 6),
        tag(9, 7),  # invalid wire types
        tag(9, 4),  # end group outside a group
        tag(9, 3) + tag(10, 4),  # mismatched end group
        tag(9, 3) + tag(1, 0) + b"\x01",  # unterminated group
        ld(1, ld(2, ld(2, ld(5, b"\xc3\x28")))),  # invalid UTF-8 in span name
        ld(1, ld(2, ld(2, ld(3, b"\xed\xa0\x80")))),  # surrogate in trace_state
        ld(1, ld(1, ld(1, ld(1, b"\xf4\x90\x80\x80")))),  # > U+10FFFF in a resource key
        ld(1, ld(3, b"\xff")),  # bad UTF-8 in schema_url
        ld(1, ld(1, ld(3, ld(2, b"\xff")))),  # bad UTF-8 in an EntityRef
        tag(1, 0) + b"\x01",  # known field, wrong wire type (request)
        ld(1, tag(1, 5) + b"abcd"),  # ResourceSpans.resource as fixed32
        ld(1, ld(2, ld(2, tag(7, 0) + b"\x05"))),  # Span.start_time as varint
        ld(1, ld(2, ld(2, ld(15, tag(3, 2) + b"\x00")))),  # Status.code as bytes
        ld(1, ld(2, ld(2, ld(9, ld(2, tag(4, 0) + b"\x01"))))),  # AnyValue.double as varint
        ld(1, ld(2, ld(2, ld(9, tag(1, 3) + tag(1, 4))))),  # KeyValue.key as a group
        ld(1, ld(2, ld(2, ld(5, b"\x00")))) + b"\x0a",  # trailing truncated field
        ld(1, ld(2, ld(2, ld(9, ld(2, tag(5, 2) + b"\x03" + tag(2, 5) + b"\x00\x00\x00"))))),  # unterminated inner
    ]
    for data in cases:
        bad(c_decode, data)


def test_truncation_at_every_offset(c_decode):
    rng = random.Random(11)
    fields = [M(1, [M(1, gen_attrs(rng, 1, RES_KEYS, 3)), M(2, [M(1, [B(1, "s")]), M(2, gen_span(rng)), M(2, gen_span(rng))])])]
    data = encode(fields)
    assert len(data) > 100
    raised = 0
    for i in range(len(data)):
        raised += both(c_decode, data[:i]) is None
    assert raised > len(data) // 2


def test_random_bytes(c_decode):
    rng = random.Random(5)
    for n in range(2000):
        both(c_decode, rng.randbytes(rng.randint(0, 64)))
    for n in range(300):  # random bytes inside a plausible frame
        both(c_decode, ld(1, ld(2, ld(2, rng.randbytes(rng.randint(0, 40))))))


def test_mutated_requests(c_decode):
    rng = random.Random(9)
    for _ in range(400):
        data = bytearray(encode(gen_request(rng), random.Random(rng.getrandbits(32))))
        if not data:
            continue
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.5:
                data[pos] = rng.getrandbits(8)
            elif op < 0.7:
                data.insert(pos, rng.getrandbits(8))
            elif op < 0.9 and len(data) > 1:
                del data[pos]
            else:
                data[pos] ^= 1 << rng.randrange(8)
        both(c_decode, bytes(data))


# ---------------------------------------------------------------- doubles


def test_double_text_matches_repr(c_decode):
    rng = random.Random(13)
    values = [math.ldexp(1.0, e) for e in range(-1074, 1024)] + [float(k) for k in range(-1000, 1000)]
    values += [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(100_000)]
    values += [rng.random() * 10 ** rng.randint(-30, 30) for _ in range(50_000)]
    for x in values:
        if math.isfinite(x):
            assert _speedups._repr_double(x) == repr(x)
    assert [_speedups._repr_double(x) for x in (math.nan, math.inf, -math.inf)] == ['"NaN"', '"Infinity"', '"-Infinity"']


def test_bytes_base64(c_decode):
    for n in range(10):
        blob = bytes(range(250, 250 - n, -1))
        expected = '{"b":"' + base64.b64encode(blob).decode() + '"}'
        assert attrs_of(c_decode, ("b", blob)) == expected


# ---------------------------------------------------------------- Arrow buffers: nulls, NaN, size limit


def test_no_accepted_spans_gives_empty_buffers(c_decode):
    for data in (b"", request([]), request([span(trace_id=b""), span(span_id=bytes(8))])):
        out = ok(c_decode, data)
        assert out["count"] == 0
        for name in TEXT:
            assert out[name] == (bytes(4), b"", None), name
        for name in FLOATS | BOOLS:
            assert out[name] == (b"", None), name


def test_null_rows_and_bitmaps_across_byte_boundaries(c_decode):
    # 19 spans: every third has a status message, cold_start cycles true / false / missing
    spans = []
    for i in range(19):
        attrs = [("ml.inference.cold_start", bool(i % 3 == 0))] if i % 3 != 2 else []
        attrs += [("ml.prediction.score", float(i))] if i % 2 else []
        spans.append(span(name=f"s{i}" if i % 5 else "", status=Status(message="m" if i % 3 == 0 else ""),
                          attributes=kvs(attrs)))  # fmt: skip
    out = decoded(c_decode, request(spans))
    assert out["name"] == [f"s{i}" if i % 5 else None for i in range(19)]
    assert out["status_message"] == ["m" if i % 3 == 0 else None for i in range(19)]
    assert out["cold_start"] == [(i % 3 == 0) if i % 3 != 2 else None for i in range(19)]
    assert out["prediction_score"] == [float(i) if i % 2 else None for i in range(19)]


def test_float_columns_keep_the_bits_sent(c_decode):
    bits = [0x7FF0000000000001, 0x7FF8000000000000, 0xFFF8000000000000, 0x7FF8DEADBEEF0001, 0x8000000000000000,
            0x7FF0000000000000, 0x0000000000000001]  # signalling NaN, NaNs with sign / payload, -0.0, inf, subnormal
    for b in bits:
        value = M(2, [D(4, b)])
        kv = M(9, [B(1, "ml.prediction.score"), value])
        data = encode([M(1, [M(2, [M(2, [B(1, TID), B(2, SID), D(7, 1), D(8, 2), kv])])])])
        out = ok(c_decode, data)
        assert out["prediction_score"] == (struct.pack("<Q", b), None), hex(b)
    out = ok(c_decode, request([span(attributes=kvs([("ml.label.value", 2**63 - 1), ("ml.prediction.value", -3)]))]))
    assert out["label_value"][0] == struct.pack("<d", float(2**63 - 1))  # int_value: the nearest double
    assert out["prediction_value"][0] == struct.pack("<d", -3.0)


@pytest.fixture
def text_limit(c_decode, monkeypatch):
    """set(limit): both decoders raise ValueError above ``limit`` bytes of text per request."""
    previous = _speedups._set_max_text_bytes(2**31 - 1)
    assert previous == 2**31 - 1 == trace_decode.MAX_TEXT_BYTES  # the default: int32 offsets

    def set_limit(limit: int) -> None:
        _speedups._set_max_text_bytes(limit)
        monkeypatch.setattr(trace_decode, "MAX_TEXT_BYTES", limit)

    yield set_limit
    _speedups._set_max_text_bytes(previous)


def text_bytes(out: dict) -> int:
    return sum(len(out[name][1]) for name in TEXT)


def test_text_limit_per_request(c_decode, text_limit):
    rng = random.Random(17)
    requests = [realistic_trace_request(40, seed=3)] + [encode(gen_request(rng)) for _ in range(60)]
    checked = 0
    for data in requests:
        total = text_bytes(ok(c_decode, data))
        if not total:
            continue
        text_limit(total)
        assert text_bytes(ok(c_decode, data)) == total  # exactly at the limit: fine
        text_limit(total - 1)
        bad(c_decode, data)
        text_limit(2**31 - 1)
        checked += 1
    assert checked > 20


def test_resource_text_is_held_once_per_run(c_decode, text_limit):
    # a small request whose resource text applies to every span: held (and counted) once, not per row
    big = "x" * 5000
    spans = [span(name="n")] * 100 + [span(trace_id=b"")] * 50  # rejected spans take no room
    data = request(spans, resource_attrs=[("service.name", big), ("host", big)])
    assert len(data) < 20_000
    out = decoded(c_decode, data)
    assert out["count"] == 100 and out["service_name"] == [big] * 100 and runs(ok(c_decode, data)) == [100]
    total = 100 * 1 + 5000 + len('{"host":""}') + 5000
    assert text_bytes(ok(c_decode, data)) == total
    text_limit(total)
    ok(c_decode, data)
    text_limit(total - 1)
    with pytest.raises(ValueError, match="too large"):
        c_decode(data)
    with pytest.raises(ValueError, match="too large"):
        decode_traces_python(data)


def test_set_max_text_bytes_checks_its_argument(c_decode):
    for value in (-1, 2**31):
        with pytest.raises(ValueError):
            _speedups._set_max_text_bytes(value)
    assert _speedups._set_max_text_bytes(2**31 - 1) == 2**31 - 1


# ---------------------------------------------------------------- concatenating decoded columns


def _random_chunk(rng, kind: int, n: int) -> tuple:
    nulls = rng.random() < 0.6
    valid = [not nulls or rng.random() < 0.6 for _ in range(n)]
    validity = trace_decode._bitmap(valid) if not all(valid) else None
    if kind == 0:
        texts = [rng.choice(TRICKY) if ok else "" for ok in valid]
        lengths = [len(t.encode()) for t in texts]
        offsets = struct.pack(f"<{n + 1}i", 0, *[sum(lengths[:k + 1]) for k in range(n)])
        return offsets, "".join(texts).encode(), validity
    if kind == 1:
        return struct.pack(f"<{n}d", *[rng.uniform(-1, 1) if ok else 0.0 for ok in valid]), validity
    return trace_decode._bitmap([ok and rng.random() < 0.5 for ok in valid]), validity


@pytest.mark.parametrize("kind,name", [(0, "name"), (1, "prediction_score"), (2, "cold_start")])
def test_concat_column_matches_a_reference(c_decode, kind, name):
    rng = random.Random(23 + kind)
    for _ in range(300):
        counts = [rng.choice([0, 1, 3, 7, 8, 9, 15, 16, 17, rng.randint(0, 100)]) for _ in range(rng.randint(0, 6))]
        chunks = [_random_chunk(rng, kind, n) for n in counts]
        got = _speedups.concat_column(kind, chunks, counts)
        rows = sum(counts)
        want = [v for chunk, n in zip(chunks, counts) for v in column({"count": n, name: chunk}, name)]
        assert column({"count": rows, name: got}, name) == want
        check_layout({"count": rows, name: got}, only=name)
        assert _same(wrap_column(arrow_schema("span_rows").field(name).type, rows, got).to_pylist(), want)


def test_concat_column_rejects_bad_input(c_decode):
    text = (struct.pack("<3i", 0, 1, 3), b"abc", None)
    cases = [
        (0, [text], [3]),  # wrong count
        (0, [text], [2, 1]),  # counts and chunks differ
        (0, [(struct.pack("<3i", 0, 2, 1), b"ab", None)], [2]),  # decreasing
        (0, [(struct.pack("<3i", 1, 2, 3), b"abc", None)], [2]),  # not from 0
        (0, [(struct.pack("<3i", 0, 1, 2), b"abc", None)], [2]),  # does not end at len(data)
        (0, [(struct.pack("<3i", 0, 1, 3), b"abc")], [2]),  # not a text tuple
        (0, [(struct.pack("<3i", 0, 1, 3), b"abc", b"\x01\x00")], [2]),  # validity of the wrong size
        (1, [(bytes(8), None)], [2]),
        (2, [(b"\x00\x00", None)], [8]),
        (2, [(None, None)], [1]),
        (3, [], []),
        (1, [(bytes(8), None)], [-1]),
    ]
    for kind, chunks, counts in cases:
        with pytest.raises(ValueError):
            _speedups.concat_column(kind, chunks, counts)
    with pytest.raises(OverflowError):
        _speedups.concat_column(0, [text, text], [2, 2], 5)
    assert _speedups.concat_column(0, [text, text], [2, 2], 6)[1] == b"abcabc"
    assert _speedups.concat_column(0, [], []) == (bytes(4), b"", None)
    assert _speedups.concat_column(2, [], []) == (b"", None)


# ---------------------------------------------------------------- TableBuilder over decoded buffers


def _py(value: AnyValue):
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


def expected_columns(data: bytes) -> dict[str, list]:
    """Columns of a request whose spans are all valid, from the protobuf classes (no duplicate keys)."""
    promoted = {**trace_decode.RESOURCE_PROMOTED, **{k: c for k, (c, _) in trace_decode.SPAN_PROMOTED.items()}}
    kinds = {c: kind for c, kind in trace_decode.SPAN_PROMOTED.values()}
    cols: dict[str, list] = {}

    def put(name, value):
        cols.setdefault(name, []).append(value)

    def rest_json(attributes):
        rest = {kv.key: _py(kv.value) for kv in attributes if kv.key not in promoted}
        return rest or None

    for rs in ExportTraceServiceRequest.FromString(data).resource_spans:
        res = {kv.key: kv.value for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for sp in ss.spans:
                attrs = {kv.key: kv.value for kv in sp.attributes}
                put("trace_id_hi", int.from_bytes(sp.trace_id[:8], "big"))
                put("trace_id_lo", int.from_bytes(sp.trace_id[8:], "big"))
                put("span_id", int.from_bytes(sp.span_id, "big"))
                put("parent_span_id", int.from_bytes(sp.parent_span_id or bytes(8), "big"))
                put("start_time", sp.start_time_unix_nano)
                put("duration_ns", sp.end_time_unix_nano - sp.start_time_unix_nano)
                for name in ("kind", "flags", "dropped_attributes_count", "dropped_events_count",
                             "dropped_links_count"):  # fmt: skip
                    put(name, getattr(sp, name))
                put("name", sp.name or None)
                put("trace_state", sp.trace_state or None)
                put("status_code", sp.status.code)
                put("status_message", sp.status.message or None)
                put("scope_name", ss.scope.name or None)
                put("scope_version", ss.scope.version or None)
                for key, name in trace_decode.RESOURCE_PROMOTED.items():
                    value = res.get(key)
                    put(name, value.string_value if value is not None and value.HasField("string_value") else None)
                for key, (name, kind) in trace_decode.SPAN_PROMOTED.items():
                    value = attrs.get(key)
                    which = value.WhichOneof("value") if value is not None else None
                    if kinds[name] == "str":
                        put(name, value.string_value if which == "string_value" else None)
                    elif kinds[name] == "float":
                        put(name, float(_py(value)) if which in ("double_value", "int_value") else None)
                    else:
                        put(name, value.bool_value if which == "bool_value" else None)
                put("resource_attributes", rest_json(rs.resource.attributes))
                put("scope_attributes", rest_json(ss.scope.attributes))
                put("attributes", rest_json(sp.attributes))
                put("events", [{"time_unix_nano": e.time_unix_nano, "name": e.name} for e in sp.events] or None)
                put("links", [{"trace_id": li.trace_id.hex(), "span_id": li.span_id.hex()} for li in sp.links] or None)
    return cols


def handmade_request(n_a: int, n_b: int) -> bytes:
    """Two resources and three scopes; nulls, empty and non-ASCII strings, ints as floats, events and links."""
    def sp(i: int) -> Span:
        attrs = [("ml.model.name", "m" * (i % 4)), ("ml.feature.x", i)] if i % 3 else [("ml.label.value", i)]
        if i % 4 == 1:
            attrs += [("ml.inference.cold_start", i % 8 == 1), ("ml.prediction.score", 0.5 + i)]
        return Span(
            trace_id=bytes([i + 1]) * 16, span_id=bytes([i + 2]) * 8,
            parent_span_id=bytes([i + 3]) * 8 if i % 2 else b"",
            name=["", "inference", "日本😀", 'q"\n'][i % 4], kind=i % 6, trace_state="k=v" if i % 7 == 0 else "",
            start_time_unix_nano=10**18 + i, end_time_unix_nano=10**18 + 2 * i + 1, flags=i,
            status=Status(code=i % 3, message="boom é" if i % 5 == 0 else ""), attributes=kvs(attrs),
            events=[Span.Event(time_unix_nano=i, name="ev")] if i % 6 == 0 else [],
            links=[Span.Link(trace_id=TID, span_id=SID)] if i % 9 == 0 else [], dropped_links_count=i % 2,
        )  # fmt: skip

    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=kvs([("service.name", "svc-a"), ("device.id", "dev-1"), ("host", "h")])),
                scope_spans=[
                    ScopeSpans(scope=InstrumentationScope(name="sc", version="1.0", attributes=kvs([("k", 1)])),
                               spans=[sp(i) for i in range(n_a)]),
                    ScopeSpans(spans=[sp(i) for i in range(n_a, n_a + 2)]),
                ],
            ),  # fmt: skip
            ResourceSpans(scope_spans=[ScopeSpans(spans=[sp(i) for i in range(100, 100 + n_b)])]),
        ]
    ).SerializeToString()


def _same(a: list, b: list) -> bool:
    """Equal lists, floats compared by their bits (NaN too)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, float) and isinstance(y, float):
            if struct.pack("<d", x) != struct.pack("<d", y):
                return False
        elif x != y or type(x) is not type(y):
            return False
    return True


def test_decoded_buffers_hold_the_protobuf_values(c_decode):
    for data in (realistic_trace_request(37, seed=5, device=3), handmade_request(13, 6), handmade_request(1, 0)):
        out = ok(c_decode, data)
        want = expected_columns(data)
        assert out["count"] == len(want["name"])
        for field in arrow_schema("span_rows"):
            name = field.name
            if name in ("received_at", "gateway_id"):
                continue
            if name in FIXED:
                got = pa.Array.from_buffers(field.type, out["count"], [None, pa.py_buffer(out[name])])
                got = got.cast(pa.int64()).to_pylist() if name == "start_time" else got.to_pylist()
            else:
                got = wrap_column(field.type, entries(out, name), out[name]).to_pylist()
                if name in SHARED:
                    got = [value for value, k in zip(got, runs(out)) for _ in range(k)]
                assert _same(got, column(out, name)), name  # pyarrow reads the buffers as the tests do
            if name in ("resource_attributes", "scope_attributes", "attributes", "events", "links"):
                got = [None if text is None else json.loads(text) for text in got]
                keep = {"events": ("time_unix_nano", "name"), "links": ("trace_id", "span_id")}.get(name)
                if keep:  # the fields expected_columns() writes
                    got = [None if items is None else [{k: x[k] for k in keep} for x in items] for items in got]
            assert _same(got, want[name]), name


def _list_table(outs: list[dict], receipts: list[tuple[int, str]]) -> pa.Table:
    """The table as building from per-value lists with pa.array gives it (the representation before buffers)."""
    schema = arrow_schema("span_rows")
    values: dict[str, list] = {field.name: [] for field in schema}
    for out, (received, gateway) in zip(outs, receipts):
        n = out["count"]
        for field in schema:
            name = field.name
            if name == "received_at":
                values[name] += [received] * n
            elif name == "gateway_id":
                values[name] += [gateway] * n
            elif name in FIXED:
                code = {8: "Q", 4: "I", 1: "B"}[FIXED[name]]
                if name in ("start_time", "duration_ns"):  # stored as int64: the same bits read signed
                    code = "q"
                values[name] += list(struct.unpack(f"<{n}{code}", out[name]))
            else:
                values[name] += column(out, name)
    arrays = [pa.array(values[field.name], field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def decoded_schema(schema: pa.Schema) -> pa.Schema:
    """The schema with each dictionary column as its value type (what DuckDB stores)."""
    return pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema])


def assert_same_table(got: pa.Table, want: pa.Table) -> None:
    assert decoded_schema(got.schema) == want.schema and got.num_rows == want.num_rows
    for name in want.column_names:
        g = got[name]
        if pa.types.is_dictionary(g.type):  # each chunk has its own dictionary
            g = pa.chunked_array([chunk.dictionary_decode() for chunk in g.chunks], g.type.value_type)
        g, w = g.combine_chunks(), want[name].combine_chunks()
        assert g.null_count == w.null_count and g.is_null().equals(w.is_null()), name
        if pa.types.is_floating(w.type):  # NaN != NaN: compare the bits
            g, w = g.view(pa.int64()), w.view(pa.int64())
        assert g.equals(w), name


@pytest.mark.parametrize("path", ["c", "fallback", "chunked", "chunked-fallback"])
def test_table_builder_matches_building_from_lists(c_decode, monkeypatch, path):
    if "fallback" in path:  # no C extension: wrap each request, pa.concat_arrays
        monkeypatch.setattr(arrow_batches, "_concat_column", None)
    if "chunked" in path:  # more text than one array holds: a chunked column
        monkeypatch.setattr(arrow_batches, "_MAX_ARRAY_TEXT", 3000)
    rng = random.Random(41)
    payloads = [realistic_trace_request(37, seed=1), handmade_request(13, 6), request([]),
                handmade_request(1, 0), realistic_trace_request(64, seed=2, device=9)]  # fmt: skip
    payloads += [encode(gen_request(rng)) for _ in range(40)]
    outs = [ok(c_decode, p) for p in payloads]
    receipts = [(1_700_000_000_000_000_000 + i, "gw-a" if i % 7 < 4 else "gw-b") for i in range(len(outs))]
    builder = TableBuilder("span_rows")
    for out, (received, gateway) in zip(outs, receipts):
        builder.add(out, out["count"], received, gateway)
    assert builder.rows == sum(out["count"] for out in outs) > 150
    table = builder.build()
    want = _list_table(outs, receipts)
    assert_same_table(table, want)
    import duckdb  # DuckDB reads the dictionary columns (chunked ones, nulls) as the plain strings

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.register("got", table)
    shared = ", ".join(sorted(arrow_batches.SHARED_COLUMNS))
    assert con.execute(f"SELECT {shared} FROM got").fetchall() == list(zip(*(want[c].to_pylist() for c in
                                                                               sorted(arrow_batches.SHARED_COLUMNS))))
    con.close()
    if "chunked" in path:
        assert table["attributes"].num_chunks > 1
    else:
        assert all(table[name].num_chunks == 1 for name in table.column_names)


def test_resource_columns_are_dictionaries_over_runs(c_decode):
    builder = TableBuilder("span_rows")
    for data in (handmade_request(13, 6), realistic_trace_request(64, seed=2)):
        out = c_decode(data)
        builder.add(out, out["count"], 1, "gw")
    service = builder.build()["service_name"]
    assert service.num_chunks == 1 and pa.types.is_dictionary(service.type)
    runs_seen = service.chunk(0).dictionary.to_pylist()  # one value per run, not per row
    assert runs_seen == ["svc-a", "svc-a", None, "edge-inference"]
    assert service.chunk(0).dictionary_decode().to_pylist() == ["svc-a"] * 15 + [None] * 6 + ["edge-inference"] * 64


def test_table_builder_empty_and_metric_tables(c_decode):
    empty = TableBuilder("span_rows")
    empty.add(c_decode(request([])), 0, 1, "gw")
    table = empty.build()
    assert table.num_rows == 0 and decoded_schema(table.schema) == arrow_schema("span_rows")
    metrics = TableBuilder("metric_points")  # metric columns still arrive as lists
    columns = {field.name: [None, None] for field in arrow_schema("metric_points")}
    columns.update(metric_name=["a", "b"], time=[1, 2], value=[0.5, math.nan], metric_type=["gauge", "sum"])
    metrics.add(columns, 2, 7, "gw")
    table = metrics.build()
    assert table["metric_name"].to_pylist() == ["a", "b"] and table["gateway_id"].to_pylist() == ["gw", "gw"]
    assert table["received_at"].cast(pa.int64()).to_pylist() == [7, 7] and math.isnan(table["value"][1].as_py())
