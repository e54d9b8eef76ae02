"""On-call: what is burning, where, since when and what changed. Refreshes itself every few seconds.

The body is one ``st.fragment(run_every=...)``: only it reruns, the filter bar
and the page around it stay, and a preset range moves with the newest data.
Every row with a device or a cohort links to the debug view with the same range.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards.charts import (PALETTE, STATE_COLOURS, TIME_AXIS, axis_key, bars, group_label, panel_layout, show,
                               thin, time_columns, time_panels, times)
from dashboards.context import page_context
from dashboards.data import Request
from dashboards.filter_bar import Fleet
from dashboards.view import CUSTOM, View

ctx = page_context()
api = ctx.api

COHORTS = {"model_version": "model version", "model_name": "model", "site": "site", "region": "region",
           "device_class": "device class", "firmware_version": "firmware"}
PAGE_BURN = 14.4   # the fast page rule's threshold (SRE Workbook; docs/slo.md)
BURN_WINDOWS = ("burn_5m", "burn_1h", "burn_30m", "burn_6h")
LINK = st.column_config.LinkColumn


def current_view() -> View:
    """The filter bar's view, with a preset moved to the newest data the API has now."""
    if ctx.view.range == CUSTOM:
        return ctx.view
    fleet = Fleet.read(api)
    newest = fleet.newest if isinstance(fleet, Fleet) and fleet.newest is not None else ctx.fleet.newest
    return View.from_query(ctx.view.query(), newest)


def debug_link(view: View, **keys: str | None) -> str:
    return view.link("debug", **{k: v for k, v in keys.items() if v})


def group_filters(key: str | None) -> dict[str, str]:
    """An SLO group (JSON text) as filter-bar keys (site, region, ...): the cohort the debug view opens on."""
    import json

    try:
        group = json.loads(key or "{}")
    except ValueError:
        return {}
    names = {"model_name": "model", "model_version": "version"}
    return {names.get(k, k): str(v) for k, v in group.items() if v is not None}


def of_cohort(view: View, group_key: str | None, labels: str | None) -> bool:
    """Whether an alert belongs to the filtered cohort: it names a filtered dimension with the filter's value
    (in its group or labels) and none with another; a fleet-wide alert (no cohort) always does."""
    dims = {**group_filters(labels), **group_filters(group_key)}
    named = {key: dims[key] for key in view.filters if key in dims}
    return all(view.filters[k] == v for k, v in named.items()) and (bool(named) or not group_filters(group_key))


def requests(view: View, by: str) -> dict[str, Request]:
    """Every answer the refreshed part needs but the burn rates (they depend on the alerts), asked at once."""
    return {name: Request(query, params) for name, query, params in (
        ("status", "slo_status", {"as_of": view.until, **ctx.filtered("slo_status", window=False)}),
        ("alerts", "alert_history", api.params("alert_history", view.window())),
        ("failures", "zero_tolerance_failures", api.params("zero_tolerance_failures", view.window())),
        ("inventory", "fleet_inventory", {"as_of": view.until, **api.params("fleet_inventory", view.api_filters())}),
        ("rollouts", "rollout_status", api.params("rollout_status", view.window())),
        ("signals", "golden_signals", {"group_by": by, **api.params("golden_signals",
                                                                     {**view.window(), **view.api_filters()})}),
        ("health", "fleet_health", {"group_by": by, **api.params("fleet_health",
                                                                  {**view.window(), **view.api_filters()})}),
    )}


def grouping() -> str:
    """The golden signals' grouping: the control's choice, else the link's (``?by=site``), else model version."""
    by = st.session_state.get("oncall_by") or st.query_params.get("by")
    return by if by in COHORTS else "model_version"


def firing_now(view: View, asks: dict[str, Request]) -> None:
    st.subheader("Firing at the range's end")
    status = api.load(asks["status"], empty="No SLO was evaluated by the range's end (the server needs `analytics.slos`).")
    if status is None:
        return
    firing = status[(status["page"] == "firing") | (status["ticket"] == "firing")].copy()
    if firing.empty:
        st.success("No SLO is burning its budget fast enough to page or ticket.")
        return
    firing["severity"] = firing["page"].map(lambda p: "page" if p == "firing" else "ticket")
    firing["group"] = firing["group_key"].map(group_label)
    firing["debug"] = firing["group_key"].map(lambda k: debug_link(view.with_filters(**group_filters(k))))
    firing = times(firing.sort_values(["severity", "budget_remaining"]), "alerting_since")
    st.dataframe(firing[["debug", "severity", "slo", "group", "alerting_since", "burn_5m", "burn_1h", "burn_30m", "burn_6h",
                         "burn_1d", "burn_3d", "budget_remaining", "exhaustion_hours"]],
                 hide_index=True, column_config={
                     **time_columns("alerting_since"),
                     "burn_5m": st.column_config.NumberColumn("burn 5m", format="%.1f×"),
                     "burn_1h": st.column_config.NumberColumn("burn 1h", format="%.1f×"),
                     "burn_30m": st.column_config.NumberColumn("burn 30m", format="%.1f×"),
                     "burn_6h": st.column_config.NumberColumn("burn 6h", format="%.1f×"),
                     "burn_1d": st.column_config.NumberColumn("burn 1d", format="%.1f×"),
                     "burn_3d": st.column_config.NumberColumn("burn 3d", format="%.1f×"),
                     "budget_remaining": st.column_config.NumberColumn("budget left", format="percent"),
                     "exhaustion_hours": st.column_config.NumberColumn("exhausted in (h)", format="%.1f"),
                     "debug": LINK("debug view", display_text="open ›")})


