"""Plotly helpers so every chart looks alike: one palette, states in fixed colours, units on axes, UTC said.

    fig = px.line(frame, x="time", y="p95_ms", color="group", color_discrete_sequence=PALETTE)
    show(fig, y="p95 latency (ms)")                      # x defaults to "time (UTC)"
    st.plotly_chart(...)                                 # never called by pages directly: use show()
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

# Plotly's "Safe" qualitative palette: distinguishable for the common colour-vision deficiencies.
PALETTE = ["#88CCEE", "#CC6677", "#DDCC77", "#117733", "#332288", "#AA4499", "#44AA99", "#999933",
           "#882255", "#661100", "#6699CC", "#888888"]

# A state means the same colour on every page.
STATE_COLOURS = {"firing": "#C0392B", "page": "#C0392B", "drifted": "#C0392B", "failed": "#C0392B",
                 "stale": "#E67E22", "pending": "#E67E22", "ticket": "#E67E22", "rolled_back": "#E67E22",
                 "ok": "#27AE60", "online": "#27AE60", "succeeded": "#27AE60", "resolved": "#7F8C8D",
                 "no_data": "#95A5A6", "low_traffic": "#95A5A6", "insufficient_data": "#95A5A6",
                 "in_progress": "#3498DB"}

TIME_AXIS = "time (UTC)"


def show(fig: go.Figure, *, y: str, x: str = TIME_AXIS, height: int = 320, key: str | None = None,
         legend: bool = True) -> None:
    """Lay ``fig`` out the common way and put it on the page, full width."""
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title=x, yaxis_title=y,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0,
                              "title": None},
                      showlegend=legend, hovermode="closest", template="plotly_white")
    st.plotly_chart(fig, width="stretch", key=key, config={"displaylogo": False})


def times(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """``frame`` with ``columns`` (RFC 3339 text from the API) as UTC timestamps, without the zone for Plotly."""
    frame = frame.copy()
    for column in columns:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601").dt.tz_localize(None)
    return frame


def percent(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.1%}"


def number(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:,.0f}"


def group_label(key: str | None) -> str:
    """An SLO or drift group stored as JSON text (``{"site":"ams-factory-1"}``) as ``site=ams-factory-1``."""
    import json

    if not key or key == "{}":
        return "all"
    try:
        return ", ".join(f"{k}={v}" for k, v in json.loads(key).items())
    except (ValueError, AttributeError):
        return str(key)


def time_columns(*names: str) -> dict:
    """Column configs that show ``names`` (made datetimes with :func:`times`) to the minute, saying UTC."""
    return {name: st.column_config.DatetimeColumn(f"{name.replace('_', ' ')} (UTC)", format="YYYY-MM-DD HH:mm")
            for name in names}
