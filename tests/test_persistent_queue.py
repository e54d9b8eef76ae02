"""The gateway's persistent queue: order, durability across kill -9, torn and corrupt segments, disk budget."""

from __future__ import annotations

import json
import logging
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from collector.forwarding import queue_format as fmt
from collector.forwarding.persistent_queue import PersistentQueue, QueueInUseError
from collector.forwarding.upstream_merge import RequestMerger, compress, decompress
from tests.queue_payloads import payload_for

ROOT = Path(__file__).resolve().parents[1]
ALL = (10**9, 1 << 62)  # peek limits that take everything


def make_items(first: int, count: int, size: int = 900) -> list[tuple[bytes, bytes]]:
    metas = [f"item-{i}".encode() for i in range(first, first + count)]
    return [(payload_for(m, size), m) for m in metas]


def open_queue(path: Path, **options) -> PersistentQueue:
    options.setdefault("max_bytes", 64 << 20)
    options.setdefault("segment_bytes", 4096)
    queue = PersistentQueue(path, **options)
    queue.open()
    return queue


def everything(queue: PersistentQueue) -> list:
    return queue.peek(*ALL)


def assert_intact(items) -> None:
    for item in items:
        assert item.payload == payload_for(item.meta, len(item.payload)), f"seq {item.seq} payload differs"
    seqs = [item.seq for item in items]
    assert seqs == sorted(set(seqs)), "not in strictly increasing order"


def segment_files(path: Path) -> list[Path]:
    return sorted(path.glob("segment-*.fwq"))


