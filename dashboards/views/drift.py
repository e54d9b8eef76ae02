"""Drift: per model, version and cohort, what moved, since when, and whether the cloud shadow and labels agree.

``?cohort={"site":"atl-factory-2"}&feature=brightness`` in the URL (or a site filter) picks the
cohort and feature; otherwise the page opens on the most severe drifted cohort of the model.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboards.charts import bars, group_label, heatmap, lines, show, times
from dashboards.context import page_context
from dashboards.data import Problem

ctx = page_context()
api, view = ctx.api, ctx.view
COHORT_KEYS = ("site", "region", "device_class", "firmware_version")


def pick(label: str, options: list[str], key: str, default: str | None, **kwargs) -> str | None:
    """A selectbox seeded once from the URL (or ``default``), whose choice is written back into the URL."""
    state_key = f"drift_{key}"
    wanted = st.session_state.get(state_key) or st.query_params.get(key) or default
    if wanted not in options:
        wanted = default if default in options else (options[0] if options else None)
    st.session_state[state_key] = wanted
    chosen = st.selectbox(label, options, key=state_key, **kwargs) if options else None
    if chosen:
        st.query_params[key] = chosen
    return chosen


def status_table(status: pd.DataFrame) -> None:
    drifted = status[status["status"] == "drifted"].sort_values("severity", ascending=False)
    cols = st.columns(4)
    cols[0].metric("Cohorts drifted", f"{len(drifted)} of {len(status)}", help="newest daily verdict per cohort")
    cols[1].metric("Asking for a retrain", int((drifted["verdict"] == "retrain").sum()))
    cols[2].metric("Models affected", drifted["model_name"].nunique())
    cols[3].metric("Insufficient data", int((status["status"] == "insufficient_data").sum()))
    if drifted.empty:
        st.success("No cohort of this model drifted in its newest daily window.")
        return
    table = times(drifted, "window_start").assign(cohort=drifted["cohort"].map(group_label),
                                                  drifted_features=drifted["drifted_features"].map(", ".join))
    st.dataframe(table[["model_name", "model_version", "cohort", "verdict", "drifted_features", "severity",
                        "window_start", "current_count"]], hide_index=True, height=min(320, 40 + 35 * len(table)),
                 column_config={"severity": st.column_config.NumberColumn(format="%.1f"),
                                "window_start": st.column_config.DatetimeColumn("day (UTC)", format="YYYY-MM-DD")})


def feature_heatmap(model: str, version: str, cohort: str, window: str) -> pd.DataFrame | None:
    features = api.load("drift_features", empty=f"No {window} drift results for this cohort in the range.",
                        window=window, model_name=model, model_version=version, cohort=cohort, **view.window())
    if features is None:
        return None
    features = times(features, "window_start")
    grid = features.pivot_table(index="feature", columns="window_start", values="severity", aggfunc="max")
    state = features.pivot_table(index="feature", columns="window_start", values="status", aggfunc="first")
    fig = heatmap(grid, colorscale="Reds", zmin=0, title="severity", customdata=state.reindex_like(grid).values,
                  hovertemplate="%{y} · %{x}<br>severity %{z:.2f}<br>%{customdata}<extra></extra>")
    show(fig, y="feature", x=f"{window} window start (UTC); blank: no result", height=80 + 36 * len(grid),
         key="drift-heatmap")
    return features


def distribution(model: str, version: str, cohort: str, window: str, features: pd.DataFrame) -> None:
    ranked = features.sort_values("severity", ascending=False)["feature"].drop_duplicates().tolist()
    feature = pick("Feature", ranked, "feature", ranked[0] if ranked else None)
    if not feature:
        return
    shares = api.load("drift_distribution", empty=f"No distribution of {feature} with enough data in this cohort.",
                      feature=feature, window=window, model_name=model, model_version=version, cohort=cohort,
                      at=view.until)
    if shares is None:
        return
    long = shares.melt(id_vars=["bin", "label"], value_vars=["reference_share", "current_share"],
                       var_name="side", value_name="share")
    long["side"] = long["side"].str.replace("_share", "", regex=False)
    fig = bars(long, "label", "share", color="side", grouped=True, colours={"reference": "#88CCEE", "current": "#CC6677"})
    fig.update_yaxes(tickformat=".0%")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=shares.sort_values("bin")["label"])
    window_start = shares["window_start"].iloc[0]
    show(fig, x=f"{feature} (bins of the reference; window from {window_start})", y="share of values",
         key="drift-distribution")


def shadow(model: str, version: str | None) -> None:
    filters = api.params("shadow_agreement", {**view.window(), "model_name": model, "model_version": version,
                                              "site": view.filters.get("site")})
    left, right = st.columns(2)
    with left:
        st.subheader("Shadow disagreement over time")
        hourly = api.load("shadow_agreement", empty="No cloud shadow answered in this range.", step="hour", **filters)
        if hourly is not None:
            hourly = times(hourly.dropna(subset=["model_version", "agreement_rate"]), "step_start")
            hourly["disagreement"] = 1 - hourly["agreement_rate"]
            fig = lines(hourly, "step_start", "disagreement", color="model_version",
                        hover={"compared": "", "kappa": ":.2f"})
            fig.update_yaxes(tickformat=".0%")
            show(fig, y="edge ≠ cloud (share of matched pairs)", key="drift-shadow")
    with right:
        st.subheader("Flip matrix (edge label → cloud label)")
        flips = api.load("shadow_flips", empty="No matched edge-cloud pair in this range.", **filters)
        if flips is not None:
            flips = flips.dropna(subset=["model_version"])
            if version is None:
                flips = flips[flips["model_version"] == flips["model_version"].max()]
            matrix = flips.pivot_table(index="edge_label", columns="cloud_label", values="share_of_edge_label",
                                       aggfunc="sum").fillna(0)
            fig = heatmap(matrix, colorscale="Blues", zmin=0, zmax=1, title="share", text_format=".0%")
            show(fig, x="cloud label", y="edge label", key="drift-flips")
            st.caption(f"{model}@{flips['model_version'].iloc[0]} · share of each edge label's matched pairs")


def ground_truth(model: str, version: str | None) -> None:
    st.subheader("Ground-truth accuracy")
    filters = api.params("ground_truth_accuracy", {**view.window(), "model_name": model, "model_version": version,
                                                   "site": view.filters.get("site")})
    accuracy = api.fetch("ground_truth_accuracy", step="day" if view.until - view.since > pd.Timedelta(days=2)
                         else "hour", **filters)
    if isinstance(accuracy, Problem):
        accuracy.show()
        return
    accuracy = accuracy[accuracy["labelled"].fillna(0) > 0] if not accuracy.empty else accuracy
    if accuracy.empty:
        st.info("No label has arrived for this model's inferences in the range.")
        return
    accuracy = times(accuracy, "step_start")
    long = accuracy.melt(id_vars=["step_start", "model_version"], value_vars=["accuracy", "cloud_accuracy"],
                         var_name="model", value_name="value").dropna()
    long["series"] = long["model_version"] + " · " + long["model"].map({"accuracy": "edge", "cloud_accuracy": "cloud"})
    fig = lines(long, "step_start", "value", color="series", markers=True)
    fig.update_yaxes(tickformat=".0%")
    show(fig, y="accuracy on labelled inferences", key="drift-accuracy")


def report(model: str, version: str, cohort: str, window: str) -> None:
    st.subheader("Drift report")
    group = json.loads(cohort)
    if st.button("Build the drift report", key="drift_build"):
        answer = api.drift_report(model, version, group or None, window)
        if isinstance(answer, Problem):
            answer.show()
        else:
            name = "-".join([model, version, *[f"{k}-{v}" for k, v in group.items()], window])
            st.download_button("Download the report (HTML)", answer, file_name=f"drift-{name}.html",
                               mime="text/html", key="drift_download")
    else:
        st.caption(f"A self-contained HTML report of {model}@{version} · {group_label(cohort)} · {window} windows, "
                   "as the server builds it (`fleetwatch report drift`).")


status = api.load("drift_status", empty="The drift job has no verdict yet: it needs a reference day and a day after it.",
                  **api.params("drift_status", view.api_filters()))
if status is not None:
    status_table(status)
    worst = status.sort_values("severity", ascending=False)
    drifted = worst[worst["status"] == "drifted"]
    top = (drifted if not drifted.empty else worst).iloc[0]
    # The filter bar's model and version, else the most severe drifted cohort's.
    model = view.filters.get("model") or top["model_name"]
    of_model = worst[worst["model_name"] == model]
    version = view.filters.get("version") or (of_model.iloc[0]["model_version"] if len(of_model) else None)
    of_version = of_model[of_model["model_version"] == version]
    if not {"model", "version"} <= set(view.filters):
        st.caption(f"Showing {model}@{version}, the most severely drifted; pick a model and version in the filter bar.")
    site = view.filters.get("site")
    cohorts = ["{}", *[c for c in of_version["cohort"].unique() if c != "{}"]]
    default = json.dumps({"site": site}, separators=(",", ":")) if site else (
        of_version.iloc[0]["cohort"] if len(of_version) else "{}")
    cols = st.columns([2, 1])
    with cols[0]:
        cohort = pick("Cohort", cohorts, "cohort", default, format_func=group_label)
    with cols[1]:
        window = st.segmented_control("Windows", ["1h", "1d"], key="drift_window",
                                      default="1h" if view.until - view.since <= pd.Timedelta(days=3) else "1d") or "1d"
    if model and version and cohort:
        st.subheader(f"{model}@{version} · {group_label(cohort)}: feature drift over time")
        features = feature_heatmap(model, version, cohort, window)
        if features is not None:
            st.subheader("Reference against current")
            distribution(model, version, cohort, window, features)
        report(model, version, cohort, window)
    shadow(model, view.filters.get("version"))
    ground_truth(model, view.filters.get("version"))
