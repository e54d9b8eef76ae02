"""Persistent queue speed: append with and without fsync, group commit, drain, start-up scan.

    python bench/queue_throughput.py            # about 3 s per measurement
    python bench/queue_throughput.py --quick    # short run
    python bench/queue_throughput.py --dir /var/lib/fleetwatch   # measure the disk the gateway uses

Appends 64 KB items of random bytes (compressed requests do not compress
further) to a fresh queue in a temporary directory: one item per
append_many (one write + one fdatasync each) and 16 per append_many (group
commit: one fdatasync for 16), each with fsync on and off. Then fills a
backlog, reopens it (open() reads and checksums every byte) and drains it
with peek(16 items) + ack (one head-file replace with two fsyncs per ack),
with fsync on and off.
fsync cost depends entirely on the disk: run it on the gateway's own.
The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from collector.forwarding.persistent_queue import PersistentQueue  # noqa: E402

ITEM = 64 << 10
META = b"x" * 64  # digests and a signal name, about this size


def filesystem(path: str) -> str:
    """The mount's file system type, from /proc/mounts where there is one."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    real = os.path.realpath(path)
    best = max((m for m in mounts if real == m[1] or real.startswith(m[1].rstrip("/") + "/")),
               key=lambda m: len(m[1]), default=None)
    return best[2] if best else "unknown"


def append_rate(base: str, payloads: list[bytes], batch: int, fsync: bool, seconds: float,
                max_total: int) -> dict:
    directory = tempfile.mkdtemp(dir=base)
    try:
        queue = PersistentQueue(directory, max_bytes=4 << 30, fsync=fsync)
        queue.open()
        items = [(payloads[i % len(payloads)], META) for i in range(batch)]
        done = 0
        start = time.perf_counter()
        while True:
            queue.append_many(items)
            done += batch
            elapsed = time.perf_counter() - start
            if elapsed >= seconds or done * ITEM >= max_total:
                break
        queue.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"items_per_s": done / elapsed, "mb_per_s": done * ITEM / elapsed / 1e6,
            "ms_per_append": elapsed / (done / batch) * 1000, "items": done}


def drain_rate(base: str, payloads: list[bytes], items: int, batch: int, fsync: bool) -> dict:
    directory = tempfile.mkdtemp(dir=base)
    try:
        queue = PersistentQueue(directory, max_bytes=4 << 30, fsync=True)  # nothing left dirty for the drain
        queue.open()
        for start in range(0, items, 16):
            queue.append_many([(payloads[(start + i) % len(payloads)], META) for i in range(min(16, items - start))])
        queue.close()
        queue = PersistentQueue(directory, max_bytes=4 << 30, fsync=fsync)
        start = time.perf_counter()
        report = queue.open()
        open_seconds = time.perf_counter() - start
        drained = 0
        start = time.perf_counter()
        while True:
            got = queue.peek(batch, 1 << 30)
            if not got:
                break
            queue.ack(got[-1].seq)
            drained += len(got)
        elapsed = time.perf_counter() - start
        queue.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert drained == items == report.items, (drained, items, report.items)
    return {"items_per_s": drained / elapsed, "mb_per_s": drained * ITEM / elapsed / 1e6,
            "open_mb_per_s": report.bytes / open_seconds / 1e6, "open_seconds": open_seconds}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run (a few seconds in all)")
    parser.add_argument("--dir", default=None, help="where to put the queue (default: the temp directory)")
    args = parser.parse_args(argv)
    seconds, max_total, backlog = (0.5, 64 << 20, 512) if args.quick else (3.0, 512 << 20, 4096)
    base = args.dir or tempfile.gettempdir()
    payloads = [os.urandom(ITEM) for _ in range(8)]
    fs = filesystem(base)
    print(f"queue in {base} ({fs}), {ITEM >> 10} KB items, {seconds:g} s per measurement")

    results = {}
    for fsync in (True, False):
        for batch in (1, 16):
            name = f"fsync_{'on' if fsync else 'off'}_batch{batch}"
            results[name] = r = append_rate(base, payloads, batch, fsync, seconds, max_total)
            print(f"append  fsync={'on ' if fsync else 'off'} {batch:2d} items/commit: "
                  f"{r['items_per_s']:9,.0f} items/s {r['mb_per_s']:8.1f} MB/s  "
                  f"{r['ms_per_append']:7.2f} ms per append_many")
    drain = drain_rate(base, payloads, backlog, 16, True)
    drain_off = drain_rate(base, payloads, backlog, 16, False)
    print(f"open    {backlog} items ({backlog * ITEM / 1e6:.0f} MB): {drain['open_seconds']:.2f} s "
          f"({drain['open_mb_per_s']:.0f} MB/s read + checksummed, page cache warm)")
    for label, r in (("on ", drain), ("off", drain_off)):
        print(f"drain   peek 16 + ack, fsync={label}: {r['items_per_s']:9,.0f} items/s {r['mb_per_s']:8.1f} MB/s "
              f"({r['items_per_s'] / 16:,.0f} acks/s)")
    ack_ms = (16 / drain["items_per_s"] - 16 / drain_off["items_per_s"]) * 1000
    on1, on16 = results["fsync_on_batch1"], results["fsync_on_batch16"]
    off1 = results["fsync_off_batch1"]
    print(f"fsync cost: {on1['ms_per_append'] - off1['ms_per_append']:.2f} ms per commit; group commit of 16 "
          f"gives {on16['items_per_s'] / on1['items_per_s']:.1f}x the items/s of one item per commit; "
          f"{ack_ms:.2f} ms per ack for the head file's two fsyncs")

    result = {
        "benchmark": "persistent_queue",
        "quick": args.quick,
        "filesystem": fs,
        "item_bytes": ITEM,
        **{f"append_{name}_items_per_s": round(r["items_per_s"]) for name, r in results.items()},
        **{f"append_{name}_mb_per_s": round(r["mb_per_s"], 1) for name, r in results.items()},
        **{f"append_{name}_ms": round(r["ms_per_append"], 3) for name, r in results.items()},
        "fsync_ms_per_commit": round(on1["ms_per_append"] - off1["ms_per_append"], 3),
        "group_commit_16_speedup": round(on16["items_per_s"] / on1["items_per_s"], 2),
        "ack_fsync_ms": round(ack_ms, 3),
        "drain_items_per_s": round(drain["items_per_s"]),
        "drain_mb_per_s": round(drain["mb_per_s"], 1),
        "drain_fsync_off_items_per_s": round(drain_off["items_per_s"]),
        "open_scan_mb_per_s": round(drain["open_mb_per_s"]),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
