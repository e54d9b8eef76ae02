"""Protobuf wire-level builder and a seeded generator of OTLP trace requests, for decoder tests.

A message is a list of fields built with ``V`` (varint), ``D`` (fixed64),
``F`` (fixed32), ``B`` (bytes or text) and ``M`` (sub-message); ``encode``
turns it into bytes, and with a ``random.Random`` adds noise that must not
change what a decoder reads (unknown fields and groups, overlong varints,
reordered fields, singular sub-messages split into merged occurrences)::

    from tests.protobuf_wire import B, M, encode, gen_request, ld, tag

    fields = gen_request(random.Random(1))
    plain, noisy = encode(fields), encode(fields, random.Random(2))  # same meaning
    truncated = tag(9, 0) + b"\xff"  # hand-made broken framing

Shared by tests/test_trace_decode.py and tests/test_decoded_size.py.
"""

from __future__ import annotations

import math
import random
import struct

from collector.decoding import trace_decode

# ---------------------------------------------------------------- wire-level builder


def varint(v: int, pad: int = 0) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v or pad:
            out.append(b | 0x80)
            if not v:
                pad -= 1
                while pad > 0:
                    out.append(0x80)
                    pad -= 1
                out.append(0)
                return bytes(out)
        else:
            out.append(b)
            return bytes(out)


def tag(fn: int, wt: int, pad: int = 0) -> bytes:
    return varint((fn << 3) | wt, pad)


def ld(fn: int, payload: bytes) -> bytes:
    return tag(fn, 2) + varint(len(payload)) + payload


# A message is a list of fields: ("v", fn, int) varint, ("d", fn, int) fixed64,
# ("f", fn, int) fixed32, ("b", fn, bytes) length-delimited, ("m", fn, fields,
# split_ok, shuffle_ok) sub-message. split_ok: singular sub-message, so sending
# it as two occurrences merges back to the same thing.
def V(fn, x):
    return ("v", fn, x)


def D(fn, x):
    return ("d", fn, x)


def F(fn, x):
    return ("f", fn, x)


def B(fn, x):
    return ("b", fn, x.encode() if isinstance(x, str) else x)


def M(fn, fields, split=False, shuffle=True):
    return ("m", fn, fields, split, shuffle)


def _stable_shuffle(rng, fields):
    order = list(range(len(fields)))
    rng.shuffle(order)
    by_fn: dict[int, list[int]] = {}
    for pos in sorted(range(len(fields)), key=lambda i: order[i]):
        by_fn.setdefault(fields[pos][1], []).append(pos)
    slots = sorted(range(len(fields)), key=lambda i: order[i])
    out = [None] * len(fields)
    queues = {fn: iter(sorted(ps)) for fn, ps in by_fn.items()}
    for new_pos, old_pos in enumerate(slots):
        out[new_pos] = fields[next(queues[fields[old_pos][1]])]
    return out


