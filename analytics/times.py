"""Times as analytics stores them: naive datetimes in UTC (DuckDB's TIMESTAMP, never its session zone)."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_naive(value):
    """An aware datetime as naive UTC; anything else (naive datetimes included) unchanged."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value
