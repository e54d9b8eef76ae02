"""Debug: one device, one model or one trace. ``?device=`` and ``?trace=`` in the URL pick them.

Without a device the page lists the filtered fleet's devices, worst first, each
a link; with a model filter and no device it shows that model's versions. For a
device: recent spans, the latency histogram, errors with their attributes, resource
gauges over time, the clock offset and the model-version history; a trace (from
the URL or picked among the device's) is drawn as a stage waterfall.
"""

from __future__ import annotations

import json

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboards.charts import PALETTE, STATE_COLOURS, show, thin, time_columns, time_panels, times
from dashboards.context import page_context
from dashboards.data import Problem

ctx = page_context()
api, view = ctx.api, ctx.view
LINK = st.column_config.LinkColumn


def url_choice(key: str) -> str | None:
    """A debug key (device, trace) seeded once from the URL, then kept in the URL as the widget changes."""
    state_key = f"dbg_{key}"
    if state_key not in st.session_state:
        st.session_state[state_key] = st.query_params.get(key) or ""
    return st.session_state[state_key] or None


def keep_in_url(**keys: str | None) -> None:
    for key, value in keys.items():
        if value:
            st.query_params[key] = value
        elif key in st.query_params:
            del st.query_params[key]


def device_list() -> None:
    inventory = api.load("fleet_inventory", empty="No device matches the filter.", as_of=view.until,
                         **api.params("fleet_inventory", view.api_filters()))
    if inventory is None:
        return
    if "model" in view.filters:
        inventory = inventory[inventory["model_versions"].map(
            lambda versions: any(str(v).startswith(view.filters["model"] + ":") for v in versions))]
    inventory = times(inventory.sort_values(["errors_24h", "device_id"], ascending=[False, True]), "last_seen")
    inventory["debug"] = [view.link("debug", device=d) for d in inventory["device_id"]]
    inventory["model_versions"] = inventory["model_versions"].map(", ".join)
    st.caption("Pick a device above, or open one of these (most errors in the day before the range's end first).")
    st.dataframe(inventory[["debug", "device_id", "status", "site", "device_class", "firmware_version",
                            "model_versions", "errors_24h", "inferences_24h", "clock_offset_ms", "last_seen"]],
                 hide_index=True, column_config={"debug": LINK("device", display_text=r"device=([^&]+)"),
                                                 **time_columns("last_seen")})


def model_view(model: str) -> None:
    st.subheader(f"Model {model}")
    signals = api.load("golden_signals", empty=f"No inference of {model} in this range.", group_by="model_version",
                       **api.params("golden_signals", {**view.window(), **view.api_filters()}))
    if signals is None:
        return
    signals = times(signals, "time")
    time_panels(signals, [("p95 latency (ms)", ["p95_ms"], False), ("error ratio", ["error_ratio"], True)],
                key="model-signals")