def unknown_field(rng, depth=0) -> bytes:
    fn = rng.choice([17, 20, 99, 1000, 2**29 - 1])
    wt = rng.choice([0, 1, 2, 5, 3] if depth < 2 else [0, 1, 2, 5])
    if wt == 0:
        return tag(fn, 0) + varint(rng.getrandbits(64))
    if wt == 1:
        return tag(fn, 1) + rng.randbytes(8)
    if wt == 5:
        return tag(fn, 5) + rng.randbytes(4)
    if wt == 2:
        return ld(fn, rng.randbytes(rng.randint(0, 6)))
    inner = b"".join(unknown_field(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    if rng.random() < 0.3:
        inner += tag(0, 0) + b"\x05"  # field 0 is fine inside a group
    return tag(fn, 3) + inner + tag(fn, 4)


def encode(fields, rng: random.Random | None = None, shuffle: bool = True) -> bytes:
    """Encode; with rng, add meaning-preserving noise."""
    if rng is not None and shuffle and rng.random() < 0.3:
        fields = _stable_shuffle(rng, fields)
    out = []

    def pad(limit):
        return rng.randint(1, limit) if rng is not None and rng.random() < 0.1 else 0

    for field in fields:
        if rng is not None and rng.random() < 0.1:
            out.append(unknown_field(rng))
        kind, fn = field[0], field[1]
        if kind == "v":
            out.append(tag(fn, 0, pad(2)) + varint(field[2], pad(3) if 0 <= field[2] < 2**49 else 0))
        elif kind == "d":
            out.append(tag(fn, 1, pad(2)) + struct.pack("<Q", field[2] & (2**64 - 1)))
        elif kind == "f":
            out.append(tag(fn, 5, pad(2)) + struct.pack("<I", field[2]))
        elif kind == "b":
            out.append(tag(fn, 2, pad(2)) + varint(len(field[2]), pad(2)) + field[2])
        else:
            _, _, sub, split, sub_shuffle = field
            parts = [sub]
            if rng is not None and split and rng.random() < 0.3:
                k = rng.randint(0, len(sub))
                parts = [sub[:k], sub[k:]]
            for part in parts:
                payload = encode(part, rng, sub_shuffle)
                out.append(tag(fn, 2, pad(2)) + varint(len(payload), pad(2)) + payload)
    if rng is not None and rng.random() < 0.1:
        out.append(unknown_field(rng))
    return b"".join(out)


# ---------------------------------------------------------------- random requests

TRICKY = ["", "a", 'q"', "\\", "\n\t\r\b\f", "\x00\x1f\x7f", "é", "日本語", "😀x", "\u2028", "k" * 45, "long " * 12]
SPAN_KEYS = [k for k in trace_decode.SPAN_PROMOTED] + ["ml.feature.x", "http.method", "", "ml.", "ml.model.nam"]
RES_KEYS = [k for k in trace_decode.RESOURCE_PROMOTED] + ["host.name", "telemetry.sdk.name", "x"]
DOUBLES = [0.0, -0.0, 1.0, 0.1, 1e16, 1e-5, 5e-324, 1.7976931348623157e308, math.nan, math.inf, -math.inf, 123.456]


def rand_str(rng) -> str:
    if rng.random() < 0.6:
        return rng.choice(TRICKY)
    cps = [rng.choice([rng.randint(0x20, 0x7E), rng.randint(0, 0x1F), rng.randint(0xA0, 0xD7FF), rng.randint(0x10000, 0x10FFFF)])
           for _ in range(rng.randint(0, 12))]  # fmt: skip
    return "".join(map(chr, cps))


def rand_double_bits(rng) -> int:
    if rng.random() < 0.5:
        return struct.unpack("<Q", struct.pack("<d", rng.choice(DOUBLES)))[0]
    if rng.random() < 0.5:
        return struct.unpack("<Q", struct.pack("<d", rng.uniform(-1e6, 1e6)))[0]
    return rng.getrandbits(64)


def rand_int(rng) -> int:
    return rng.choice([0, 1, -1, 2**63 - 1, -(2**63), rng.getrandbits(64), rng.randint(-1000, 1000)])


def gen_any(rng, depth: int):
    t = rng.choice(["str", "str", "bool", "int", "double", "double", "bytes", "array", "kvlist", "empty", "strindex"])
    if t in ("array", "kvlist") and depth >= 3:
        t = "int"
    if t == "str":
        fields = [B(1, rand_str(rng))]
    elif t == "bool":
        fields = [V(2, rng.choice([0, 1, 2]))]
    elif t == "int":
        fields = [V(3, rand_int(rng))]
    elif t == "double":
        fields = [D(4, rand_double_bits(rng))]
    elif t == "bytes":
        fields = [B(7, rng.randbytes(rng.randint(0, 7)))]
    elif t == "array":
        fields = [M(5, [M(1, gen_any(rng, depth + 1), shuffle=False) for _ in range(rng.randint(0, 3))], split=True)]
    elif t == "kvlist":
        fields = [M(6, [M(1, gen_kv(rng, depth + 1, SPAN_KEYS)) for _ in range(rng.randint(0, 3))], split=True)]
    elif t == "strindex":
        fields = [V(8, rng.randint(0, 5))]
    else:
        fields = []
    if rng.random() < 0.15:  # an earlier oneof member that upb drops
        dropped = rng.choice(
            [[B(1, rand_str(rng))], [V(3, 7)], [M(5, [M(1, [B(1, "gone")])])], [M(6, [M(1, [B(1, "k")])])]]
        )
        fields = dropped + fields
    return fields


def gen_kv(rng, depth: int, keys) -> list:
    fields = [B(1, rng.choice(keys) if rng.random() < 0.8 else rand_str(rng))]
    r = rng.random()
    if r < 0.05:
        pass  # no value
    elif r < 0.1:  # value sent twice: the AnyValues merge
        fields += [M(2, gen_any(rng, depth), shuffle=False), M(2, gen_any(rng, depth), shuffle=False)]
    else:
        fields.append(M(2, gen_any(rng, depth), split=True, shuffle=False))
    if rng.random() < 0.05:
        fields.insert(0, B(1, "first-key-loses"))
    if rng.random() < 0.05:
        fields.append(V(3, rng.randint(0, 9)))
    return fields


def gen_attrs(rng, fn: int, keys, n: int) -> list:
    return [M(fn, gen_kv(rng, 0, keys)) for _ in range(n)]


def rand_id(rng, size: int) -> bytes:
    r = rng.random()
    if r < 0.85:
        return rng.randbytes(size)
    return rng.choice([b"", bytes(size), rng.randbytes(size - 1), rng.randbytes(size + 1)])


def gen_span(rng) -> list:
    start = rng.choice([0, 1, 10**18, 2**63 + 1, rng.getrandbits(64)]) if rng.random() < 0.1 else 10**18 + rng.getrandbits(30)
    end = rng.choice([0, start - 1, start, start + rng.getrandbits(40)]) if rng.random() < 0.1 else start + rng.getrandbits(35)
    fields = [B(1, rand_id(rng, 16)), B(2, rand_id(rng, 8)), D(7, start), D(8, end)]
    opt = [
        (0.3, lambda: B(3, rand_str(rng))),
        (0.3, lambda: B(4, rand_id(rng, 8))),
        (0.9, lambda: B(5, rand_str(rng))),
        (0.7, lambda: V(6, rng.choice([0, 1, 2, 5, 300, -1]))),
        (0.2, lambda: V(10, rng.getrandbits(rng.choice([8, 32, 40])))),
        (0.2, lambda: V(12, rng.getrandbits(8))),
        (0.2, lambda: V(14, rng.getrandbits(8))),
        (0.3, lambda: M(15, [B(2, rand_str(rng)), V(3, rng.choice([0, 1, 2, 7, -1]))], split=True)),
        (0.3, lambda: F(16, rng.getrandbits(32))),
    ]
    fields += [make() for p, make in opt if rng.random() < p]
    fields += gen_attrs(rng, 9, SPAN_KEYS, rng.randint(0, 8))
    for _ in range(rng.choice([0, 0, 1, 2])):
        ev = [D(1, rng.getrandbits(64)), B(2, rand_str(rng))] + gen_attrs(rng, 3, SPAN_KEYS, rng.randint(0, 2))
        if rng.random() < 0.3:
            ev.append(V(4, rng.getrandbits(10)))
        fields.append(M(11, ev))
    for _ in range(rng.choice([0, 0, 1, 2])):
        link = [B(1, rand_id(rng, 16)), B(2, rand_id(rng, 8))] + gen_attrs(rng, 4, SPAN_KEYS, rng.randint(0, 2))
        link += [m for p, m in [(0.3, B(3, rand_str(rng))), (0.3, V(5, 3)), (0.3, F(6, rng.getrandbits(32)))] if rng.random() < p]
        fields.append(M(13, link))
    return fields


def gen_request(rng) -> list:
    rs_list = []
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        rs = []
        if rng.random() < 0.85:
            res = gen_attrs(rng, 1, RES_KEYS, rng.randint(0, 7))
            if rng.random() < 0.2:
                res.append(V(2, rng.getrandbits(8)))
            if rng.random() < 0.2:
                res.append(M(3, [B(1, "schema"), B(2, "device"), B(3, "device.id"), B(3, "x"), B(4, rand_str(rng))]))
            rs.append(M(1, res, split=True))
        for _ in range(rng.choice([0, 1, 1, 2])):
            ss = []
            if rng.random() < 0.7:
                scope = [B(1, rand_str(rng)), B(2, rand_str(rng))] + gen_attrs(rng, 3, SPAN_KEYS, rng.randint(0, 2))
                if rng.random() < 0.2:
                    scope.append(V(4, 1))
                ss.append(M(1, scope, split=True))
            ss += [M(2, gen_span(rng)) for _ in range(rng.randint(0, 5))]
            if rng.random() < 0.2:
                ss.append(B(3, "https://opentelemetry.io/schemas/1.26.0"))
            rs.append(M(2, ss))
        if rng.random() < 0.2:
            rs.append(B(3, rand_str(rng)))
        rs_list.append(M(1, rs))
    return rs_list
