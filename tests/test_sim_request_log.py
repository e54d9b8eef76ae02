"""The request-log file format (collector/request_log.py)."""

from __future__ import annotations

import ast
import os
import random
from pathlib import Path

import pytest

from collector.request_log import MAGIC, RequestLogWriter, RequestRecord, read_request_log

REPO = Path(__file__).resolve().parents[1]


def _records(n: int, seed: int = 1) -> list[RequestRecord]:
    rng = random.Random(seed)
    out, t = [], 1_700_000_000_000_000_000
    for i in range(n):
        t += rng.randrange(0, 5_000_000_000)
        size = rng.choice([0, 1, 100, 5000, 70_000 if i % 50 == 0 else 300])
        payload = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
        out.append(RequestRecord(rng.choice(["traces", "metrics", "logs"]), t, payload[:size]))
    return out


def _write(path: Path, records: list[RequestRecord], level: int = 3) -> None:
    with RequestLogWriter(path, level=level) as log:
        for r in records:
            log.append(r.signal, r.received_at_unix_nano, r.payload)


def test_round_trip_preserves_every_record(tmp_path):
    records = _records(400)
    path = tmp_path / "a.otlp.zst"
    _write(path, records)
    assert list(read_request_log(path)) == records
    assert path.read_bytes().startswith(MAGIC)
    assert not (tmp_path / "a.otlp.zst.tmp").exists()


def test_empty_log_round_trips(tmp_path):
    path = tmp_path / "empty.otlp.zst"
    _write(path, [])
    assert list(read_request_log(path)) == []


def test_same_records_same_bytes(tmp_path):
    records = _records(200, seed=5)
    _write(tmp_path / "a", records)
    _write(tmp_path / "b", records)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_compresses_repetitive_otlp_like_payloads(tmp_path):
    payload = b"resource device.id=ams1-orin-001 fleet.site=ams-factory-1 " * 20
    path = tmp_path / "c"
    _write(path, [RequestRecord("traces", i, payload) for i in range(1000)], level=10)
    assert os.path.getsize(path) < len(payload) * 1000 / 50


def test_writer_refuses_out_of_order_and_bad_input(tmp_path):
    with RequestLogWriter(tmp_path / "x") as log:
        log.append("traces", 100, b"a")
        with pytest.raises(ValueError, match="received_at order"):
            log.append("metrics", 99, b"b")
        with pytest.raises(ValueError, match="signal"):
            log.append("profiles", 200, b"c")
        with pytest.raises(ValueError, match="out of range"):
            log.append("traces", -1, b"c")
        log.append("metrics", 100, b"same time is fine")
    assert [r.received_at_unix_nano for r in read_request_log(tmp_path / "x")] == [100, 100]


def test_exception_inside_with_leaves_no_file(tmp_path):
    path = tmp_path / "aborted"
    with pytest.raises(RuntimeError):
        with RequestLogWriter(path) as log:
            log.append("traces", 1, b"x")
            raise RuntimeError("boom")
    assert not path.exists()
    assert not Path(str(path) + ".tmp").exists()


def test_every_truncation_is_a_clear_value_error(tmp_path):
    path = tmp_path / "t"
    _write(path, _records(60, seed=3))
    data = path.read_bytes()
    cut_path = tmp_path / "cut"
    cuts = sorted({0, 5, 15, 16, 17, len(data) - 1, len(data) - 2, len(data) - 4, len(data) - 9}
                  | set(range(20, len(data) - 1, max(1, len(data) // 40))))
    for cut in cuts:
        cut_path.write_bytes(data[:cut])
        with pytest.raises(ValueError) as info:
            list(read_request_log(cut_path))
        assert str(cut_path) in str(info.value)


def test_corruption_is_detected(tmp_path):
    path = tmp_path / "c"
    _write(path, _records(60, seed=4))
    data = bytearray(path.read_bytes())
    rng = random.Random(9)
    for _ in range(20):
        bad = bytearray(data)
        pos = rng.randrange(16, len(bad))
        bad[pos] ^= 1 << rng.randrange(8)
        (tmp_path / "bad").write_bytes(bytes(bad))
        with pytest.raises(ValueError):
            list(read_request_log(tmp_path / "bad"))


def test_bad_magic_version_and_trailing_garbage(tmp_path):
    path = tmp_path / "ok"
    _write(path, _records(5))
    data = path.read_bytes()
    (tmp_path / "magic").write_bytes(b"NOTALOG!" + data[8:])
    with pytest.raises(ValueError, match="bad magic"):
        list(read_request_log(tmp_path / "magic"))
    (tmp_path / "version").write_bytes(data[:8] + (2).to_bytes(2, "little") + data[10:])
    with pytest.raises(ValueError, match="version 2"):
        list(read_request_log(tmp_path / "version"))
    (tmp_path / "tail").write_bytes(data + b"\x00garbage")
    with pytest.raises(ValueError):
        list(read_request_log(tmp_path / "tail"))
    (tmp_path / "short").write_bytes(data[:7])
    with pytest.raises(ValueError, match="shorter than its header"):
        list(read_request_log(tmp_path / "short"))


def test_imports_only_stdlib_and_zstandard():
    """The collector runs on small gateways: the format module must stay dependency-free."""
    import sys

    tree = ast.parse((REPO / "collector" / "request_log.py").read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"zstandard", "__future__"}
    assert modules <= allowed, modules - allowed
