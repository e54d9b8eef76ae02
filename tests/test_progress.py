"""The collector's own progress reporter (no tqdm on a gateway) and bulk-load summaries in words."""

from __future__ import annotations

import io

import pytest

from collector.progress import ProgressReporter, describe_counts


class _Clock:
    """Seconds that advance only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_periodic_lines_when_not_on_a_terminal():
    out, clock = io.StringIO(), _Clock()
    progress = ProgressReporter("loading x.otlp.zst", total=1000, stream=out, interval=5, clock=clock)
    for step in range(1, 21):  # 20 updates one second apart: a line every 5 s, not one per update
        clock.now += 1
        progress.update(step * 50, f"{step} requests")
    progress.finish()
    assert out.getvalue().splitlines() == [
        "loading x.otlp.zst: 25% after 5s  5 requests",
        "loading x.otlp.zst: 50% after 10s  10 requests",
        "loading x.otlp.zst: 75% after 15s  15 requests",
        "loading x.otlp.zst: 100% after 20s  20 requests",
    ]


def test_a_bar_redrawn_in_place_on_a_terminal():
    out, clock = io.StringIO(), _Clock()
    progress = ProgressReporter("loading", total=200, stream=out, tty=True, clock=clock)
    clock.now += 30
    progress.update(50, "1,000 spans")
    clock.now += 30
    progress.update(100, "2,000 spans")
    progress.finish()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "\rloading [" + "#" * 15 + "." * 15 + "]  50%  2,000 spans  ETA 1m00s" in text


def test_nothing_drawn_for_work_shorter_than_the_interval():
    out, clock = io.StringIO(), _Clock()
    progress = ProgressReporter("loading", total=10, stream=out, interval=5, clock=clock)
    clock.now += 1
    progress.update(10)
    progress.finish()
    assert out.getvalue() == ""


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="total"):
        ProgressReporter("x", total=-1, stream=io.StringIO())
    with pytest.raises(ValueError, match="interval"):
        ProgressReporter("x", total=1, stream=io.StringIO(), interval=0)


def test_counts_in_words():
    assert describe_counts({"requests": 1, "spans": 0, "points": 1, "rejected": 0, "duplicates": 0,
                            "bad_requests": 0}) == "1 request read; 0 spans and 1 metric point written"
    assert describe_counts({"requests": 23456, "spans": 1000, "points": 6, "rejected": 2, "duplicates": 3,
                            "bad_requests": 1}) == (
        "23,456 requests read; 1,000 spans and 6 metric points written (3 requests already in the database, "
        "2 items rejected as invalid, 1 request not decodable)")
    assert describe_counts({"requests": 2, "spans": 0, "points": 0, "log_records": 9, "rejected": 1, "duplicates": 0,
                            "bad_requests": 0}) == (
        "2 requests read; 0 spans, 0 metric points and 9 log records written (1 item rejected as invalid)")
