"""Named-query parameters: typed parsing with messages that name the parameter."""

from datetime import datetime, timedelta, timezone

import pytest

from analytics.api.params import BadParameter, Param, parse_duration, parse_time

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("now", NOW),
    ("-1h", NOW - timedelta(hours=1)),
    ("now-30m", NOW - timedelta(minutes=30)),
    ("-7d", NOW - timedelta(days=7)),
    ("-1.5h", NOW - timedelta(minutes=90)),
    ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=timezone.utc)),
    ("2026-12-01T10:00:00.250+02:00", datetime(2026, 12, 1, 8, 0, 0, 250000, tzinfo=timezone.utc)),
])
def test_times_take_rfc3339_and_relative_forms(text, expected):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text, message", [
    ("2026-12-01T10:00:00", "no time zone"),
    ("2026-12-01", "a date, not a time"),
    ("-1", "not a time"),
    ("yesterday", "not a time"),
    ("1h", "not a time"),
])
def test_bad_times_say_what_to_write(text, message):
    with pytest.raises(ValueError, match=message):
        parse_time(text, NOW)


def test_durations_need_a_unit():
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    with pytest.raises(ValueError, match="unit"):
        parse_duration("3")


def test_parameters_convert_check_limits_and_name_themselves():
    limit = Param("limit", "int", default="100", minimum=1, maximum=10_000)
    assert limit.parse(None) == 100
    assert limit.parse("7") == 7
    for raw, message in (("0", "below the minimum"), ("10001", "above the maximum"),
                         ("1e3", "not an integer"), ("x", "not an integer")):
        with pytest.raises(BadParameter, match=f"'limit'.*{message}"):
            limit.parse(raw)
    since = Param("since", "timestamp", default="-1h")
    assert since.parse(None, NOW) == NOW - timedelta(hours=1)
    with pytest.raises(BadParameter, match="'since'"):
        since.parse("soon", NOW)
    group = Param("group_by", "choice", choices=("site", "region"))
    assert group.parse("site") == "site"
    with pytest.raises(BadParameter, match="not one of site, region"):
        group.parse("site; DROP TABLE spans")
    with pytest.raises(BadParameter, match="'device' is required"):
        Param("device", "string", required=True).parse(None)
    with pytest.raises(BadParameter, match="finite"):
        Param("x", "float").parse("nan")


def test_parameter_declarations_are_validated():
    with pytest.raises(ValueError, match="kind must be one of"):
        Param("x", "date")
    with pytest.raises(ValueError, match="needs its choices"):
        Param("x", "choice")
    with pytest.raises(ValueError, match="lower_snake_case"):
        Param("Bad-Name", "int")
