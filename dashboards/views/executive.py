"""Executive: the fleet's health in ten seconds. Big numbers first, then SLOs, alerts, fleet, models, trends."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards.charts import STATE_COLOURS, bars, compact, group_label, number, percent, show, spans, time_panels, times
from dashboards.context import page_context
from dashboards.data import Problem, Request

ctx = page_context()
api, view = ctx.api, ctx.view


def rows(request: Request) -> pd.DataFrame | None:
    """Quietly: the big numbers leave explaining a missing answer to the section below them."""
    answer = api.fetch(request)
    return None if isinstance(answer, Problem) or answer.empty else answer


month = {"since": view.until - pd.Timedelta(days=30), "until": view.until}
asks = {name: Request(query, params) for name, query, params in (
    ("inventory", "fleet_inventory", {"as_of": view.until, **ctx.filtered("fleet_inventory", window=False)}),
    ("slos", "slo_status", {"as_of": view.until, **ctx.filtered("slo_status", window=False)}),
    ("alerts", "alert_history", ctx.filtered("alert_history")),
    ("signals", "golden_signals", {"step": "1d", **ctx.filtered("golden_signals")}),
    ("shadow", "shadow_agreement", ctx.filtered("shadow_agreement")),
    ("health", "fleet_health", {"group_by": "none", **ctx.filtered("fleet_health")}),
    ("versions", "model_versions", ctx.filtered("model_versions")),
    ("rollouts", "rollout_status", ctx.filtered("rollout_status")),
    ("drift", "drift_status", ctx.filtered("drift_status", window=False)),
    ("trend", "golden_signals", {"step": "1d", **api.params("golden_signals", {**view.api_filters(), **month})}),
)}
api.prefetch(*asks.values())

# --- big numbers --------------------------------------------------------------------------------------------
inventory = rows(asks["inventory"])
slos = rows(asks["slos"])
alerts = rows(asks["alerts"])
signals = rows(asks["signals"])
shadow = rows(asks["shadow"])
health = rows(asks["health"])

online = int((inventory["status"] == "online").sum()) if inventory is not None else None
stale = int((inventory["status"] == "stale").sum()) if inventory is not None else None
firing = int(((slos["page"] == "firing") | (slos["ticket"] == "firing")).sum()) if slos is not None else None
agreement = (shadow["agreements"].sum() / shadow["compared"].sum()) if shadow is not None and shadow["compared"].sum() else None

big = st.columns(6)
big[0].metric("Devices online", number(online), help="heard from in the 15 minutes before the range's end")
big[1].metric("Devices stale", number(stale))
big[2].metric("SLOs alerting", number(firing), help="SLO groups whose page or ticket rule fires at the range's end")
big[3].metric("Alerts in range", number(len(alerts) if alerts is not None else 0 if slos is not None else None))
inferences = signals["inferences"].sum() if signals is not None else None
big[4].metric("Inferences", compact(inferences),
              help=f"edge and cloud inferences in the range: {number(inferences)}")
big[5].metric("Edge-cloud agreement", percent(agreement), help="matched shadow pairs with the same label")

# --- SLOs -----------------------------------------------------------------------------------------------------
st.subheader("SLO attainment and error budget remaining at the range's end")
slo_frame = api.load(asks["slos"], empty="No SLO was evaluated by the range's end (the server needs `analytics.slos`).")
if slo_frame is not None:
    table = slo_frame.assign(group=slo_frame["group_key"].map(group_label),
                             attainment=slo_frame["good_period"] / slo_frame["total_period"].where(
                                 slo_frame["total_period"] > 0),
                             budget=slo_frame["budget_remaining"].clip(lower=-1, upper=1))
    table["state"] = table.apply(lambda r: "page" if r["page"] == "firing" else
                                 "ticket" if r["ticket"] == "firing" else "ok", axis=1)
    table["label"] = table["slo"] + " · " + table["group"]
    fig = bars(table.sort_values("budget"), "budget", "label", color="state", colours=STATE_COLOURS, horizontal=True,
               hover={"attainment": ":.3%"})
    fig.update_xaxes(tickformat=".0%", range=[-1, 1])
    # The worst budget on top (one trace per state would otherwise order the bars by state).
    fig.update_yaxes(categoryorder="array", categoryarray=table.sort_values("budget")["label"].tolist(),
                     autorange="reversed")
    show(fig, x="error budget remaining (share of the SLO period's budget)", y="SLO · group",
         height=max(260, 22 * len(table)))
    st.dataframe(table[["slo", "group", "attainment", "budget_remaining", "exhaustion_hours", "page", "ticket"]],
                 hide_index=True, column_config={
                     "attainment": st.column_config.NumberColumn("attainment", format="percent"),
                     "budget_remaining": st.column_config.NumberColumn("budget left", format="percent"),
                     "exhaustion_hours": st.column_config.NumberColumn("exhausted in (h)", format="%.1f")})

# --- alerts -----------------------------------------------------------------------------------------------------
st.subheader("Alerts and incidents in the range")
alert_frame = api.load(asks["alerts"], empty="No alert fired or opened in this range.")
if alert_frame is not None:
    frame = times(alert_frame, "opened_at", "starts_at", "ends_at")
    frame["start"] = frame["starts_at"].fillna(frame["opened_at"])
    frame["end"] = frame["ends_at"].fillna(view.until.tz_localize(None))
    # An alert that opened in the range's last minutes would be a bar too thin to see.
    frame["end"] = frame[["end", "start"]].max(axis=1).where(
        frame["end"] - frame["start"] >= (view.until - view.since) / 150, frame["start"] + (view.until - view.since) / 150)
    frame["group"] = frame["group_key"].map(group_label)
    frame["alert"] = frame["alertname"] + " · " + frame["group"]
    fig = spans(frame, "start", "end", "alert", color="severity", colours=STATE_COLOURS, hover={"slo": "", "state": ""})
    show(fig, y="alert · group", height=max(240, 26 * frame["alert"].nunique()))

# --- fleet and models -------------------------------------------------------------------------------------------
left, right = st.columns(2)
with left:
    st.subheader("Devices by status")
    if inventory is None:
        api.load(asks["inventory"], empty="No device matches the filter.")
    else:
        counts = inventory.groupby(["site", "status"]).size().reset_index(name="devices")
        fig = bars(counts, "site", "devices", color="status", colours=STATE_COLOURS)
        show(fig, x="site", y="devices")
with right:
    st.subheader("Model versions across the fleet")
    versions = api.load(asks["versions"], empty="No edge inference in this range.")
    if versions is not None:
        versions = versions[versions["model_name"] == view.filters["model"]] if "model" in view.filters else versions
        fig = bars(versions, "model_name", "inference_share", color="model_version",
                   hover={"devices": "", "inferences": ""}, text="model_version")
        fig.update_yaxes(tickformat=".0%")
        show(fig, x="model", y="share of the model's edge inferences")

st.subheader("Rollouts")
rollouts = api.load(asks["rollouts"], empty="No deployment was reported in this range.")
if rollouts is not None:
    st.dataframe(rollouts[["rollout_id", "stage", "kind", "version_from", "version_to", "devices_targeted",
                           "succeeded", "failed", "rolled_back", "in_progress", "success_ratio"]],
                 hide_index=True, column_config={
                     "success_ratio": st.column_config.ProgressColumn("success", format="percent", min_value=0,
                                                                      max_value=1)})

left, right = st.columns(2)
with left:
    st.subheader("Drift status per model")
    drift = api.load(asks["drift"], empty="The drift job has no verdict yet.")
    if drift is not None:
        counts = drift.groupby(["model_name", "status"]).size().reset_index(name="cohorts")
        fig = bars(counts, "model_name", "cohorts", color="status", colours=STATE_COLOURS)
        show(fig, x="model", y="cohorts (newest daily verdict)")
with right:
    st.subheader("Edge-cloud agreement")
    if shadow is None:
        api.load(asks["shadow"], empty="No cloud shadow answered in this range.")
    else:
        shadow = shadow.assign(version=shadow["model_name"] + "@" + shadow["model_version"].fillna("(orphans)"))
        compared = shadow.dropna(subset=["agreement_rate"])
        if compared.empty:
            st.info("No cloud shadow was matched to an edge inference in this range.")
        else:
            fig = bars(compared, "version", "agreement_rate", hover={"compared": "", "kappa": ":.2f"})
            fig.update_yaxes(tickformat=".0%", range=[0, 1])
            show(fig, x="model@version", y="agreement rate")

st.subheader("Telemetry volume")
if health is None:
    api.load(asks["health"], empty="No fleet-health hours in this range yet.")
else:
    row = health.iloc[0]
    cols = st.columns(3)
    cols[0].metric("Telemetry sent", f"{row['telemetry_bytes'] / 2**20:,.1f} MiB")
    cols[1].metric("Of the devices' budget", percent(row["telemetry_budget_used"]))
    cols[2].metric("Device-days over budget", number(row["device_days_over_budget"]))

st.subheader("30-day trends")
trend = api.load(asks["trend"], empty="No inference in the last 30 days.")
if trend is not None:
    trend = times(trend, "time")
    time_panels(trend, [("inferences per day", ["inferences"], False), ("error ratio", ["error_ratio"], True),
                        ("p50 / p95 / p99 latency (ms)", ["p50_ms", "p95_ms", "p99_ms"], False)],
                key="trends", columns=3)