# -- order, restarts, acknowledgement -------------------------------------------------
def test_fifo_order_across_segments_and_restarts(tmp_path):
    queue = open_queue(tmp_path)
    seqs, metas = [], []
    items = make_items(0, 30)
    for start, size in zip(range(0, 30, 5), (1, 3, 5, 2, 4, 5)):
        seqs += queue.append_many(items[start:start + size])
        metas += [m for _, m in items[start:start + size]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert queue.stats().segments >= 3
    first = queue.peek(7, 1 << 30)
    assert [i.seq for i in first] == seqs[:7]
    assert queue.peek(7, 1 << 30) == first  # peek does not remove
    queue.ack(first[-1].seq)
    queue.close()

    queue = open_queue(tmp_path)
    rest = everything(queue)
    assert [i.seq for i in rest] == seqs[7:]
    assert [i.meta for i in rest] == metas[7:]
    assert_intact(rest)
    more = queue.append_many(make_items(100, 10))
    assert more[0] > seqs[-1]
    queue.ack(more[2])
    queue.close()

    queue = open_queue(tmp_path)
    assert [i.seq for i in everything(queue)] == more[3:]
    assert_intact(everything(queue))
    queue.close()


def test_peek_limits(tmp_path):
    queue = open_queue(tmp_path)
    queue.append_many([(b"a" * 1000, b""), (b"b" * 1000, b""), (b"c" * 5000, b"m"), (b"d", b"")])
    assert [len(i.payload) for i in queue.peek(10, 0)] == [1000]  # at least one item
    assert [len(i.payload) for i in queue.peek(10, 1999)] == [1000]
    assert [len(i.payload) for i in queue.peek(10, 2000)] == [1000, 1000]
    assert len(queue.peek(2, 1 << 30)) == 2
    queue.ack(2)
    assert [len(i.payload) for i in queue.peek(10, 10)] == [5000]  # larger than max_bytes, still handed out
    assert queue.peek(10, 1 << 30)[0].meta == b"m"
    queue.ack(4)
    assert queue.peek(10, 1 << 30) == []
    queue.close()


def test_ack_then_reopen_does_not_redeliver_and_seqs_keep_increasing(tmp_path):
    queue = open_queue(tmp_path)
    queue.append_many(make_items(0, 10))
    queue.ack(6)
    queue.ack(3)  # older: nothing happens
    with pytest.raises(ValueError):
        queue.ack(11)  # never appended
    queue.close()
    queue = open_queue(tmp_path)
    assert [i.seq for i in everything(queue)] == [7, 8, 9, 10]
    queue.ack(10)
    assert queue.stats().items == 0
    queue.close()
    queue = open_queue(tmp_path)
    assert everything(queue) == []
    assert queue.append(b"next") == 11
    queue.close()


def test_close_keeps_unacknowledged_items(tmp_path):
    for fsync in (True, False):
        path = tmp_path / str(fsync)
        queue = open_queue(path, fsync=fsync)
        for start in range(0, 20, 2):
            queue.append_many(make_items(start, 2))
        assert queue.stats().segments > 3
        queue.peek(10, 1 << 30)  # handed to a forwarder whose upstream is down: never acknowledged
        queue.close()
        queue.close()  # twice is fine
        with pytest.raises(ValueError):
            queue.append(b"late")
        queue = open_queue(path, fsync=fsync)
        items = everything(queue)
        assert [i.seq for i in items] == list(range(1, 21))
        assert_intact(items)
        queue.close()


def test_iter_meta_lists_every_queued_item(tmp_path):
    queue = open_queue(tmp_path)
    queue.append_many(make_items(0, 12))
    queue.ack(5)
    queue.close()
    with PersistentQueue(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as queue:
        assert queue.recovery.items == 7
        assert list(queue.iter_meta()) == [(seq, f"item-{seq - 1}".encode()) for seq in range(6, 13)]
    with pytest.raises(ValueError):
        list(queue.iter_meta())  # closed


def test_concurrent_writer_and_reader(tmp_path):
    queue = open_queue(tmp_path, segment_bytes=64 << 10)
    total = 600
    received = []

    def writer() -> None:
        for start in range(0, total, 6):
            queue.append_many(make_items(start, 6, size=700))

    thread = threading.Thread(target=writer)
    thread.start()
    while len(received) < total:
        batch = queue.peek(8, 1 << 20)
        if batch:
            received += batch
            queue.ack(batch[-1].seq)
        elif not thread.is_alive() and not queue.peek(1, 1):
            break
    thread.join()
    assert [i.seq for i in received] == list(range(1, total + 1))
    assert [i.meta for i in received] == [f"item-{i}".encode() for i in range(total)]
    assert_intact(received)
    assert queue.stats().items == 0 and queue.stats().acked == total
    queue.close()


def test_a_failed_fsync_fails_the_append_and_the_queue_goes_on_in_a_new_segment(tmp_path, monkeypatch):
    queue = open_queue(tmp_path, segment_bytes=1 << 20)
    queue.append_many(make_items(0, 3))
    real = fmt.fdatasync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(fmt, "fdatasync", failing)
    with pytest.raises(OSError):
        queue.append_many(make_items(3, 2))
    monkeypatch.setattr(fmt, "fdatasync", real)
    assert len(segment_files(tmp_path)) == 1
    later = queue.append_many(make_items(5, 2))  # never written after a failed fsync: a new segment
    assert len(segment_files(tmp_path)) == 2 and later[0] > 5
    assert [i.meta for i in everything(queue)] == [f"item-{n}".encode() for n in (0, 1, 2, 5, 6)]
    queue.close()
    queue = open_queue(tmp_path, segment_bytes=1 << 20)
    assert queue.recovery.clean
    assert [i.meta for i in everything(queue)] == [f"item-{n}".encode() for n in (0, 1, 2, 5, 6)]
    queue.close()


def test_second_open_of_the_same_directory_is_refused(tmp_path):
    queue = open_queue(tmp_path)
    with pytest.raises(QueueInUseError):
        open_queue(tmp_path)
    queue.close()
    open_queue(tmp_path).close()


def test_bad_arguments_and_oversized_items(tmp_path):
    for bad in ({"max_bytes": 0}, {"max_bytes": -1}, {"max_bytes": True}, {"max_bytes": "1M"},
                {"max_bytes": 100}, {"max_bytes": 1 << 20, "segment_bytes": 10},
                {"max_bytes": 1 << 20, "segment_bytes": 4096.0}, {"max_bytes": 1 << 20, "fsync": "yes"},
                {"max_bytes": 1 << 20, "on_drop": 3}):
        with pytest.raises(ValueError):
            PersistentQueue(tmp_path, **bad)
    queue = PersistentQueue(tmp_path, max_bytes=8192)
    with pytest.raises(ValueError):
        queue.append(b"early")  # not open
    queue.open()
    with pytest.raises(ValueError, match="larger than the queue's whole budget"):
        queue.append(b"x" * 8192)
    with pytest.raises(ValueError, match="append fewer items"):
        queue.append_many([(b"x" * 3000, b"")] * 3)
    with pytest.raises(TypeError):
        queue.append("text")  # type: ignore[arg-type]
    for bad_peek in ((0, 10), (1, -1), (True, 10)):
        with pytest.raises(ValueError):
            queue.peek(*bad_peek)
    assert queue.append(b"x" * 4000) == 1  # the queue still works
    assert queue.append_many([]) == []
    queue.close()


# -- durability: a real kill -9 ------------------------------------------------------
CHILD = textwrap.dedent("""
    import random, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    from collector.forwarding.persistent_queue import PersistentQueue
    from tests.queue_payloads import payload_for

    queue = PersistentQueue(sys.argv[2], max_bytes=1 << 30, segment_bytes=128 << 10)
    queue.open()
    out = threading.Lock()
    rng = random.Random(int(sys.argv[3]))

    def emit(line):
        with out:
            sys.stdout.write(line + "\\n")
            sys.stdout.flush()

    def reader():
        while True:  # keep about 40 items queued, acknowledge the rest
            batch = queue.peek(8, 1 << 30)
            if batch and queue.stats().items > 40:
                emit(f"P {batch[-1].seq}")
                queue.ack(batch[-1].seq)
                emit(f"A {batch[-1].seq}")
            time.sleep(0.001)

    threading.Thread(target=reader, daemon=True).start()
    round_id = sys.argv[3]
    for n in range(10**9):
        metas = [f"{round_id}-{n}-{k}".encode() for k in range(rng.choice((1, 1, 2, 4)))]
        items = [(payload_for(m, rng.randrange(1, 40_000)), m) for m in metas]
        seqs = queue.append_many(items) if len(items) > 1 else [queue.append(*items[0])]
        for seq, meta in zip(seqs, metas):
            emit(f"S {seq} {meta.decode()}")
""")


def test_kill_9_loses_no_appended_item_and_redelivers_no_acknowledged_one(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory = tmp_path / "queue"
    appended: dict[int, bytes] = {}
    last_acked = 0  # highest "A" line: that ack returned
    last_planned = 0  # highest "P" line: that ack may or may not have happened
    rng = random.Random(7)
    for round_id in range(3):
        child = subprocess.Popen([sys.executable, str(script), str(ROOT), str(directory), str(round_id)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        want = rng.randrange(60, 300)
        while sum(line.startswith("S ") for line in lines) < want:
            line = child.stdout.readline()
            assert line, f"child died: {child.stderr.read()}"
            lines.append(line)
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=60)
        lines += rest.splitlines(keepends=True)
        assert child.returncode == -signal.SIGKILL
        round_seqs = []
        for line in lines:
            if not line.endswith("\n"):
                continue  # cut off by the kill
            kind, seq, *meta = line.split()
            if kind == "S":
                appended[int(seq)] = meta[0].encode()
                round_seqs.append(int(seq))
            elif kind == "A":
                last_acked = max(last_acked, int(seq))
            elif kind == "P":
                last_planned = max(last_planned, int(seq))
        assert round_seqs and min(round_seqs) > max((s for s in appended if s not in round_seqs), default=0)

        queue = open_queue(directory, max_bytes=1 << 30, segment_bytes=128 << 10)
        items = everything(queue)
        queue.close()
        assert_intact(items)
        present = {item.seq: item.meta for item in items}
        redelivered = [seq for seq in present if seq <= last_acked]
        assert not redelivered, f"acknowledged items came back: {redelivered[:5]}"
        missing = [seq for seq in appended if seq > last_planned and seq not in present]
        assert not missing, f"round {round_id}: appended items lost: {missing[:5]}"
        for seq, meta in present.items():
            if seq in appended:
                assert appended[seq] == meta
        print(f"round {round_id}: {len(round_seqs)} appended, acked through {last_acked}, {len(present)} back")


# -- torn tails and corruption -------------------------------------------------------
def _three_item_segment(path: Path) -> tuple[bytes, int]:
    queue = open_queue(path, segment_bytes=1 << 20, fsync=False)
    for item in make_items(0, 3, size=150):
        queue.append(*item)
    queue.close()
    data = segment_files(path)[0].read_bytes()
    return data, len(data) - (fmt.RECORD_OVERHEAD + 150 + len(b"item-2"))


def test_torn_tail_is_truncated_at_every_byte_offset(tmp_path):
    original = tmp_path / "original"
    data, last_start = _three_item_segment(original)
    for cut in range(last_start, len(data)):
        case = tmp_path / f"cut{cut}"
        shutil.copytree(original, case)
        segment = segment_files(case)[0]
        segment.write_bytes(data[:cut])
        queue = open_queue(case, segment_bytes=1 << 20, fsync=False)
        report = queue.recovery
        items = everything(queue)
        assert [i.seq for i in items] == [1, 2], cut
        assert_intact(items)
        assert report.torn_records == (1 if cut > last_start else 0), cut
        assert not report.quarantined and not (case / "quarantine").exists()
        assert segment.stat().st_size == last_start
        assert queue.append(b"after") > 2
        queue.close()
        queue = open_queue(case, segment_bytes=1 << 20, fsync=False)
        assert queue.recovery.clean and [i.seq for i in everything(queue)][:2] == [1, 2]
        queue.close()
        shutil.rmtree(case)


def test_zero_filled_tail_after_power_loss_is_torn_not_corrupt(tmp_path):
    data, last_start = _three_item_segment(tmp_path)
    segment = segment_files(tmp_path)[0]
    segment.write_bytes(data + bytes(4096))  # size grew, data never reached the disk
    queue = open_queue(tmp_path)
    assert [i.seq for i in everything(queue)] == [1, 2, 3]
    assert queue.recovery.torn_records == 1 and not queue.recovery.quarantined
    queue.close()
    segment.write_bytes(data[:last_start + 30] + bytes(len(data) - last_start - 30))  # last record half zeros
    queue = open_queue(tmp_path)
    assert [i.seq for i in everything(queue)] == [1, 2]
    assert queue.recovery.torn_records == 1
    queue.close()


def test_torn_segment_create_is_removed(tmp_path):
    queue = open_queue(tmp_path)
    queue.append_many(make_items(0, 8))
    queue.close()
    newest = segment_files(tmp_path)[-1]
    torn = newest.with_name("segment-000000000099.fwq")
    torn.write_bytes(newest.read_bytes()[:10])
    queue = open_queue(tmp_path)
    assert [i.seq for i in everything(queue)] == list(range(1, 9))
    assert queue.recovery.torn_records == 1 and not torn.exists()
    assert queue.append(b"x") == 9
    queue.close()


def _twelve_items_in_three_segments(path: Path) -> list[Path]:
    queue = open_queue(path)  # 4 records of 950 bytes fill a 4 KiB segment
    for item in make_items(0, 12):
        queue.append(*item)
    queue.close()
    files = segment_files(path)
    assert len(files) == 3
    return files


RECORD = fmt.RECORD_OVERHEAD + 900 + len(b"item-5")


@pytest.mark.parametrize("where, offset, lost", [
    ("payload", fmt.HEADER_SIZE + RECORD + 500, [6]),
    ("crc", fmt.HEADER_SIZE + RECORD + 4, [6]),
    ("length", fmt.HEADER_SIZE + RECORD + 2, [6]),
    ("seq", fmt.HEADER_SIZE + RECORD + 8, [6]),
    ("header", 20, []),
])
def test_damaged_middle_segment_is_quarantined_and_the_rest_delivered(tmp_path, caplog, where, offset, lost):
    files = _twelve_items_in_three_segments(tmp_path)
    original = bytearray(files[1].read_bytes())
    damaged = bytearray(original)
    damaged[offset] ^= 0x40
    files[1].write_bytes(bytes(damaged))
    with caplog.at_level(logging.INFO, logger="fleetwatch.queue"):
        queue = open_queue(tmp_path)
    report = queue.recovery
    items = everything(queue)
    assert [i.seq for i in items] == [s for s in range(1, 13) if s not in lost]
    assert_intact(items)
    assert queue.stats().quarantined_segments == 1 and len(report.quarantined) == 1
    assert report.salvaged_items == 4 - len(lost) and report.corrupt_items == len(lost)
    assert report.torn_records == 0
    quarantined = list((tmp_path / "quarantine").iterdir())
    assert [p.read_bytes() for p in quarantined] == [bytes(damaged)]  # kept as found, for inspection
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1  # one line per event
    assert queue.append(b"x" * 100) == 13  # and the queue keeps working
    queue.ack(13)
    queue.close()
    queue = open_queue(tmp_path)
    assert queue.recovery.clean and everything(queue) == []
    queue.close()


def test_damage_in_the_newest_segment_before_its_end_is_not_mistaken_for_a_torn_tail(tmp_path):
    files = _twelve_items_in_three_segments(tmp_path)
    damaged = bytearray(files[2].read_bytes())
    damaged[fmt.HEADER_SIZE + 1] ^= 0xFF  # length of seq 9: now runs past the end of the file
    files[2].write_bytes(bytes(damaged))
    queue = open_queue(tmp_path)
    assert [i.seq for i in everything(queue)] == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12]
    assert queue.recovery.torn_records == 0 and len(queue.recovery.quarantined) == 1
    queue.close()


def test_damage_after_open_is_skipped_counted_and_logged_once(tmp_path, caplog):
    files = _twelve_items_in_three_segments(tmp_path)
    queue = open_queue(tmp_path)
    for offset in (fmt.HEADER_SIZE + RECORD + 500, fmt.HEADER_SIZE + 2 * RECORD + 500):  # seqs 6 and 7 rot
        with open(files[1], "r+b") as file:
            file.seek(offset)
            byte = file.read(1)
            file.seek(offset)
            file.write(bytes([byte[0] ^ 1]))
    with caplog.at_level(logging.WARNING, logger="fleetwatch.queue"):
        assert [i.seq for i in everything(queue)] == [1, 2, 3, 4, 5, 8, 9, 10, 11, 12]
        assert [i.seq for i in queue.peek(6, 1 << 30)] == [1, 2, 3, 4, 5, 8]
    assert queue.stats().corrupt_items == 2 and queue.stats().items == 10
    assert len(caplog.records) == 1
    files[2].unlink()  # a segment deleted behind the queue's back
    queue.ack(8)
    assert everything(queue) == [] and queue.stats().items == 0
    assert queue.append(b"x") == 13
    queue.close()


def test_random_damage_never_stops_open(tmp_path):
    rng = random.Random(1)
    files = _twelve_items_in_three_segments(tmp_path / "original")
    for case in range(40):
        path = tmp_path / f"case{case}"
        shutil.copytree(tmp_path / "original", path)
        victim = path / files[rng.randrange(3)].name
        data = bytearray(victim.read_bytes())
        for _ in range(rng.randrange(1, 4)):
            start = rng.randrange(len(data))
            data[start:start + rng.randrange(1, 64)] = rng.randbytes(rng.randrange(0, 64))
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data))]
        victim.write_bytes(bytes(data))
        if rng.random() < 0.2:
            (path / "head").write_bytes(rng.randbytes(rng.randrange(40)))
        queue = open_queue(path)
        items = everything(queue)
        assert_intact(items)
        untouched = {1: range(1, 5), 2: range(5, 9), 3: range(9, 13)}
        for number, seqs in untouched.items():
            if victim.name != files[number - 1].name:
                assert set(seqs) <= {i.seq for i in items}, case
        assert queue.append(b"still works") > max([i.seq for i in items], default=0)
        queue.close()
        shutil.rmtree(path)


