"""What a dashboard shows: a time range and the fleet filters, and how they read and write a URL query string.

A view is the state a link carries, so an alert can open exactly it::

    view = View.from_query({"range": "6h", "site": "ams-factory-1"}, newest=pd.Timestamp("2026-11-04T00:00Z"))
    view.since, view.until             # the last 6 h before the newest data (UTC)
    view.api_filters()                 # {"site": "ams-factory-1"}: read API parameter names
    view.query()                       # {"range": "6h", "site": "ams-factory-1"}: back into the URL
    view.link("debug", device="ams1-coral-001")   # "debug?range=6h&site=ams-factory-1&device=ams1-coral-001"

Presets (``1h`` ... ``30d``) end at the newest data the read API has, not at the
wall clock, so a static data set (the shipped sample) still shows; an absolute
range is ``from`` and ``to`` in RFC 3339 (UTC).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pandas as pd

PRESETS = {"1h": pd.Timedelta(hours=1), "6h": pd.Timedelta(hours=6), "24h": pd.Timedelta(hours=24),
           "7d": pd.Timedelta(days=7), "30d": pd.Timedelta(days=30)}
DEFAULT_RANGE = "24h"
CUSTOM = "custom"

# URL key -> read API parameter; the same names on every page and in every link.
FILTERS = {"model": "model_name", "version": "model_version", "site": "site", "region": "region",
           "device_class": "device_class"}


def utc(value) -> pd.Timestamp:
    """A UTC timestamp from RFC 3339 text (nanoseconds and ``Z`` included), a datetime or a Timestamp."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def iso(stamp: pd.Timestamp) -> str:
    return utc(stamp).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class View:
    """A time range and filters; build it with :meth:`from_query` (see the module docstring)."""

    range: str
    since: pd.Timestamp
    until: pd.Timestamp
    filters: dict[str, str] = field(default_factory=dict)   # URL keys of FILTERS, set ones only

    @classmethod
    def from_query(cls, query: Mapping[str, str], newest: pd.Timestamp) -> "View":
        """The view a query string asks for; a bad or missing range falls back to the default preset."""
        filters = {key: str(query[key]) for key in FILTERS if query.get(key)}
        if query.get("from") and query.get("to"):
            try:
                since, until = utc(query["from"]), utc(query["to"])
            except ValueError:
                since = until = None
            if since is not None and since < until:
                return cls(CUSTOM, since, until, filters)
        preset = query.get("range") if query.get("range") in PRESETS else DEFAULT_RANGE
        return cls.preset(preset, newest, filters)

    @classmethod
    def preset(cls, name: str, newest: pd.Timestamp, filters: dict[str, str] | None = None) -> "View":
        """The last ``name`` (a key of PRESETS) up to ``newest`` rounded up to the minute."""
        until = utc(newest).ceil("min")
        return cls(name, until - PRESETS[name], until, dict(filters or {}))

    def with_filters(self, **values: str | None) -> "View":
        """This view with ``values`` (URL keys) set; keys that are not filters (firmware_version...) are left out."""
        filters = {**self.filters, **values}
        return replace(self, filters={k: v for k, v in filters.items() if v and k in FILTERS})

    def api_filters(self) -> dict[str, str]:
        return {FILTERS[key]: value for key, value in self.filters.items()}

    def window(self) -> dict[str, pd.Timestamp]:
        return {"since": self.since, "until": self.until}

    def query(self) -> dict[str, str]:
        """The URL query string of this view (key order stable, so links compare equal)."""
        if self.range == CUSTOM:
            query = {"from": iso(self.since), "to": iso(self.until)}
        else:
            query = {"range": self.range}
        return {**query, **{key: self.filters[key] for key in FILTERS if key in self.filters}}

    def link(self, page: str, **extra: str) -> str:
        """A relative link to ``page`` (its URL path) with this view and ``extra`` keys (device, trace...)."""
        return f"{page}?{urllib.parse.urlencode({**self.query(), **{k: v for k, v in extra.items() if v}})}"

    def describe(self) -> str:
        """One line for captions: the range in UTC and the filters."""
        text = f"{self.since:%Y-%m-%d %H:%M} – {self.until:%Y-%m-%d %H:%M} UTC"
        if self.filters:
            text += " · " + ", ".join(f"{key.replace('_', ' ')} = {value}" for key, value in self.filters.items())
        return text
