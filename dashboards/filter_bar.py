"""The filter bar every page shares: time range, model, version, site, region, device class, kept in the URL.

``app.py`` draws it above every page::

    fleet = Fleet.read(api)              # choices and the newest data time, from the read API
    view = filter_bar(fleet)             # widgets seeded from st.query_params; the URL follows the widgets

The first run of a session takes the URL's query string (a link from an alert
or from the on-call page) into the widgets; from then on the widgets are the
truth and the query string is rewritten after each change, so the address bar
always links to exactly what is on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

import pandas as pd
import streamlit as st

from dashboards.data import DashboardApi, Problem
from dashboards.view import CUSTOM, DEFAULT_RANGE, FILTERS, PRESETS, View, iso, utc

ALL = "All"
_RANGE_LABELS = {"1h": "Last 1 hour", "6h": "Last 6 hours", "24h": "Last 24 hours", "7d": "Last 7 days",
                 "30d": "Last 30 days", CUSTOM: "Absolute range"}
_URL_KEYS = ("range", "from", "to", *FILTERS)
_SEEDED = "fw_seeded"


@dataclass(frozen=True)
class Fleet:
    """What the filters can choose from, and when the newest data arrived (gateway time, UTC)."""

    newest: pd.Timestamp | None
    models: dict[str, list[str]]        # model -> versions
    sites: list[str]
    regions: list[str]
    device_classes: list[str]

    @classmethod
    def read(cls, api: DashboardApi) -> "Fleet | Problem":
        devices = api.fetch("fleet_inventory")
        if isinstance(devices, Problem):
            return devices
        if devices.empty:
            return cls(None, {}, [], [], [])
        newest = utc(pd.to_datetime(devices["last_seen"], utc=True, format="ISO8601").max())
        versions = api.fetch("model_versions", since=newest - PRESETS["30d"], until=newest + pd.Timedelta(minutes=1))
        if isinstance(versions, Problem):
            return versions
        models: dict[str, list[str]] = {}
        for model, version in sorted(zip(versions.get("model_name", []), versions.get("model_version", []))):
            models.setdefault(model, []).append(version)
        return cls(newest, models, *(sorted(devices[c].dropna().unique()) for c in ("site", "region", "device_class")))


def filter_bar(fleet: Fleet) -> View:
    """Draw the bar, return the view it selects, and write that view into the URL."""
    _seed_from_url()
    newest = fleet.newest if fleet.newest is not None else utc(pd.Timestamp.now(tz="UTC"))
    state = st.session_state
    columns = st.columns([1.3, 1.2, 0.9, 1.2, 1, 1.1])
    columns[0].selectbox("Time range (UTC)", list(_RANGE_LABELS), format_func=_RANGE_LABELS.get, key="fw_range")
    _choice(columns[1], "Model", "model", list(fleet.models))
    versions = fleet.models.get(state.get("fw_model"), []) or sorted({v for vs in fleet.models.values() for v in vs})
    _choice(columns[2], "Version", "version", versions)
    _choice(columns[3], "Site", "site", fleet.sites)
    _choice(columns[4], "Region", "region", fleet.regions)
    _choice(columns[5], "Device class", "device_class", fleet.device_classes)
    query = {key: state.get(f"fw_{key}") for key in FILTERS if state.get(f"fw_{key}") not in (None, ALL)}
    if state.get("fw_range") == CUSTOM:
        since, until = _absolute_range(newest)
        query |= {"from": iso(since), "to": iso(until)}
    else:
        query["range"] = state.get("fw_range", DEFAULT_RANGE)
    view = View.from_query(query, newest)
    _write_url(view)
    return view


def _seed_from_url() -> None:
    """Once per session: the URL's view into the widgets' state (the widgets are created with these keys)."""
    state = st.session_state
    if state.get(_SEEDED):
        return
    state[_SEEDED] = True
    url = st.query_params
    for key in FILTERS:
        if url.get(key):
            state[f"fw_{key}"] = url[key]
    if url.get("from") and url.get("to"):
        try:
            since, until = utc(url["from"]), utc(url["to"])
        except ValueError:
            since = until = None
        if since is not None and since < until:
            state["fw_range"] = CUSTOM
            state["fw_from_date"], state["fw_from_time"] = since.date(), since.time().replace(microsecond=0)
            state["fw_to_date"], state["fw_to_time"] = until.date(), until.time().replace(microsecond=0)
            return
    state["fw_range"] = url.get("range") if url.get("range") in PRESETS else DEFAULT_RANGE


def _choice(column, label: str, key: str, options: list[str]) -> None:
    chosen = st.session_state.get(f"fw_{key}")
    # A value from a link that the fleet does not have stays selectable: the page then says nothing matches.
    extra = [chosen] if chosen not in (None, ALL) and chosen not in options else []
    column.selectbox(label, [ALL, *options, *extra], key=f"fw_{key}")


def _absolute_range(newest: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    state = st.session_state
    default_until = utc(newest).ceil("min")
    default_since = default_until - PRESETS[DEFAULT_RANGE]
    for prefix, stamp in (("from", default_since), ("to", default_until)):
        state.setdefault(f"fw_{prefix}_date", stamp.date())
        state.setdefault(f"fw_{prefix}_time", stamp.time().replace(microsecond=0))
    a, b, c, d = st.columns(4)
    a.date_input("From (UTC)", key="fw_from_date")
    b.time_input("at", key="fw_from_time", step=900)
    c.date_input("To (UTC)", key="fw_to_date")
    d.time_input("at", key="fw_to_time", step=900)
    since = utc(datetime.combine(state["fw_from_date"], state["fw_from_time"] or time()))
    until = utc(datetime.combine(state["fw_to_date"], state["fw_to_time"] or time()))
    if since >= until:
        st.warning("The range's end is not after its start: showing the last 24 hours instead.")
        return default_since, default_until
    return since, until


def _write_url(view: View) -> None:
    """Only the bar's own keys: a page's keys (device, trace, feature...) are the page's."""
    wanted = view.query()
    for key in _URL_KEYS:
        if key in wanted:
            if st.query_params.get(key) != wanted[key]:
                st.query_params[key] = wanted[key]
        elif key in st.query_params:
            del st.query_params[key]