def device_view(device: str) -> None:
    inventory = api.fetch("fleet_inventory", as_of=view.until)
    if isinstance(inventory, pd.DataFrame):
        row = inventory[inventory["device_id"] == device]
        if row.empty:
            st.warning(f"No device {device!r} has reported to this server.")
            return
        info = row.iloc[0]
        st.markdown(f"**{device}** · {info['status']} at the range's end · site {info['site']} ({info['region']}) · "
                    f"{info['device_class']} · firmware {info['firmware_version']} · "
                    f"{', '.join(info['model_versions']) or 'no model'}")
        cols = st.columns(3)
        offset = info["clock_offset_ms"]
        cols[0].metric("Clock offset", "–" if pd.isna(offset) else f"{offset / 1000:+,.1f} s",
                       delta="skewed" if info["clock_skewed"] else None, delta_color="inverse",
                       help="device clock minus gateway receive time; times below are corrected for it")
        cols[1].metric("Errors (24 h before the range's end)", f"{info['errors_24h']} of {info['inferences_24h']}")
        cols[2].metric("Last seen (UTC)", f"{pd.Timestamp(info['last_seen']):%Y-%m-%d %H:%M}")
    spans = api.load("device_spans", empty=f"{device} sent no span in this range.", device_id=device, **view.window())
    if spans is None:
        return
    spans = times(spans, "start_time", "received_at")
    inferences = spans[spans["name"] == "inference"]

    left, right = st.columns(2)
    with left:
        st.subheader("Latency histogram")
        if inferences.empty:
            st.info("No inference span in this range.")
        else:
            fig = px.histogram(inferences, x="duration_ms", color="inference_mode", nbins=40,
                               color_discrete_sequence=PALETTE)
            show(fig, x="inference duration (ms)", y="inferences", key="dbg-hist")
    with right:
        st.subheader("Model-version history")
        versions = spans.dropna(subset=["model_version"]).groupby(["model_name", "model_version"])["start_time"] \
            .agg(["min", "max"]).reset_index()
        if versions.empty:
            st.info("No model version in this range.")
        else:
            versions["version"] = versions["model_name"] + "@" + versions["model_version"]
            fig = px.timeline(versions, x_start="min", x_end="max", y="version", color="version",
                              color_discrete_sequence=PALETTE)
            show(fig, y="model@version", key="dbg-versions", legend=False, height=200)
        lifecycle = spans[spans["name"].isin(["model.load", "deployment"])]
        if not lifecycle.empty:
            st.dataframe(lifecycle[["start_time", "name", "status_code", "model_name", "model_version", "attributes"]],
                         hide_index=True, column_config=time_columns("start_time"))

    st.subheader("Resources over time")
    metrics = api.load("device_metrics", empty=f"{device} sent no gauge in this range.", device_id=device,
                       **view.window())
    if metrics is not None:
        metrics = times(metrics, "time")
        metrics["metric"] = metrics["metric_name"] + " (" + metrics["unit"].fillna("") + ")"
        fig = px.line(thin(metrics, "time", "value", by="metric"), x="time", y="value", facet_row="metric",
                      color="metric", color_discrete_sequence=PALETTE, height=160 * metrics["metric"].nunique(),
                      render_mode="svg")
        fig.update_yaxes(matches=None, title=None)
        fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1], textangle=0, x=0.01,
                                                   xanchor="left", yanchor="bottom"))
        show(fig, y="", key="dbg-metrics", legend=False, height=160 * metrics["metric"].nunique())

    st.subheader("Errors")
    errors = spans[spans["status_code"] == "ERROR"]
    if errors.empty:
        st.success("No span with status ERROR in this range.")
    else:
        errors = errors.assign(trace=[view.link("debug", device=device, trace=t) for t in errors["trace_id"]])
        st.dataframe(errors[["trace", "start_time", "name", "status_message", "model_name", "model_version",
                             "attributes"]], hide_index=True,
                     column_config={"trace": LINK("trace", display_text=r"trace=([0-9a-f]{8})"),
                                    **time_columns("start_time")})

    st.subheader("Recent spans")
    recent = spans.head(200).assign(trace=[view.link("debug", device=device, trace=t) for t in spans["trace_id"][:200]])
    st.dataframe(recent[["trace", "start_time", "name", "status_code", "duration_ms", "model_name", "model_version",
                         "inference_mode", "prediction_label", "prediction_score", "attributes"]],
                 hide_index=True, height=320,
                 column_config={"trace": LINK("trace", display_text=r"trace=([0-9a-f]{8})"),
                                "duration_ms": st.column_config.NumberColumn("duration (ms)", format="%.1f"),
                                **time_columns("start_time")})


def trace_view(trace: str) -> None:
    st.subheader(f"Trace {trace}")
    spans = api.load("trace_spans", empty=f"No span of trace {trace} is stored.", trace_id=trace)
    if spans is None:
        return
    spans = times(spans, "start_time", "end_time")
    origin = spans["start_time"].min()
    spans["offset_ms"] = (spans["start_time"] - origin).dt.total_seconds() * 1000
    spans["label"] = [f"{name} · {sid[:8]}" for name, sid in zip(spans["name"], spans["span_id"])]
    spans["state"] = spans["status_code"].map({"ERROR": "failed"}).fillna("ok")
    fig = px.bar(spans, x="duration_ms", y="label", base="offset_ms", orientation="h", color="state",
                 color_discrete_map=STATE_COLOURS, hover_data=["model_name", "model_version", "device_id",
                                                               "status_code"])
    fig.update_yaxes(autorange="reversed")
    show(fig, x=f"ms since the trace's first span ({origin:%Y-%m-%d %H:%M:%S.%f} UTC)", y="span",
         height=max(180, 40 * len(spans)), key="dbg-waterfall")
    attributes = spans[["label", "status_message", "attributes"]].dropna(subset=["attributes"])
    if not attributes.empty:
        with st.expander("Span attributes"):
            for _, row in attributes.iterrows():
                st.markdown(f"**{row['label']}**" + (f" — {row['status_message']}" if row["status_message"] else ""))
                st.json(json.loads(row["attributes"]), expanded=True)


devices = api.fetch("fleet_inventory", as_of=view.until, **api.params("fleet_inventory", view.api_filters()))
choices = sorted(devices["device_id"]) if isinstance(devices, pd.DataFrame) else []
device, trace = url_choice("device"), url_choice("trace")
left, right = st.columns([1, 2])
left.selectbox("Device", ["", *choices, *([device] if device and device not in choices else [])], key="dbg_device",
               format_func=lambda d: d or "— none —")
right.text_input("Trace id (32 hex characters)", key="dbg_trace")
device, trace = url_choice("device"), url_choice("trace")
keep_in_url(device=device, trace=trace)
if isinstance(devices, Problem):
    devices.show()

if trace:
    trace_view(trace.strip().lower())
if device:
    device_view(device)
elif "model" in view.filters:
    model_view(view.filters["model"])
    device_list()
elif not trace:
    device_list()
