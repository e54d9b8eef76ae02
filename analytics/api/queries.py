"""Named queries: the read API's fixed, parameterised questions, and how they bind.

A named query is SQL written once, here, with DuckDB ``$name``
placeholders; callers send only parameter values, which are parsed by
their declared type and bound by DuckDB, never pasted into the text::

    query = REGISTRY["device_spans"]
    sql, bound = query.bind({"device_id": "cam-0001", "since": "-1h"})
    # sql still holds $device_id / $since; bound == {"device_id": "cam-0001", "since": datetime(...)}

An unknown parameter, a missing required one or a bad value raises
:class:`BadParameter` naming it. Grouping choices that must change the SQL
itself (``group_by``) are declared as ``choice`` parameters whose every
value maps to a fixed fragment; the fragment, never the caller's text,
goes into the statement.

docs/api.md lists every query with an example; a test runs each example.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from analytics.api.params import BadParameter, Param


@dataclass(frozen=True)
class NamedQuery:
    """One named query: its SQL, parameters and (optional) fixed fragments per choice."""

    name: str
    doc: str
    sql: str
    params: tuple[Param, ...] = ()
    fragments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"query {self.name}: duplicate parameter names")
        for param_name, by_choice in self.fragments.items():
            param = next((p for p in self.params if p.name == param_name), None)
            if param is None or param.kind != "choice" or set(by_choice) != set(param.choices):
                raise ValueError(f"query {self.name}: fragments for {param_name!r} must cover its choices")

    def bind(self, raw: Mapping[str, str], now: datetime | None = None) -> tuple[str, dict]:
        """The statement and its bound values for query-string ``raw``."""
        known = {p.name for p in self.params}
        unknown = sorted(set(raw) - known)
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise BadParameter(f"unknown parameter {unknown[0]!r} for query {self.name!r} (parameters: {allowed})")
        bound = {p.name: p.parse(raw.get(p.name), now) for p in self.params}
        sql = self.sql
        if self.fragments:
            sql = sql.format(**{name: self.fragments[name][bound[name]] for name in self.fragments})
        used = set(re.findall(r"\$([a-z][a-z0-9_]*)", sql))
        # Only the placeholders the statement uses are bound (DuckDB refuses extras);
        # times go in as naive UTC so DuckDB never applies its session time zone.
        return sql, {name: _naive_utc(value) for name, value in bound.items() if name in used}

    def describe(self) -> dict:
        return {"name": self.name, "doc": self.doc, "params": [p.describe() for p in self.params]}


def _naive_utc(value):
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


_RANGE = (
    Param("since", "timestamp", "start of the time range (inclusive)", default="-1h"),
    Param("until", "timestamp", "end of the time range (exclusive)", default="now"),
)

QUERIES = (
    NamedQuery(
        "device_spans",
        "Spans of one device in a time range (device clock, corrected for skew), newest first.",
        """
        SELECT trace_id, span_id, parent_span_id, name, status_code, status_message,
               corrected_start_time AS start_time, duration_ms, model_name, model_version,
               inference_mode, request_id, prediction_label, prediction_score, prediction_value,
               cold_start, site, firmware_version, attributes, received_at
        FROM spans
        WHERE device_id = $device_id
          AND corrected_start_time >= $since AND corrected_start_time < $until
        ORDER BY corrected_start_time DESC
        """,
        (Param("device_id", "string", "the device's device.id", required=True), *_RANGE),
    ),
    NamedQuery(
        "trace_spans",
        "Every span of one trace, in start order (for a waterfall).",
        """
        SELECT trace_id, span_id, parent_span_id, name, kind, status_code, status_message,
               start_time, end_time, duration_ms, service_name, device_id, model_name,
               model_version, inference_mode, attributes, events
        FROM spans
        WHERE trace_id = lower($trace_id)
        ORDER BY start_time, span_id
        """,
        (Param("trace_id", "string", "32 hex characters", required=True),),
    ),
    NamedQuery(
        "device_metrics",
        "One device's gauge and sum series (CPU, memory, temperature, battery, bytes sent).",
        """
        SELECT time, metric_name, unit, value, attributes
        FROM metric_points
        WHERE device_id = $device_id
          AND ($metric_name IS NULL OR metric_name = $metric_name)
          AND time >= $since AND time < $until
        ORDER BY metric_name, time
        """,
        (Param("device_id", "string", "the device's device.id", required=True),
         Param("metric_name", "string", "only this metric (default: all)"), *_RANGE),
    ),
)


def registry(queries=QUERIES) -> dict[str, NamedQuery]:
    """Queries by name; refuses two queries with one name."""
    out: dict[str, NamedQuery] = {}
    for query in queries:
        if query.name in out:
            raise ValueError(f"two named queries are called {query.name!r}")
        out[query.name] = query
    return out


REGISTRY = registry()