@pytest.mark.parametrize("head", [b"", b"garbage" * 9, None])
def test_bad_or_missing_head_falls_back_to_the_oldest_item(tmp_path, head):
    queue = open_queue(tmp_path)
    queue.append_many(make_items(0, 10))
    queue.ack(5)  # deletes the segment of items 1-4; 5 stays on disk, acknowledged
    queue.close()
    if head is None:
        (tmp_path / "head").unlink()
    else:
        (tmp_path / "head").write_bytes(head)
    queue = open_queue(tmp_path)
    assert queue.recovery.head_fallback == ("missing" if head is None else "corrupt")
    items = everything(queue)
    assert items[0].seq <= 6 and [i.seq for i in items if i.seq > 5] == [6, 7, 8, 9, 10]  # at least once
    assert queue.append(b"x") == 11
    queue.close()


# -- disk budget -----------------------------------------------------------------------
def test_disk_budget_drops_oldest_first_and_counts_exactly(tmp_path):
    drops = []
    budget = 16 << 10
    queue = open_queue(tmp_path, max_bytes=budget, segment_bytes=4096,
                       on_drop=lambda items, nbytes: drops.append((items, nbytes)))
    sizes = {}
    rng = random.Random(3)
    acked = set()
    for n in range(80):
        payload = payload_for(b"%d" % n, rng.randrange(200, 1500))
        seq = queue.append(payload, b"%d" % n)
        sizes[seq] = len(payload) + len(str(n))
        if n == 3:
            queue.ack(2)
            acked = {1, 2}
        stats = queue.stats()
        on_disk = sum(f.stat().st_size for f in segment_files(tmp_path))
        assert stats.bytes == on_disk <= budget
    items = everything(queue)
    assert_intact_meta = [i.meta == str(i.seq - 1).encode() for i in items]
    assert all(assert_intact_meta)
    present = [i.seq for i in items]
    assert present == list(range(present[0], 81))  # the newest survive, contiguous
    dropped = [s for s in sizes if s < present[0] and s not in acked]
    stats = queue.stats()
    assert drops and stats.dropped_items == len(dropped) == sum(d[0] for d in drops)
    assert stats.dropped_bytes == sum(sizes[s] for s in dropped) == sum(d[1] for d in drops)
    assert stats.items == len(present)
    queue.close()
    queue = open_queue(tmp_path, max_bytes=budget)
    assert [i.seq for i in everything(queue)] == present
    queue.close()