def burn_rates(view: View, alerts: pd.DataFrame) -> None:
    """Short and long burn rates over the range for the SLO groups that alerted in it (the worst few), one
    panel each in one chart."""
    shown = alerts.sort_values("paging", ascending=False, kind="stable").drop_duplicates(["slo", "group_key"]).head(3)
    hourly = str(view.until - view.since > pd.Timedelta(days=2)).lower()  # minutes only for short ranges
    asks = []
    for _, alert in shown.iterrows():
        cohort = view.with_filters(**group_filters(alert["group_key"]))
        asks.append(Request("slo_burn_rates", {"slo": alert["slo"], "hourly": hourly, **api.params(
            "slo_burn_rates", {**cohort.window(), **cohort.api_filters()})}))
    api.prefetch(*asks)
    series = []
    for (_, alert), ask in zip(shown.iterrows(), asks):
        frame = api.fetch(ask)
        if isinstance(frame, pd.DataFrame) and not frame.empty:
            frame = times(frame[frame["group_key"] == alert["group_key"]], "evaluated_at")
            long = frame.melt(id_vars="evaluated_at", value_vars=list(BURN_WINDOWS), var_name="window",
                              value_name="burn")
            series.append((f"{alert['slo']} · {group_label(alert['group_key'])}",
                           thin(long, "evaluated_at", "burn", by="window")))
    if not series:
        return
    layout, axes = panel_layout([title for title, _ in series], x_title=TIME_AXIS, vspace=0.3 / len(series))
    traces, colour = [], dict(zip(BURN_WINDOWS, PALETTE))
    for i, ((_, long), (x_axis, y_axis)) in enumerate(zip(series, axes)):
        for window, part in long.groupby("window", sort=False):
            traces.append({"type": "scatter", "mode": "lines", "x": part["evaluated_at"], "y": part["burn"],
                           "name": window, "legendgroup": window, "showlegend": i == 0, "xaxis": x_axis,
                           "yaxis": y_axis, "line": {"color": colour[window]}})
        layout.setdefault("shapes", []).append({
            "type": "line", "xref": f"{x_axis} domain", "x0": 0, "x1": 1, "yref": y_axis, "y0": PAGE_BURN,
            "y1": PAGE_BURN, "line": {"dash": "dot", "color": STATE_COLOURS["page"]}})
        layout[axis_key(y_axis)]["title"] = {"text": "burn (× budget pace)"}
    show(go.Figure(data=traces, layout=layout), y="burn (× budget pace)", x=TIME_AXIS if len(series) == 1 else "",
         height=60 + 230 * len(series), key="burn-rates", legend_right=True,
         title=f"Burn rates of the alerted SLO groups (dotted: the page threshold, {PAGE_BURN:g}× on 1h and 5m)")


def recent_alerts(view: View, asks: dict[str, Request]) -> None:
    st.subheader("Alerts in the range")
    alerts = api.load(asks["alerts"], empty="No alert was pending, firing or resolved in this range.")
    if alerts is None:
        return
    # What is burning first: open before resolved, pages before tickets, newest first.
    alerts = alerts.assign(open=alerts["state"].isin(["firing", "pending"]), paging=alerts["severity"] == "page",
                           since=alerts["starts_at"].fillna(alerts["opened_at"]))
    alerts = alerts.sort_values(["open", "paging", "since"], ascending=False)
    alerts["group"] = alerts["group_key"].map(group_label)
    if view.filters:  # alert_history has no cohort filters: apply the bar's here
        alerts = alerts[[of_cohort(view, group, labels) for group, labels in zip(alerts["group_key"], alerts["labels"])]]
    if alerts.empty:
        st.info("No alert of the filtered cohort in this range.")
        return
    alerts["debug"] = alerts["group_key"].map(lambda k: debug_link(view.with_filters(**group_filters(k))))
    st.dataframe(times(alerts, "opened_at", "starts_at", "ends_at")[
                     ["debug", "state", "severity", "alertname", "slo", "group", "opened_at", "starts_at", "ends_at",
                      "inhibited"]],
                 hide_index=True, column_config={"debug": LINK("debug view", display_text="open ›"),
                                                 **time_columns("opened_at", "starts_at", "ends_at")})
    burn_rates(view, alerts[alerts["alertname"] == "SLOBurnRate"])


