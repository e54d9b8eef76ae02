"""Skewed device clocks are detected and corrected; buffered devices are not mistaken for skewed ones."""

from __future__ import annotations

import time

import pytest

from collector.store.clock_skew import DeviceClocks
from bench.harness import CollectorProcess, query
from tests.otlp_requests import trace_request
from bench.harness import post

S = 1_000_000_000
T0 = 1_800_000_000 * S


def test_ahead_clock_is_certain_from_one_request():
    clocks = DeviceClocks(threshold_seconds=120)
    clocks.observe("a", T0, T0 + 420 * S)  # events 7 minutes in the gateway's future
    assert clocks.offset_ns("a") == 420 * S


def test_behind_clock_needs_a_few_requests_and_persists():
    clocks = DeviceClocks(threshold_seconds=120, min_requests=8)
    for i in range(7):
        clocks.observe("b", T0 + i * 60 * S, T0 + i * 60 * S - 7200 * S)
        assert clocks.offset_ns("b") is None  # could still be a backlog
    clocks.observe("b", T0 + 420 * S, T0 + 420 * S - 7200 * S)
    assert clocks.offset_ns("b") == -7200 * S


def test_buffered_device_is_not_skewed():
    clocks = DeviceClocks(threshold_seconds=120, min_requests=8)
    for i in range(20):  # normal operation: exported a few seconds after the events
        clocks.observe("c", T0 + i * 300 * S, T0 + i * 300 * S - 4 * S)
    for i in range(30):  # six hours offline, then the backlog arrives, oldest first
        clocks.observe("c", T0 + 30000 * S + i, T0 + 8000 * S + i * 700 * S)
        assert clocks.offset_ns("c") is None
    clocks.observe("c", T0 + 30010 * S, T0 + 30008 * S)  # and fresh data again
    assert clocks.offset_ns("c") is None
    assert clocks.min_lag_ns("c") == 2 * S


def test_new_device_whose_first_requests_are_a_backlog():
    clocks = DeviceClocks(threshold_seconds=120, min_requests=8)
    for i in range(5):
        clocks.observe("d", T0 + i, T0 - 3 * 3600 * S + i * 600 * S)
    assert clocks.offset_ns("d") is None
    clocks.observe("d", T0 + 100 * S, T0 + 99 * S)
    assert clocks.offset_ns("d") is None


def test_backlog_of_many_small_requests_is_not_a_slow_clock():
    clocks = DeviceClocks(threshold_seconds=120, min_requests=8)
    for i in range(200):  # an SDK that exported every 5 s while offline, drained in a burst
        clocks.observe("e", T0 + i * 10_000_000, T0 - 3600 * S + i * 5 * S)
        assert clocks.offset_ns("e") is None


def test_drifting_clock_is_followed():
    clocks = DeviceClocks(threshold_seconds=120, window=8, min_requests=8)
    for hour in range(48):  # +20 s per hour
        clocks.observe("f", T0 + hour * 3600 * S, T0 + hour * 3600 * S + hour * 20 * S - 3 * S)
    assert clocks.offset_ns("f") == (47 * 20 - 3) * S  # the newest hour's offset


def test_constructor_rejects_bad_values():
    with pytest.raises(ValueError):
        DeviceClocks(threshold_seconds=0)


def test_collector_corrects_a_skewed_device_and_leaves_a_buffered_one_alone(tmp_path):
    db = tmp_path / "fw.duckdb"
    now = time.time_ns()
    with CollectorProcess(db) as collector:
        for i in range(10):  # cam-ahead's clock runs 10 minutes fast
            body, _ = trace_request(5, device="cam-ahead", start_ns=time.time_ns() + 600 * S)
            assert post(collector.http_port, "/v1/traces", body, token=None)[0] == 200
        for i in range(10):  # cam-behind's clock is two hours slow
            body, _ = trace_request(5, device="cam-behind", start_ns=time.time_ns() - 7200 * S)
            assert post(collector.http_port, "/v1/traces", body, token=None)[0] == 200
        for i in range(10):  # cam-buffered uploads a three-hour backlog, then fresh data
            body, _ = trace_request(5, device="cam-buffered", start_ns=now - (3 * 3600 - i * 900) * S)
            assert post(collector.http_port, "/v1/traces", body, token=None)[0] == 200
        body, _ = trace_request(5, device="cam-buffered", start_ns=time.time_ns() - 2 * S)
        assert post(collector.http_port, "/v1/traces", body, token=None)[0] == 200
    devices = {r[0]: r[1:] for r in query(db, "SELECT device_id, clock_skewed, clock_offset_ns, "
                                              "epoch_ns(last_seen), requests FROM devices")}
    assert devices["cam-ahead"][0] is True and abs(devices["cam-ahead"][1] - 600 * S) < 30 * S
    assert devices["cam-behind"][0] is True and abs(devices["cam-behind"][1] + 7200 * S) < 30 * S
    assert devices["cam-buffered"][0] is False and devices["cam-buffered"][1] is None
    assert all(abs(r[2] - now) < 120 * S and r[3] >= 10 for r in devices.values())

    # corrected event times land near the gateway's clock; the original is kept
    rows = query(db, "SELECT device_id, max(abs(epoch_ns(corrected_start_time) - epoch_ns(received_at))), "
                     "max(abs(epoch_ns(start_time) - epoch_ns(received_at))) FROM spans "
                     "WHERE device_id = 'cam-ahead' GROUP BY ALL")
    assert rows[0][1] < 60 * S and rows[0][2] > 500 * S
    buffered = query(db, "SELECT count(*), count(clock_offset_ns) FROM spans WHERE device_id = 'cam-buffered'")
    assert buffered == [(55, 0)]
    behind = query(db, "SELECT count(clock_offset_ns) FROM spans WHERE device_id = 'cam-behind'")[0][0]
    assert behind >= 5  # corrected from the eighth request on