def test_drops_without_a_callback_are_logged(tmp_path, caplog):
    queue = open_queue(tmp_path, max_bytes=8192)
    with caplog.at_level(logging.WARNING, logger="fleetwatch.queue"):
        for item in make_items(0, 40):
            queue.append(*item)
    assert queue.stats().dropped_items > 0
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1  # once per interval
    queue.close()


# -- merged upstream requests (collector/forwarding/upstream_merge.py) ---------------------------

def forwarder_items(first: int, count: int) -> list[tuple[bytes, bytes]]:
    """Items as the forwarder queues them: a zstd'ed protobuf-like body and its JSON meta."""
    items = []
    for i in range(first, first + count):
        raw = payload_for(f"raw-{i}".encode(), 300)
        meta = {"signal": "traces", "gateway_id": "gw", "received_at": 1000 + i, "items": 1,
                "raw_bytes": len(raw), "encoding": "zstd", "digests": [f"d{i}"]}
        items.append((compress(raw, "zstd"), json.dumps(meta).encode()))
    return items


def test_a_recorded_merge_is_rebuilt_byte_identical_after_a_restart(tmp_path):
    plan = str(tmp_path / "queue.merge-plan")
    queue = open_queue(tmp_path / "q")
    queue.append_many(forwarder_items(0, 10))
    merger = RequestMerger(queue, plan, max_request_bytes=1 << 20)
    first = merger.next()
    assert (first.first_seq, first.last_seq, first.batches) == (1, 10, 10)
    assert first.meta["digests"] == [f"d{i}" for i in range(10)] and first.meta["received_at"] == 1000
    queue.append_many(forwarder_items(10, 5))  # more arrives while the request is in flight
    queue.close()  # the answer never came (kill -9 before the ack)

    queue = open_queue(tmp_path / "q")
    merger = RequestMerger(queue, plan, max_request_bytes=1 << 20)
    merger.open()
    again = merger.next()
    assert again.body == first.body and (again.first_seq, again.last_seq) == (1, 10)
    queue.ack(again.last_seq)
    rest = merger.next()
    assert (rest.first_seq, rest.last_seq) == (11, 15)
    queue.ack(rest.last_seq)
    queue.close()

    queue = open_queue(tmp_path / "q")  # a plan already acknowledged is not replayed
    merger = RequestMerger(queue, plan, max_request_bytes=1 << 20)
    merger.open()
    queue.append_many(forwarder_items(15, 2))
    request = merger.next()
    assert (request.first_seq, request.last_seq) == (16, 17)
    queue.close()


def test_merges_respect_the_size_cap_and_a_damaged_plan_is_ignored(tmp_path):
    plan = tmp_path / "queue.merge-plan"
    plan.write_bytes(b"garbage\n")
    queue = open_queue(tmp_path / "q")
    queue.append_many(forwarder_items(0, 10))
    merger = RequestMerger(queue, str(plan), max_request_bytes=1000)  # three 300-byte items per request
    merger.open()
    request = merger.next()
    assert (request.first_seq, request.last_seq) == (1, 3)
    assert decompress(request.body, "zstd") == b"".join(
        payload_for(f"raw-{i}".encode(), 300) for i in range(3))
    assert merger.still_queued(request)
    queue.close()
