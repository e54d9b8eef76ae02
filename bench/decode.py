"""Trace decoding speed: C decoder vs the pure-Python reference, one core.

    python bench/decode.py           # ~3 s per figure, best of 5 rounds
    python bench/decode.py --quick   # short run

Decodes realistic inference requests (bench/otlp_shapes.py: 512 spans, 11
attributes each) in a single thread and prints spans/s for each decoder and
their ratio, and for the C decoder followed by what the collector does with
the result: collecting the requests' columns in a TableBuilder and building
one Arrow table of all of them (Arrow on the system allocator, as in the
collector). The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from bench.otlp_shapes import realistic_trace_request  # noqa: E402
from collector.decoding.arrow_batches import TableBuilder  # noqa: E402
from collector.decoding.trace_decode import decode_traces_python  # noqa: E402

try:
    from collector.decoding._speedups import decode_traces as decode_traces_c
except ImportError:  # not built: python setup.py build_ext --inplace
    decode_traces_c = None


def decode_all(decode, payloads: list[bytes]) -> None:
    for payload in payloads:
        decode(payload)


def decode_and_build(decode, payloads: list[bytes]) -> pa.Table:
    """Decode the requests and build one span_rows table of them, as a collector write batch does."""
    builder = TableBuilder("span_rows")
    for payload in payloads:
        columns = decode(payload)
        builder.add(columns, columns["count"], 1_767_225_600_000_000_000, "bench")
    return builder.build()


def spans_per_second(run, payloads: list[bytes], spans: int, seconds: float, rounds: int) -> float:
    """Best rate of ``run(payloads)`` (``spans`` spans) over ``rounds`` rounds of at least ``seconds / rounds``."""
    best = 0.0
    for _ in range(rounds):
        done = 0
        start = time.perf_counter()
        while True:
            run(payloads)
            done += spans
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / rounds:
                break
        best = max(best, done / elapsed)
    return best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run (about 1 s in all)")
    parser.add_argument("--requests", type=int, default=8, help="distinct requests (devices) to cycle through")
    parser.add_argument("--spans", type=int, default=512, help="spans per request")
    args = parser.parse_args(argv)
    seconds, rounds = (0.4, 2) if args.quick else (3.0, 5)
    pa.set_memory_pool(pa.system_memory_pool())  # as the collector runs (collector/server.py)

    payloads = [realistic_trace_request(args.spans, seed=i, device=i) for i in range(args.requests)]
    spans = args.spans * len(payloads)
    size = sum(map(len, payloads))
    print(f"{len(payloads)} requests x {args.spans} spans, {size / spans:.0f} bytes/span of OTLP protobuf")

    equal = None
    c_rate = build_rate = None
    if decode_traces_c is not None:
        equal = all(decode_traces_c(p) == decode_traces_python(p) for p in payloads)
        print(f"C and Python outputs equal: {equal}")
        c_rate = spans_per_second(lambda ps: decode_all(decode_traces_c, ps), payloads, spans, seconds, rounds)
        print(f"C decoder:      {c_rate:12,.0f} spans/s  ({c_rate * size / spans / 1e6:6.1f} MB/s)")
        build_rate = spans_per_second(lambda ps: decode_and_build(decode_traces_c, ps), payloads, spans, seconds,
                                      rounds)
        print(f"C + Arrow table:{build_rate:12,.0f} spans/s  ({1e6 / build_rate:6.2f} us/span decode + TableBuilder)")
    else:
        print("C decoder:      not built (python setup.py build_ext --inplace)")
    py_rate = spans_per_second(lambda ps: decode_all(decode_traces_python, ps), payloads[:2], args.spans * 2,
                               seconds, rounds)
    print(f"Python decoder: {py_rate:12,.0f} spans/s  ({py_rate * size / spans / 1e6:6.1f} MB/s)")
    ratio = c_rate / py_rate if c_rate else None
    if ratio:
        print(f"C / Python:     {ratio:12.1f}x")
    result = {
        "benchmark": "trace_decode",
        "quick": args.quick,
        "requests": len(payloads),
        "spans_per_request": args.spans,
        "bytes_per_span": round(size / spans, 1),
        "c_spans_per_s": round(c_rate) if c_rate else None,
        "c_decode_and_table_spans_per_s": round(build_rate) if build_rate else None,
        "python_spans_per_s": round(py_rate),
        "ratio_c_over_python": round(ratio, 2) if ratio else None,
        "outputs_equal": equal,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