def failures(view: View, asks: dict[str, Request]) -> None:
    frame = api.fetch(asks["failures"])
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return
    for key, column in (("site", "site"), ("region", "region"), ("device_class", "device_class"),
                        ("model", "model_name"), ("version", "model_version")):
        if key in view.filters:  # the query has no cohort filters: the bar's apply here
            frame = frame[frame[column] == view.filters[key]]
    if frame.empty:
        return
    st.subheader("Model-load and integrity failures (zero tolerance)")
    frame = times(frame, "first_at", "last_at").assign(debug=[debug_link(view, device=d) for d in frame["device_id"]])
    st.dataframe(frame[["debug", *frame.columns[:-1]]], hide_index=True,
                 column_config={"debug": LINK("debug view", display_text="open ›"), **time_columns("first_at", "last_at")})


def golden_signals(asks: dict[str, Request], by: str) -> None:
    st.subheader("Golden signals")
    st.segmented_control("Per", list(COHORTS), format_func=COHORTS.get, key="oncall_by", default=by)
    st.query_params["by"] = by
    signals = api.load(asks["signals"], empty="No inference matches the filter in this range.")
    if signals is None:
        return
    signals = times(signals, "time")
    top = signals.groupby("group")["inferences"].sum().nlargest(10).index  # a readable legend
    signals = signals[signals["group"].isin(top)]
    time_panels(signals, [("inferences / s (sampled)", ["rate_per_s"], False), ("error ratio", ["error_ratio"], True),
                          ("p95 latency (ms)", ["p95_ms"], False),
                          ("p50 / p95 / p99 latency (ms), worst group", ["p50_ms", "p95_ms", "p99_ms"], False)],
                key="golden-signals")
    saturation(asks, by)


def saturation(asks: dict[str, Request], by: str) -> None:
    health = api.fetch(asks["health"])
    if not isinstance(health, pd.DataFrame) or health.empty:
        st.info("No fleet-health hours in this range yet (saturation is computed hourly).")
        return
    shares = health[["cpu_above_share", "memory_above_share", "temperature_above_share"]]
    if not shares.fillna(0).to_numpy().any():
        st.success("No device of the filter spent time above its CPU, memory or temperature threshold.")
        return
    long = health.melt(id_vars="group", value_vars=["cpu_above_share", "memory_above_share", "temperature_above_share"],
                       var_name="resource", value_name="share").dropna()
    long["resource"] = long["resource"].str.replace("_above_share", "", regex=False)
    fig = bars(long, "group", "share", color="resource", grouped=True)
    fig.update_yaxes(tickformat=".3~%")
    show(fig, x=COHORTS.get(by, by), y="time above threshold (share)", height=280, key="gs-saturation")


def devices(view: View, asks: dict[str, Request]) -> None:
    left, right = st.columns(2)
    inventory = api.fetch(asks["inventory"])
    with left:
        st.subheader("Stale and clock-skewed devices")
        if not isinstance(inventory, pd.DataFrame):
            inventory.show()
        else:
            odd = inventory[(inventory["status"] == "stale") | inventory["clock_skewed"].fillna(False)]
            if odd.empty:
                st.success("Every device reported in the last 15 minutes of the range, with its clock in step.")
            else:
                odd = times(odd, "last_seen").assign(debug=[debug_link(view, device=d) for d in odd["device_id"]])
                st.dataframe(odd[["debug", "device_id", "status", "last_seen", "site", "device_class", "clock_offset_ms",
                                  "clock_skewed"]], hide_index=True,
                             column_config={**time_columns("last_seen"), "clock_offset_ms": st.column_config.NumberColumn("clock offset (ms)",
                                                                                             format="%.0f"),
                                            "debug": LINK("debug view", display_text="open ›")})
    with right:
        st.subheader("Active rollouts")
        rollouts = api.load(asks["rollouts"], empty="No deployment was reported in this range.")
        if rollouts is not None:
            active = rollouts[rollouts["in_progress"] > 0]
            if active.empty:
                st.caption("No rollout has devices in progress; the range's rollouts:")
                active = rollouts
            st.dataframe(active[["rollout_id", "stage", "version_to", "devices_targeted", "succeeded", "failed",
                                 "in_progress", "success_ratio"]], hide_index=True,
                         column_config={"success_ratio": st.column_config.ProgressColumn(
                             "success", format="percent", min_value=0, max_value=1)})


@st.fragment(run_every=ctx.settings.refresh_s)
def live() -> None:
    view, by = current_view(), grouping()
    asks = requests(view, by)
    api.prefetch(*asks.values())
    firing_now(view, asks)
    recent_alerts(view, asks)
    failures(view, asks)
    devices(view, asks)
    golden_signals(asks, by)
    st.caption(f"Refreshes every {ctx.settings.refresh_s:g} s, last at {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC · "
               f"{view.describe()}")


live()
